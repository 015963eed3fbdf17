//! Switchyard agent: SQL Server Agent for Switchyard. Holds jobs whose steps run child
//! packages or commands, starts them on request over gRPC and answers at once, and keeps a
//! durable history and an outbox of run events in SQLite.

pub mod admin;
pub mod config;
pub mod error;
pub mod faults;
pub mod jobs;
pub mod model;
pub mod package_cache;
pub mod recovery;
pub mod registration;
mod runner;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;
pub mod wire;

pub use error::Error;
pub use server::serve;
