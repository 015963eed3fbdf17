//! The store's reads, each on a read-only connection.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use switchyard_package::engine::{ExecutionStatus, TaskRecord};
use switchyard_sqlite::columns::{Unsigned, sql_limit, unsigned};

use super::rows::{
    CHILD_COLUMNS, EXECUTION_COLUMNS, TASK_COLUMNS, child_from_row, event_from_row, execution_from_row, task_from_row,
};
use crate::model::{ChildRunRecord, ExecutionRecord, Report, StoredEvent};

/// The column a single execution is looked up by.
#[derive(Debug, Clone, Copy)]
pub(super) enum ExecutionKey {
    ExecutionId,
    RequestId,
}

pub(super) fn execution(
    connection: &Connection,
    key: ExecutionKey,
    value: &str,
) -> rusqlite::Result<Option<ExecutionRecord>> {
    let sql = match key {
        ExecutionKey::ExecutionId => format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE execution_id = ?1"),
        ExecutionKey::RequestId => format!("SELECT {EXECUTION_COLUMNS} FROM executions WHERE request_id = ?1"),
    };
    connection.prepare_cached(&sql)?.query_row([value], execution_from_row).optional()
}

pub(super) fn executions(connection: &Connection, limit: usize) -> rusqlite::Result<Vec<ExecutionRecord>> {
    let sql =
        format!("SELECT {EXECUTION_COLUMNS} FROM executions ORDER BY started_at DESC, execution_id DESC LIMIT ?1");
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map([sql_limit(limit)], execution_from_row)?;
    rows.collect()
}

pub(super) fn executions_with_status(
    connection: &Connection,
    statuses: &[ExecutionStatus],
) -> rusqlite::Result<Vec<ExecutionRecord>> {
    let placeholders = vec!["?"; statuses.len()].join(", ");
    let sql = format!(
        "SELECT {EXECUTION_COLUMNS} FROM executions WHERE status IN ({placeholders}) ORDER BY started_at, execution_id"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows =
        statement.query_map(params_from_iter(statuses.iter().map(|status| status.as_str())), execution_from_row)?;
    rows.collect()
}

pub(super) fn events_after(
    connection: &Connection,
    execution_id: &str,
    after: u64,
    limit: usize,
) -> rusqlite::Result<Vec<StoredEvent>> {
    let sql = "SELECT execution_id, sequence, event FROM events WHERE execution_id = ?1 AND sequence > ?2 \
        ORDER BY sequence LIMIT ?3";
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map(params![execution_id, Unsigned(after), sql_limit(limit)], event_from_row)?;
    rows.collect()
}

pub(super) fn tasks(connection: &Connection, execution_id: &str) -> rusqlite::Result<Vec<TaskRecord>> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE execution_id = ?1 ORDER BY position");
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map([execution_id], task_from_row)?;
    rows.collect()
}

pub(super) fn children(connection: &Connection, execution_id: &str) -> rusqlite::Result<Vec<ChildRunRecord>> {
    let sql = format!(
        "SELECT {CHILD_COLUMNS} FROM children WHERE execution_id = ?1 ORDER BY started_at, task_path, attempt, agent"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map([execution_id], child_from_row)?;
    rows.collect()
}

pub(super) fn child(connection: &Connection, agent: &str, run_id: &str) -> rusqlite::Result<Option<ChildRunRecord>> {
    let sql = format!("SELECT {CHILD_COLUMNS} FROM children WHERE agent = ?1 AND run_id = ?2");
    connection.prepare_cached(&sql)?.query_row([agent, run_id], child_from_row).optional()
}

pub(super) fn agent_cursors(connection: &Connection) -> rusqlite::Result<Vec<(String, String, u64)>> {
    let mut statement =
        connection.prepare_cached("SELECT agent, incarnation, sequence FROM agent_cursors ORDER BY agent")?;
    let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?, unsigned(row, 2)?)))?;
    rows.collect()
}

/// The execution, its tasks and its children from one snapshot, so a report never mixes
/// states from before and after a commit.
pub(super) fn report(connection: &Connection, execution_id: &str) -> rusqlite::Result<Option<Report>> {
    let snapshot = connection.unchecked_transaction()?;
    let Some(execution) = execution(&snapshot, ExecutionKey::ExecutionId, execution_id)? else {
        return Ok(None);
    };
    let tasks = tasks(&snapshot, execution_id)?;
    let children = children(&snapshot, execution_id)?.into_iter().map(Into::into).collect();
    Ok(Some(Report { execution, tasks, children }))
}
