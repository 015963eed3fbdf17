//! Switchyard agent: SQL Server Agent for Switchyard. Holds jobs whose steps run child
//! packages or commands, starts them on request over gRPC and answers at once, and keeps a
//! durable history and an outbox of run events in SQLite.

pub mod config;
pub mod jobs;
pub mod model;
pub mod store;
