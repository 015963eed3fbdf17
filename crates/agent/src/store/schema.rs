//! The store's tables, and what opening the database finds or creates (an incarnation id, the
//! high-water marks of sequences and instance ids).

use std::path::Path;

use rusqlite::Connection;
use switchyard_sqlite::columns::{meta, set_meta};
use switchyard_sqlite::{Found, META_CREATED_AT, META_SCHEMA_VERSION, Schema, Synchronous};

use super::{StoreError, StoreOptions};

/// The schema this build reads and writes.
pub(super) const SCHEMA_VERSION: i64 = 1;

pub(super) const META_INCARNATION: &str = "incarnation";
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
    let synchronous = if options.synchronous_full { Synchronous::Full } else { Synchronous::Normal };
    let schema = Schema { program: "agent", version: SCHEMA_VERSION, tables: SCHEMA };
    let (connection, (incarnation, created)) =
        switchyard_sqlite::open_writer(path, synchronous, &schema, |connection, found| match found {
            Found::Created => {
                let incarnation = uuid::Uuid::new_v4().to_string();
                set_meta(connection, META_INCARNATION, &incarnation).map_err(sqlite)?;
                Ok((incarnation, true))
            }
            Found::Existing => match meta(connection, META_INCARNATION).map_err(sqlite)? {
                Some(incarnation) => Ok((incarnation, false)),
                None => Err(StoreError::Schema {
                    path: path.to_path_buf(),
                    program: schema.program,
                    found: SCHEMA_VERSION.to_string(),
                    known: SCHEMA_VERSION,
                }),
            },
        })?;
    let last_sequence = counter(&connection, META_LAST_SEQUENCE, "SELECT max(sequence) FROM outbox").map_err(sqlite)?;
    let last_instance_id =
        counter(&connection, META_LAST_INSTANCE_ID, "SELECT max(instance_id) FROM history").map_err(sqlite)?;
    Ok(Opened { connection, incarnation, created, last_sequence, last_instance_id })
}

/// The high-water mark kept in meta, or the highest id in the table if that is higher (it
/// cannot be, unless meta was edited by hand; taking the maximum keeps ids unique regardless).
fn counter(connection: &Connection, key: &str, max_in_table: &str) -> rusqlite::Result<u64> {
    let kept = meta(connection, key)?.and_then(|value| value.parse::<u64>().ok()).unwrap_or(0);
    let in_table: Option<i64> = connection.query_row(max_in_table, [], |row| row.get(0))?;
    let in_table = in_table.and_then(|value| u64::try_from(value).ok()).unwrap_or(0);
    Ok(kept.max(in_table))
}
