//! The store's reads, each on a read-only connection.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use switchyard_package::engine::{ExecutionStatus, TaskRecord};
use switchyard_sqlite::columns::{Unsigned, sql_limit, unsigned};

use super::rows::{
    CHILD_COLUMNS, EXECUTION_COLUMNS, TASK_COLUMNS, child_from_row, child_record_from_row, event_from_row,
    execution_from_row, task_from_row,
};
use super::{Fences, StopReason};
use switchyard_package::engine::ChildRecord;

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

/// Task rows and failed ones per execution of `ids` that has rows.
pub(super) fn task_counts(
    connection: &Connection,
    ids: &[String],
) -> rusqlite::Result<std::collections::HashMap<String, super::TaskCounts>> {
    let mut counts = std::collections::HashMap::with_capacity(ids.len());
    let mut statement = connection
        .prepare_cached("SELECT count(*), coalesce(sum(result = 'failure'), 0) FROM tasks WHERE execution_id = ?1")?;
    for id in ids {
        let (total, failed): (u32, u32) = statement.query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))?;
        if total > 0 {
            counts.insert(id.clone(), super::TaskCounts { total, failed });
        }
    }
    Ok(counts)
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

/// The children of an execution as the report shows them (with the agent's own result when the
/// recorded status did not take it).
pub(super) fn child_records(connection: &Connection, execution_id: &str) -> rusqlite::Result<Vec<ChildRecord>> {
    let sql = format!(
        "SELECT {CHILD_COLUMNS}, agent_status FROM children WHERE execution_id = ?1 \
        ORDER BY started_at, task_path, attempt, agent"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map([execution_id], child_record_from_row)?;
    rows.collect()
}

/// The fencing facts a restarted coordinator needs: stops still owed and starts abandoned.
pub(super) fn fences(connection: &Connection) -> rusqlite::Result<Fences> {
    let snapshot = connection.unchecked_transaction()?;
    let mut stops = Vec::new();
    {
        let mut statement =
            snapshot.prepare_cached("SELECT agent, run_id, reason FROM pending_stops ORDER BY agent, run_id")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let reason: String = row.get(2)?;
            let reason = StopReason::from_name(&reason).ok_or_else(|| {
                switchyard_sqlite::columns::bad_value(
                    2,
                    rusqlite::types::Type::Text,
                    format!("unknown stop reason {reason:?}"),
                )
            })?;
            stops.push((row.get(0)?, row.get(1)?, reason));
        }
    }
    let mut statement = snapshot
        .prepare_cached("SELECT agent, idempotency_key FROM abandoned_starts ORDER BY agent, idempotency_key")?;
    let abandoned = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(Fences { stops, abandoned })
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
    let children = child_records(&snapshot, execution_id)?;
    Ok(Some(Report { execution, tasks, children }))
}

pub(super) fn execution_count(connection: &Connection) -> rusqlite::Result<u64> {
    let count: i64 = connection.query_row("SELECT count(*) FROM executions", [], |row| row.get(0))?;
    Ok(u64::try_from(count).unwrap_or(0))
}
