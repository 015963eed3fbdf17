//! Switchyard packages: the model, TOML loading and validation, and the control-flow engine.
//!
//! This crate knows nothing of the network: `agent_job` tasks reach agents through the
//! [`engine::AgentJobLauncher`] trait that the coordinator implements.

mod diagnostics;
pub mod engine;
pub mod expr;
pub mod load;
pub mod model;
pub mod process;
mod template;

pub use diagnostics::{Diagnostic, Diagnostics, Severity};
pub use engine::{ExecutionStatus, PackageRun, RunOptions, run_package};
pub use load::{LoadError, Loaded, load_package};
pub use model::{Package, Task, TaskKind, TaskResult};
pub use template::{Template, TemplateError};
