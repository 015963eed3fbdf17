//! The executions database's tables, connection settings, and what opening it finds or creates.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{StoreError, StoreOptions};

/// The schema this build reads and writes.
pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
pub(super) const META_CREATED_AT: &str = "created_at";

/// Meta keys only the store sets.
pub(super) const RESERVED_META_KEYS: [&str; 2] = [META_SCHEMA_VERSION, META_CREATED_AT];

/// How long a connection waits on a lock held by another (the blocking checkpoint holds the
/// write lock while it waits for readers) before SQLite reports busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The checkpointer gives up sooner: a checkpoint it skips is retried on its next round.
const CHECKPOINTER_BUSY_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes the WAL file is cut back to when it restarts: a burst can grow it past what the
/// checkpoints keep it to, and without a limit it would keep that size for good.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Statements the writer keeps prepared (every write and the transaction control statements).
const WRITER_STATEMENT_CACHE: usize = 64;

// Timestamps are RFC 3339 UTC with nine fractional digits, so text order is time order and a
// record reads back exactly as written. Every table is WITHOUT ROWID, keyed by what it is
// looked up by: one B-tree, and the rows of one execution (events by sequence, tasks by
// position) sit together in key order, so paging and listing are range scans. Parameters and
// events are JSON text: they are read whole, never queried into.
const SCHEMA: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE executions (
    execution_id TEXT PRIMARY KEY NOT NULL,
    request_id TEXT,
    package TEXT NOT NULL,
    package_file TEXT NOT NULL,
    status TEXT NOT NULL,
    caller TEXT NOT NULL,
    parameters TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    duration_ms INTEGER
) WITHOUT ROWID;
CREATE UNIQUE INDEX executions_by_request_id ON executions (request_id) WHERE request_id IS NOT NULL;
CREATE INDEX executions_by_started_at ON executions (started_at);
CREATE INDEX executions_by_status ON executions (status);

CREATE TABLE events (
    execution_id TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (execution_id, sequence)
) WITHOUT ROWID;

CREATE TABLE tasks (
    execution_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    result TEXT NOT NULL,
    started_at TEXT,
    duration_ms INTEGER,
    agent TEXT,
    message TEXT NOT NULL,
    exit_code INTEGER,
    PRIMARY KEY (execution_id, position)
) WITHOUT ROWID;

CREATE TABLE children (
    agent TEXT NOT NULL,
    run_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_path TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    job TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    duration_ms INTEGER,
    message TEXT NOT NULL,
    package TEXT,
    PRIMARY KEY (agent, run_id)
) WITHOUT ROWID;
CREATE INDEX children_by_execution ON children (execution_id, started_at);

CREATE TABLE agent_cursors (
    agent TEXT PRIMARY KEY NOT NULL,
    incarnation TEXT NOT NULL,
    sequence INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Opens the write connection, switching the file to WAL and creating the schema when the
/// database is new.
pub(super) fn open(path: &Path, options: &StoreOptions) -> Result<Connection, StoreError> {
    let sqlite = |error| StoreError::sqlite(path, error);
    let connection = Connection::open(path).map_err(sqlite)?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(sqlite)?;
    let mode: String =
        connection.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0)).map_err(sqlite)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::JournalMode { path: path.to_path_buf(), mode });
    }
    let synchronous = if options.synchronous_full { "FULL" } else { "NORMAL" };
    connection.pragma_update(None, "synchronous", synchronous).map_err(sqlite)?;
    // The checkpointer thread does this, off the commit path.
    connection.pragma_update(None, "wal_autocheckpoint", 0).map_err(sqlite)?;
    connection.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT).map_err(sqlite)?;
    connection.set_prepared_statement_cache_capacity(WRITER_STATEMENT_CACHE);

    connection.execute_batch("BEGIN IMMEDIATE").map_err(sqlite)?;
    let found = initialize(path, &connection);
    let finished = if found.is_ok() { "COMMIT" } else { "ROLLBACK" };
    connection.execute_batch(finished).map_err(sqlite)?;
    found?;
    Ok(connection)
}

/// A read-only connection.
pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    let connection = Connection::open_with_flags(path, flags).map_err(|error| StoreError::sqlite(path, error))?;
    connection.busy_timeout(BUSY_TIMEOUT).map_err(|error| StoreError::sqlite(path, error))?;
    Ok(connection)
}

/// The checkpointer's connection.
pub(super) fn open_checkpointer(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path).map_err(|error| StoreError::sqlite(path, error))?;
    connection.busy_timeout(CHECKPOINTER_BUSY_TIMEOUT).map_err(|error| StoreError::sqlite(path, error))?;
    Ok(connection)
}

/// Creates the schema in a new database, or checks the version of an existing one; inside the
/// caller's transaction.
fn initialize(path: &Path, connection: &Connection) -> Result<(), StoreError> {
    let sqlite = |error| StoreError::sqlite(path, error);
    let exists: bool = connection
        .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'", [], |row| {
            row.get(0)
        })
        .map_err(sqlite)?;
    if !exists {
        connection.execute_batch(SCHEMA).map_err(sqlite)?;
        let created_at = super::rows::timestamp(&chrono::Utc::now());
        let mut insert = connection.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)").map_err(sqlite)?;
        insert.execute(params![META_SCHEMA_VERSION, SCHEMA_VERSION.to_string()]).map_err(sqlite)?;
        insert.execute(params![META_CREATED_AT, created_at]).map_err(sqlite)?;
        return Ok(());
    }
    let version: Option<String> = connection
        .query_row("SELECT value FROM meta WHERE key = ?1", [META_SCHEMA_VERSION], |row| row.get(0))
        .optional()
        .map_err(sqlite)?;
    match version {
        Some(version) if version == SCHEMA_VERSION.to_string() => Ok(()),
        version => Err(StoreError::Schema {
            path: path.to_path_buf(),
            program: "coordinator",
            found: version.unwrap_or_else(|| "none".to_owned()),
            known: SCHEMA_VERSION,
        }),
    }
}
