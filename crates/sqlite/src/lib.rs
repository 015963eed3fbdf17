//! What the agent's and the coordinator's SQLite stores share (DESIGN.md §10): opening the
//! connections, one group-commit writer thread per database, a checkpointer that keeps WAL
//! checkpoints off the commit path, a small pool of read connections, and how values are put
//! into columns. Each store supplies its schema and, through [`Apply`], how its own records are
//! written; both report [`StoreError`].

mod checkpoint;
pub mod columns;
mod connection;
mod database;
mod error;
mod readers;
mod writer;

pub use checkpoint::{CommitObserver, StoreStats, Wal, run_checkpointer};
pub use connection::{Found, META_CREATED_AT, META_SCHEMA_VERSION, Schema, Synchronous, open_reader, open_writer};
pub use database::Database;
pub use error::StoreError;
pub use readers::Readers;
pub use writer::{Apply, Continue, Message, Writer};
