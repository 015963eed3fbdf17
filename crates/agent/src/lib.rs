//! Switchyard agent: SQL Server Agent for Switchyard. Holds jobs whose steps run child
//! packages or commands, starts them on request over gRPC and answers at once, and keeps a
//! durable history and an outbox of run events in SQLite.

mod admin;
pub mod config;
mod error;
mod faults;
mod http;
pub mod jobs;
mod model;
mod package_cache;
mod recovery;
mod registration;
mod runner;
mod runtime;
pub mod server;
mod service;
mod store;
pub mod telemetry;
mod wire;

pub use error::Error;
pub use server::serve;
