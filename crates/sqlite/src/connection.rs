//! Opening a store's connections: the write connection (WAL, its pragmas, the schema created or
//! checked in one transaction), the read-only connections and the checkpointer's.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;
use crate::columns::{meta, set_meta, timestamp};

/// The meta key holding the schema version a database was made with.
pub const META_SCHEMA_VERSION: &str = "schema_version";

/// The meta key holding when the database was created.
pub const META_CREATED_AT: &str = "created_at";

/// How long a connection waits on a lock held by another (the blocking checkpoint holds the
/// write lock while it waits for readers) before SQLite reports busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The checkpointer gives up sooner: a checkpoint it skips is retried on its next round.
const CHECKPOINTER_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes the WAL file is cut back to when it restarts. Checkpoints keep the WAL near a few
/// thousand frames, but a burst can outrun a checkpoint's fsync (hundreds of milliseconds on a
/// busy disk) and grow the file; without a limit it would keep that size for good.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Statements the writer keeps prepared (every write and the transaction control statements).
const WRITER_STATEMENT_CACHE: usize = 64;

/// How far a commit must reach the disk before it counts (DESIGN.md §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Survives a crash of the process (kill -9): the default.
    Normal,
    /// Also survives power loss, about a third slower.
    Full,
}

/// A store's tables and whose they are.
#[derive(Debug, Clone, Copy)]
pub struct Schema {
    /// Whose store it is, for messages: "agent" or "coordinator".
    pub program: &'static str,
    /// The schema version this build reads and writes.
    pub version: i64,
    /// The statements that create the tables, including `meta (key, value)`.
    pub tables: &'static str,
}

/// What opening the write connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A new database: the tables were just created, with the schema version and creation time.
    Created,
    /// A database of this schema version.
    Existing,
}

/// Opens the write connection to `path`, switches the file to WAL, and in one transaction
/// creates `schema`'s tables (a new database) or checks its version (an existing one), then runs
/// `initialize` for what the store keeps in addition (an incarnation id, say).
pub fn open_writer<T>(
    path: &Path,
    synchronous: Synchronous,
    schema: &Schema,
    initialize: impl FnOnce(&Connection, Found) -> Result<T, StoreError>,
) -> Result<(Connection, T), StoreError> {
    let sqlite = |error| StoreError::sqlite(path, error);
    let connection = Connection::open(path).map_err(sqlite)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)).map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::JournalMode { path: path.to_path_buf(), mode });
    }
    let synchronous = match synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    connection.pragma_update(None, "synchronous", synchronous).map_err(sqlite)?;
    // The checkpointer thread does this, off the commit path.
    connection.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
    connection.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT).map_err(sqlite)?;
    connection.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);

    connection.execute_batch("BEGIN IMMEDIATE").map_err(sqlite)?;
    let found = create_or_check(path, &connection, schema).and_then(|found| initialize(&connection, found));
    let finished = if found.is_ok() { "COMMIT" } else { "ROLLBACK" };
    connection.execute_batch(finished).map_err(sqlite)?;
    Ok((connection, found?))
}

/// A read-only connection.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| StoreError::sqlite(path, error))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| StoreError::sqlite(path, error))?;
    Ok(connection)
}

/// The checkpointer's connection.
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|error| StoreError::sqlite(path, error))?;
    connection.busy_timeout(CHECKPOINTER_BUSY_TIMEOUT).map_err(|error| StoreError::sqlite(path, error))?;
    Ok(connection)
}

/// Creates the schema in a new database, or checks the version of an existing one; inside the
/// caller's transaction.
fn create_or_check(path: &Path, connection: &Connection, schema: &Schema) -> Result<Found, StoreError> {
    let sqlite = |error| StoreError::sqlite(path, error);
    let exists: bool = connection
        .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'", [], |row| {
            row.get(0)
        })
        .map_err(sqlite)?;
    if !exists {
        connection.execute_batch(schema.tables).map_err(sqlite)?;
        set_meta(connection, META_SCHEMA_VERSION, &schema.version.to_string()).map_err(sqlite)?;
        set_meta(connection, META_CREATED_AT, &timestamp(&chrono::Utc::now())).map_err(sqlite)?;
        return Ok(Found::Created);
    }
    match meta(connection, META_SCHEMA_VERSION).map_err(sqlite)? {
        Some(version) if version == schema.version.to_string() => Ok(Found::Existing),
        version => Err(StoreError::Schema {
            path: path.to_path_buf(),
            program: schema.program,
            found: version.unwrap_or_else(|| "none".to_owned()),
            known: schema.version,
        }),
    }
}
