//! The store's tables, connection settings, and what opening the database finds or creates.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::{StoreError, StoreOptions};

/// The schema this build reads and writes.
pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const META_SCHEMA_VERSION: &str = "schema_version";
pub(super) const META_INCARNATION: &str = "incarnation";
pub(super) const META_CREATED_AT: &str = "created_at";
pub(super) const META_LAST_SEQUENCE: &str = "last_sequence";
pub(super) const META_LAST_INSTANCE_ID: &str = "last_instance_id";
pub(super) const META_CONSUMED_SEQUENCE: &str = "consumed_sequence";

/// Meta keys only the store sets.
pub(super) const RESERVED_META_KEYS: [&str; 6] = [
    META_SCHEMA_VERSION,
    META_INCARNATION,
    META_CREATED_AT,
    META_LAST_SEQUENCE,
    META_LAST_INSTANCE_ID,
    META_CONSUMED_SEQUENCE,
];

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

// Timestamps are RFC 3339 UTC with nine fractional digits, so text order is time order and a
// record reads back exactly as written. Small rows keyed by text (meta, runs) are WITHOUT ROWID
// tables: one B-tree, no rowid indirection. Tables keyed by an assigned integer (history,
// outbox) use it as the rowid, which is already a single B-tree. Rows that can be large (output,
// job definitions, packages) stay rowid tables: WITHOUT ROWID suits rows well under a page.
const SCHEMA: &str = "
CREATE TABLE meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE runs (
    run_id TEXT PRIMARY KEY NOT NULL,
    job TEXT NOT NULL,
    status TEXT NOT NULL,
    idempotency_key TEXT,
    epoch INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_path TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    params TEXT NOT NULL,
    accepted_at TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    duration_ms INTEGER,
    message TEXT NOT NULL,
    current_step INTEGER NOT NULL,
    job_hash TEXT NOT NULL,
    package_hashes TEXT NOT NULL,
    accepted_sequence INTEGER NOT NULL,
    process_groups TEXT NOT NULL
) WITHOUT ROWID;
CREATE UNIQUE INDEX runs_by_idempotency_key ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_by_status ON runs (status);
CREATE INDEX runs_by_job ON runs (job, accepted_at);

CREATE TABLE history (
    instance_id INTEGER PRIMARY KEY NOT NULL,
    job TEXT NOT NULL,
    step_id INTEGER NOT NULL,
    step_name TEXT NOT NULL,
    run_status INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    message TEXT NOT NULL,
    run_id TEXT NOT NULL,
    retries_attempted INTEGER NOT NULL
);
CREATE INDEX history_by_job ON history (job, instance_id);
CREATE INDEX history_by_run ON history (run_id, instance_id);

CREATE TABLE outbox (
    sequence INTEGER PRIMARY KEY NOT NULL,
    run_id TEXT NOT NULL,
    job TEXT NOT NULL,
    idempotency_key TEXT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    at TEXT NOT NULL,
    step_id INTEGER NOT NULL,
    step_name TEXT NOT NULL,
    exit_code INTEGER,
    duration_ms INTEGER NOT NULL,
    execution_id TEXT NOT NULL,
    task_path TEXT NOT NULL,
    attempt INTEGER NOT NULL
);

CREATE TABLE step_outputs (
    run_id TEXT NOT NULL,
    step_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    step_name TEXT NOT NULL,
    stdout TEXT NOT NULL,
    stderr TEXT NOT NULL,
    truncated INTEGER NOT NULL,
    PRIMARY KEY (run_id, step_id, attempt)
);

CREATE TABLE jobs (
    name TEXT PRIMARY KEY NOT NULL,
    definition TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE packages (
    name TEXT PRIMARY KEY NOT NULL,
    content TEXT NOT NULL,
    hash TEXT NOT NULL
);
";

/// The write connection and what opening found.
pub(super) struct Opened {
    pub connection: Connection,
    pub incarnation: String,
    pub created: bool,
    pub last_sequence: u64,
    pub last_instance_id: u64,
}

/// Opens the write connection, switching the file to WAL and creating the schema and a new
/// incarnation when the database is new.
pub(super) fn open(path: &Path, options: &StoreOptions) -> Result<Opened, StoreError> {
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
    let (incarnation, created) = found?;

    let last_sequence = counter(&connection, META_LAST_SEQUENCE, "SELECT max(sequence) FROM outbox").map_err(sqlite)?;
    let last_instance_id =
        counter(&connection, META_LAST_INSTANCE_ID, "SELECT max(instance_id) FROM history").map_err(sqlite)?;
    Ok(Opened { connection, incarnation, created, last_sequence, last_instance_id })
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

/// Finds the incarnation, or creates the schema and a new one; inside the caller's transaction.
fn initialize(path: &Path, connection: &Connection) -> Result<(String, bool), StoreError> {
    let sqlite = |error| StoreError::sqlite(path, error);
    let exists: bool = connection
        .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'", [], |row| {
            row.get(0)
        })
        .map_err(sqlite)?;
    if !exists {
        connection.execute_batch(SCHEMA).map_err(sqlite)?;
        let incarnation = uuid::Uuid::new_v4().to_string();
        let created_at = super::rows::timestamp(&chrono::Utc::now());
        let mut insert = connection.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)").map_err(sqlite)?;
        insert.execute(params![META_SCHEMA_VERSION, SCHEMA_VERSION.to_string()]).map_err(sqlite)?;
        insert.execute(params![META_INCARNATION, incarnation]).map_err(sqlite)?;
        insert.execute(params![META_CREATED_AT, created_at]).map_err(sqlite)?;
        return Ok((incarnation, true));
    }
    let meta = |key: &str| -> Result<Option<String>, StoreError> {
        connection
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0))
            .optional()
            .map_err(sqlite)
    };
    let version = meta(META_SCHEMA_VERSION)?;
    let incarnation = meta(META_INCARNATION)?;
    match (version, incarnation) {
        (Some(version), Some(incarnation)) if version == SCHEMA_VERSION.to_string() => Ok((incarnation, false)),
        (version, _) => Err(StoreError::Schema {
            path: path.to_path_buf(),
            program: "agent",
            found: version.unwrap_or_else(|| "none".to_owned()),
            known: SCHEMA_VERSION,
        }),
    }
}

/// The high-water mark kept in meta, or the highest id in the table if that is higher (it
/// cannot be, unless meta was edited by hand; taking the maximum keeps ids unique regardless).
fn counter(connection: &Connection, key: &str, max_in_table: &str) -> rusqlite::Result<u64> {
    let kept: Option<String> =
        connection.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0)).optional()?;
    let kept = kept.and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
    let in_table: Option<i64> = connection.query_row(max_in_table, [], |row| row.get(0))?;
    let in_table = in_table.and_then(|value| u64::try_from(value).ok()).unwrap_or(0);
    Ok(kept.max(in_table))
}
