//! The stores' error: what failed, naming the database file.

use std::path::PathBuf;
use std::sync::Arc;

/// What can go wrong in a store (the agent's or the coordinator's).
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The directory for the database could not be created.
    #[error("creating the store directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite refused an operation.
    #[error("sqlite on {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why; shared because a failed group commit fails every request in it.
        source: Arc<rusqlite::Error>,
    },
    /// The file system would not take the database to WAL mode (a network file system, say).
    #[error("{} cannot use WAL (journal_mode stayed {mode})", path.display())]
    JournalMode {
        /// The database file.
        path: PathBuf,
        /// The journal mode SQLite kept.
        mode: String,
    },
    /// The database was made by a newer build, or is not this program's database.
    #[error("{} has schema version {found}, this {program} reads version {known}", path.display())]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Whose store it is: "agent" or "coordinator".
        program: &'static str,
        /// The version found ("none" when the meta rows are missing).
        found: String,
        /// The version this build reads.
        known: i64,
    },
    /// A `SetMeta` named a key the store keeps itself.
    #[error("meta key \"{key}\" in {} is kept by the store and cannot be set", path.display())]
    ReservedMetaKey {
        /// The database file.
        path: PathBuf,
        /// The key.
        key: String,
    },
    /// A store thread could not be started.
    #[error("starting the {thread} thread for {}: {source}", path.display())]
    Thread {
        /// The database file.
        path: PathBuf,
        /// Which thread.
        thread: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The writer has stopped (the store was closed).
    #[error("store {} is closed", path.display())]
    Closed {
        /// The database file.
        path: PathBuf,
    },
}

impl StoreError {
    /// A SQLite error on the database at `path`.
    pub fn sqlite(path: &std::path::Path, error: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: path.to_path_buf(), source: Arc::new(error) }
    }

    /// True when SQLite refused a write for breaking a constraint, such as a second run with the
    /// same idempotency key or a second execution with the same request id.
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            StoreError::Sqlite { source, .. } => {
                matches!(source.sqlite_error_code(), Some(rusqlite::ErrorCode::ConstraintViolation))
            }
            _ => false,
        }
    }
}
