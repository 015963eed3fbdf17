//! What the agent's and the coordinator's SQLite stores share (DESIGN.md §10): a checkpointer
//! that keeps WAL checkpoints off the commit path, and a small pool of read connections. Each
//! store keeps its own schema and its own group-commit writer; both report [`StoreError`].

mod checkpoint;
mod error;
mod readers;

pub use checkpoint::{Wal, run_checkpointer};
pub use error::StoreError;
pub use readers::Readers;
