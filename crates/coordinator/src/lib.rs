//! Switchyard coordinator: runs parent packages whose `agent_job` tasks fan job starts out to
//! agents over gRPC, balances them over pools, and records every execution for the Overview
//! report.

pub mod config;
mod deploy;
mod error;
pub mod executions;
pub mod http;
pub mod launcher;
pub mod model;
pub mod placement;
pub mod registry;
mod replay;
pub mod report;
pub mod server;
mod service;
pub mod store;
pub mod telemetry;

pub use error::Error;
pub use server::serve;
