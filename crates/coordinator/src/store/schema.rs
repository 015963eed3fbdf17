//! The executions database's tables, and opening it (created, or its version checked).

use std::path::Path;

use rusqlite::Connection;
use switchyard_sqlite::columns::{meta, set_meta};
use switchyard_sqlite::{META_CREATED_AT, META_SCHEMA_VERSION, Schema, Synchronous};

use super::{StoreError, StoreOptions};

/// The schema this build reads and writes. Version 2 added the fencing facts (`pending_stops`,
/// `abandoned_starts`, `task_winners`) and `children.agent_status`.
pub(super) const SCHEMA_VERSION: i64 = 2;

/// Meta keys only the store sets.
pub(super) const RESERVED_META_KEYS: [&str; 2] = [META_SCHEMA_VERSION, META_CREATED_AT];

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
    agent_status TEXT,
    PRIMARY KEY (agent, run_id)
) WITHOUT ROWID;
CREATE INDEX children_by_execution ON children (execution_id, started_at);

CREATE TABLE agent_cursors (
    agent TEXT PRIMARY KEY NOT NULL,
    incarnation TEXT NOT NULL,
    sequence INTEGER NOT NULL
) WITHOUT ROWID;
";

/// What version 2 added (DESIGN.md §4 Fencing): run on a new database after [`SCHEMA`], and on a
/// version 1 database by [`migrate`]. `pending_stops` holds the stops owed to agents that were
/// unreachable (superseded attempts, missed cancels) until they are delivered;
/// `abandoned_starts` the keys of starts given up while in flight to an agent declared down;
/// `task_winners` the attempt whose child succeeded for a task.
const FENCING: &str = "
CREATE TABLE pending_stops (
    agent TEXT NOT NULL,
    run_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (agent, run_id)
) WITHOUT ROWID;

CREATE TABLE abandoned_starts (
    agent TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    PRIMARY KEY (agent, idempotency_key)
) WITHOUT ROWID;

CREATE TABLE task_winners (
    execution_id TEXT NOT NULL,
    task_path TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    agent TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (execution_id, task_path)
) WITHOUT ROWID;
";

/// Opens the write connection, switching the file to WAL and creating the schema when the
/// database is new.
pub(super) fn open(path: &Path, options: &StoreOptions) -> Result<Connection, StoreError> {
    let synchronous = if options.synchronous_full { Synchronous::Full } else { Synchronous::Normal };
    if path.exists() {
        migrate(path)?;
    }
    let tables = TABLES.get_or_init(|| format!("{SCHEMA}{FENCING}"));
    let schema = Schema { program: "coordinator", version: SCHEMA_VERSION, tables };
    let (connection, ()) = switchyard_sqlite::open_writer(path, synchronous, &schema, |_, _| Ok(()))?;
    Ok(connection)
}

/// Every table of a new database.
static TABLES: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Brings a version 1 database to version 2 in one transaction; any other version is left for
/// the version check to refuse.
fn migrate(path: &Path) -> Result<(), StoreError> {
    let sqlite = |error| StoreError::sqlite(path, error);
    let mut connection = Connection::open(path).map_err(sqlite)?;
    connection.busy_timeout(std::time::Duration::from_secs(5)).map_err(sqlite)?;
    let transaction = connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(sqlite)?;
    let has_meta: bool = transaction
        .query_row("SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'", [], |row| {
            row.get(0)
        })
        .map_err(sqlite)?;
    if !has_meta || meta(&transaction, META_SCHEMA_VERSION).map_err(sqlite)?.as_deref() != Some("1") {
        return Ok(());
    }
    tracing::info!(path = %path.display(), "migrating the coordinator's store from schema version 1 to 2");
    transaction.execute_batch("ALTER TABLE children ADD COLUMN agent_status TEXT;").map_err(sqlite)?;
    transaction.execute_batch(FENCING).map_err(sqlite)?;
    set_meta(&transaction, META_SCHEMA_VERSION, &SCHEMA_VERSION.to_string()).map_err(sqlite)?;
    transaction.commit().map_err(sqlite)
}
