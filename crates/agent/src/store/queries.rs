//! The store's reads, each on a read-only connection.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use switchyard_sqlite::columns::{Unsigned, sql_limit, timestamp};

use crate::model::{HistoryRecord, OutboxEvent, RunRecord, RunStatus, StepOutputRecord};

use super::rows::{
    EVENT_COLUMNS, HISTORY_COLUMNS, OUTPUT_COLUMNS, RUN_COLUMNS, event_from_row, history_from_row, output_from_row,
    run_from_row,
};
use super::{HistoryFilter, StoredJob, StoredPackage};

/// The column a single run is looked up by.
#[derive(Debug, Clone, Copy)]
pub(super) enum RunKey {
    RunId,
    IdempotencyKey,
}

pub(super) fn run(connection: &Connection, key: RunKey, value: &str) -> rusqlite::Result<Option<RunRecord>> {
    let sql = match key {
        RunKey::RunId => format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1"),
        RunKey::IdempotencyKey => format!("SELECT {RUN_COLUMNS} FROM runs WHERE idempotency_key = ?1"),
    };
    connection.prepare_cached(&sql)?.query_row([value], run_from_row).optional()
}

pub(super) fn runs_with_status(connection: &Connection, statuses: &[RunStatus]) -> rusqlite::Result<Vec<RunRecord>> {
    let placeholders = vec!["?"; statuses.len()].join(", ");
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE status IN ({placeholders}) ORDER BY accepted_at, run_id");
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(statuses.iter().map(|status| status.as_str())), run_from_row)?;
    rows.collect()
}

pub(super) fn latest_runs_by_job(connection: &Connection) -> rusqlite::Result<Vec<RunRecord>> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM (SELECT *, row_number() OVER \
         (PARTITION BY job ORDER BY accepted_at DESC, run_id DESC) AS newest FROM runs) \
         WHERE newest = 1 ORDER BY job"
    );
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map([], run_from_row)?;
    rows.collect()
}

pub(super) fn history(connection: &Connection, filter: &HistoryFilter) -> rusqlite::Result<Vec<HistoryRecord>> {
    let mut sql = format!("SELECT {HISTORY_COLUMNS} FROM history WHERE 1");
    let mut values = Vec::new();
    if let Some(job) = &filter.job {
        sql.push_str(" AND job = ?");
        values.push(Value::Text(job.clone()));
    }
    if let Some(run_id) = &filter.run_id {
        sql.push_str(" AND run_id = ?");
        values.push(Value::Text(run_id.clone()));
    }
    if let Some(since) = &filter.since {
        sql.push_str(" AND started_at >= ?");
        values.push(Value::Text(timestamp(since)));
    }
    if let Some(until) = &filter.until {
        sql.push_str(" AND started_at < ?");
        values.push(Value::Text(timestamp(until)));
    }
    sql.push_str(" ORDER BY instance_id DESC LIMIT ?");
    values.push(Value::Integer(sql_limit(filter.limit)));
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params_from_iter(values), history_from_row)?;
    rows.collect()
}

pub(super) fn events_after(connection: &Connection, after: u64, limit: usize) -> rusqlite::Result<Vec<OutboxEvent>> {
    let sql = format!("SELECT {EVENT_COLUMNS} FROM outbox WHERE sequence > ?1 ORDER BY sequence LIMIT ?2");
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map(params![Unsigned(after), limit], event_from_row)?;
    rows.collect()
}

pub(super) fn outputs(connection: &Connection, run_id: &str) -> rusqlite::Result<Vec<StepOutputRecord>> {
    let sql = format!("SELECT {OUTPUT_COLUMNS} FROM step_outputs WHERE run_id = ?1 ORDER BY step_id, attempt");
    let mut statement = connection.prepare_cached(&sql)?;
    let rows = statement.query_map([run_id], output_from_row)?;
    rows.collect()
}

pub(super) fn jobs(connection: &Connection) -> rusqlite::Result<Vec<StoredJob>> {
    let mut statement = connection.prepare_cached("SELECT name, definition, hash FROM jobs ORDER BY name")?;
    let rows = statement
        .query_map([], |row| Ok(StoredJob { name: row.get(0)?, definition: row.get(1)?, hash: row.get(2)? }))?;
    rows.collect()
}

pub(super) fn packages(connection: &Connection) -> rusqlite::Result<Vec<StoredPackage>> {
    let mut statement = connection.prepare_cached("SELECT name, content, hash FROM packages ORDER BY name")?;
    let rows = statement
        .query_map([], |row| Ok(StoredPackage { name: row.get(0)?, content: row.get(1)?, hash: row.get(2)? }))?;
    rows.collect()
}
