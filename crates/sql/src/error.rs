//! Errors of the journal and of recovery.

use std::path::PathBuf;

/// What went wrong with the two-phase journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The journal could not be opened, read or written.
    #[error("two-phase commit journal {}: {message}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The database's message.
        message: String,
    },
}
