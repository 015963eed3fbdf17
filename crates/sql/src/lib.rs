//! Database sessions for Switchyard's `sql` tasks, behind the engine's
//! [`switchyard_package::engine::Databases`] trait: SQLite through rusqlite (bundled, run on
//! blocking threads, canceled with its interrupt handle) and PostgreSQL through tokio-postgres
//! (canceled with a cancel request to the server). Transactions spanning several PostgreSQL
//! databases commit in two phases; the prepared ids are recorded first in a journal under the
//! data dir, and [`recover`] resolves what a run that died between the phases left prepared.

mod drivers;
mod error;
mod journal;
mod postgres;
mod sqlite;
mod two_phase;
mod url;

pub use drivers::{Drivers, Fault};
pub use error::Error;
pub use journal::JOURNAL_FILE;
pub use two_phase::{Resolution, recover};
pub use url::redact;
