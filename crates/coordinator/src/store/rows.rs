//! Records to rows and back: the statements the writer runs and the mapping readers use.

use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};
use switchyard_package::engine::{ChildRecord, ChildStatus, TaskRecord};
use switchyard_package::model::TaskKind;
use switchyard_sqlite::columns::{
    Unsigned, bad_value, from_json, optional_time, optional_unsigned, time, timestamp, to_json, unsigned,
};

use crate::model::{ChildRunRecord, ExecutionRecord, StoredEvent, parse_name};

pub(super) const EXECUTION_COLUMNS: &str = "execution_id, request_id, package, package_file, status, caller, \
    parameters, started_at, ended_at, duration_ms";

pub(super) const TASK_COLUMNS: &str = "path, kind, result, started_at, duration_ms, agent, message, exit_code";

pub(super) const CHILD_COLUMNS: &str = "execution_id, task_path, attempt, agent, job, run_id, idempotency_key, \
    status, started_at, duration_ms, message, package";

/// Inserts an execution; a second one with the same id or request id breaks a constraint.
pub(super) const INSERT_EXECUTION: &str = "INSERT INTO executions (execution_id, request_id, package, \
    package_file, status, caller, parameters, started_at, ended_at, duration_ms) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";

/// Replaces the whole row of an execution (inserting it when missing).
pub(super) const UPSERT_EXECUTION: &str = "INSERT INTO executions (execution_id, request_id, package, \
    package_file, status, caller, parameters, started_at, ended_at, duration_ms) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
    ON CONFLICT (execution_id) DO UPDATE SET request_id = excluded.request_id, package = excluded.package, \
    package_file = excluded.package_file, status = excluded.status, caller = excluded.caller, \
    parameters = excluded.parameters, started_at = excluded.started_at, ended_at = excluded.ended_at, \
    duration_ms = excluded.duration_ms";

/// Runs `sql` (INSERT_EXECUTION or UPSERT_EXECUTION) for `execution`.
pub(super) fn put_execution(connection: &Connection, sql: &str, execution: &ExecutionRecord) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute(params![
        execution.execution_id,
        execution.request_id,
        execution.package,
        execution.package_file,
        execution.status.as_str(),
        execution.caller,
        to_json(&execution.parameters)?,
        timestamp(&execution.started_at),
        execution.ended_at.as_ref().map(timestamp),
        execution.duration_ms.map(Unsigned),
    ])?;
    Ok(())
}

/// Stores an event, replacing one with the same execution and sequence (a retried write).
pub(super) fn put_event(connection: &Connection, event: &StoredEvent) -> rusqlite::Result<()> {
    let sql = "INSERT INTO events (execution_id, sequence, event) VALUES (?1, ?2, ?3) \
        ON CONFLICT (execution_id, sequence) DO UPDATE SET event = excluded.event";
    connection.prepare_cached(sql)?.execute(params![
        event.execution_id,
        Unsigned(event.sequence),
        to_json(&event.event)?
    ])?;
    Ok(())
}

/// Replaces the task rows of an execution with `tasks`, numbered in order.
pub(super) fn replace_tasks(connection: &Connection, execution_id: &str, tasks: &[TaskRecord]) -> rusqlite::Result<()> {
    connection.prepare_cached("DELETE FROM tasks WHERE execution_id = ?1")?.execute([execution_id])?;
    let sql = "INSERT INTO tasks (execution_id, position, path, kind, result, started_at, duration_ms, agent, \
        message, exit_code) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    let mut insert = connection.prepare_cached(sql)?;
    for (position, task) in tasks.iter().enumerate() {
        insert.execute(params![
            execution_id,
            Unsigned(position as u64),
            task.path,
            task.kind,
            task.result.as_str(),
            task.started_at.as_ref().map(timestamp),
            task.duration_ms.map(Unsigned),
            task.agent,
            task.message,
            task.exit_code,
        ])?;
    }
    Ok(())
}

/// The status a stored child takes from an incoming record (`excluded`): it only moves forward
/// (DESIGN.md §4 Fencing). A superseded verdict always wins; a running child takes anything;
/// `lost`, `superseded` and final statuses are never overwritten by the run's late outcome,
/// except that the late outcome of a lost child whose attempt was superseded (a stop of it is
/// owed, or another attempt of its task won) makes it superseded.
const FORWARD_STATUS: &str = "CASE \
    WHEN excluded.status = 'superseded' THEN 'superseded' \
    WHEN children.status = 'running' THEN excluded.status \
    WHEN children.status = 'lost' AND excluded.status IN ('succeeded', 'failed', 'canceled') AND ( \
        EXISTS (SELECT 1 FROM pending_stops AS p WHERE p.agent = children.agent \
            AND p.run_id = children.run_id AND p.reason = 'superseded') \
        OR EXISTS (SELECT 1 FROM task_winners AS w WHERE w.execution_id = children.execution_id \
            AND w.task_path = children.task_path AND w.attempt <> children.attempt)) THEN 'superseded' \
    ELSE children.status END";

/// Records a child. Updates arrive from several places in no fixed order (the launcher, the
/// agents' outcomes, reconciliation), so its status only moves forward ([`FORWARD_STATUS`]); an
/// outcome the status does not take is kept as `agent_status`, the agent's own result. What an
/// update leaves empty (package, duration, message) keeps its earlier value. A child that
/// succeeded is its task's winner unless another attempt won first.
pub(super) fn upsert_child(connection: &Connection, child: &ChildRunRecord) -> rusqlite::Result<()> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "INSERT INTO children (execution_id, task_path, attempt, agent, job, run_id, idempotency_key, status, \
            started_at, duration_ms, message, package) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
            ON CONFLICT (agent, run_id) DO UPDATE SET execution_id = excluded.execution_id, \
            task_path = excluded.task_path, attempt = excluded.attempt, job = excluded.job, \
            idempotency_key = excluded.idempotency_key, \
            status = {FORWARD_STATUS}, \
            agent_status = CASE WHEN excluded.status IN ('succeeded', 'failed', 'canceled') \
                AND ({FORWARD_STATUS}) <> excluded.status THEN excluded.status ELSE children.agent_status END, \
            started_at = children.started_at, \
            duration_ms = COALESCE(excluded.duration_ms, children.duration_ms), \
            message = CASE WHEN excluded.message = '' THEN children.message ELSE excluded.message END, \
            package = COALESCE(excluded.package, children.package)"
        )
    });
    connection.prepare_cached(sql)?.execute(params![
        child.execution_id,
        child.task_path,
        child.attempt,
        child.agent,
        child.job,
        child.run_id,
        child.idempotency_key,
        child.status.as_str(),
        timestamp(&child.started_at),
        child.duration_ms.map(Unsigned),
        child.message,
        child.package,
    ])?;
    if child.status == ChildStatus::Succeeded {
        let sql = "INSERT INTO task_winners (execution_id, task_path, attempt, agent, run_id) \
            SELECT execution_id, task_path, attempt, agent, run_id FROM children \
            WHERE agent = ?1 AND run_id = ?2 AND status = 'succeeded' AND execution_id <> '' \
            ON CONFLICT (execution_id, task_path) DO NOTHING";
        connection.prepare_cached(sql)?.execute(params![child.agent, child.run_id])?;
    }
    Ok(())
}

/// Records what reconciliation did to a child (stopped it as superseded, or canceled it late).
/// Superseded always wins (a superseded attempt's result never changes what the report says of
/// the task, DESIGN.md §4); a late cancel applies only to a child still running.
pub(super) fn update_child_status(
    connection: &Connection,
    agent: &str,
    run_id: &str,
    status: ChildStatus,
    duration_ms: Option<u64>,
    message: &str,
) -> rusqlite::Result<()> {
    let sql = "UPDATE children SET \
        status = CASE WHEN ?3 = 'superseded' OR status = 'running' THEN ?3 ELSE status END, \
        duration_ms = COALESCE(?4, duration_ms), \
        message = CASE WHEN ?3 = 'superseded' OR status = 'running' THEN ?5 ELSE message END \
        WHERE agent = ?1 AND run_id = ?2";
    connection.prepare_cached(sql)?.execute(params![
        agent,
        run_id,
        status.as_str(),
        duration_ms.map(Unsigned),
        message
    ])?;
    Ok(())
}

/// Owes `agent` a stop of `run_id` until it is delivered; the first reason recorded stays.
pub(super) fn add_pending_stop(
    connection: &Connection,
    agent: &str,
    run_id: &str,
    reason: &str,
) -> rusqlite::Result<()> {
    let sql = "INSERT INTO pending_stops (agent, run_id, reason) VALUES (?1, ?2, ?3) \
        ON CONFLICT (agent, run_id) DO NOTHING";
    connection.prepare_cached(sql)?.execute(params![agent, run_id, reason])?;
    Ok(())
}

/// A stop was delivered (or found the run already ended).
pub(super) fn remove_pending_stop(connection: &Connection, agent: &str, run_id: &str) -> rusqlite::Result<()> {
    connection
        .prepare_cached("DELETE FROM pending_stops WHERE agent = ?1 AND run_id = ?2")?
        .execute(params![agent, run_id])?;
    Ok(())
}

/// A start to `agent` was given up while in flight.
pub(super) fn add_abandoned_start(connection: &Connection, agent: &str, key: &str) -> rusqlite::Result<()> {
    let sql = "INSERT INTO abandoned_starts (agent, idempotency_key) VALUES (?1, ?2) \
        ON CONFLICT (agent, idempotency_key) DO NOTHING";
    connection.prepare_cached(sql)?.execute(params![agent, key])?;
    Ok(())
}

/// Abandoned starts of `agent` settled: one key (`Some`, its run was fenced), or every key
/// (`None`, its data dir was recreated and the requests it held died with it).
pub(super) fn remove_abandoned_starts(connection: &Connection, agent: &str, key: Option<&str>) -> rusqlite::Result<()> {
    match key {
        Some(key) => connection
            .prepare_cached("DELETE FROM abandoned_starts WHERE agent = ?1 AND idempotency_key = ?2")?
            .execute(params![agent, key])?,
        None => connection.prepare_cached("DELETE FROM abandoned_starts WHERE agent = ?1")?.execute(params![agent])?,
    };
    Ok(())
}

/// Records the last outbox sequence consumed from an agent. Within one incarnation the cursor
/// only rises (group commits may land out of order); a new incarnation replaces it.
pub(super) fn set_agent_cursor(
    connection: &Connection,
    agent: &str,
    incarnation: &str,
    sequence: u64,
) -> rusqlite::Result<()> {
    let sql = "INSERT INTO agent_cursors (agent, incarnation, sequence) VALUES (?1, ?2, ?3) \
        ON CONFLICT (agent) DO UPDATE SET incarnation = excluded.incarnation, sequence = CASE \
        WHEN incarnation = excluded.incarnation THEN max(sequence, excluded.sequence) ELSE excluded.sequence END";
    connection.prepare_cached(sql)?.execute(params![agent, incarnation, Unsigned(sequence)])?;
    Ok(())
}

pub(super) fn execution_from_row(row: &Row<'_>) -> rusqlite::Result<ExecutionRecord> {
    Ok(ExecutionRecord {
        execution_id: row.get(0)?,
        request_id: row.get(1)?,
        package: row.get(2)?,
        package_file: row.get(3)?,
        status: named(row, 4)?,
        caller: row.get(5)?,
        parameters: from_json(row, 6)?,
        started_at: time(row, 7)?,
        ended_at: optional_time(row, 8)?,
        duration_ms: optional_unsigned(row, 9)?,
    })
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent { execution_id: row.get(0)?, sequence: unsigned(row, 1)?, event: from_json(row, 2)? })
}

pub(super) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRecord> {
    let kind: String = row.get(1)?;
    Ok(TaskRecord {
        path: row.get(0)?,
        kind: TaskKind::static_name(&kind)
            .ok_or_else(|| bad_value(1, Type::Text, format!("unknown task kind {kind:?}")))?,
        result: named(row, 2)?,
        started_at: optional_time(row, 3)?,
        duration_ms: optional_unsigned(row, 4)?,
        agent: row.get(5)?,
        message: row.get(6)?,
        exit_code: row.get(7)?,
    })
}

/// A child as the report shows it: [`CHILD_COLUMNS`] then `agent_status`.
pub(super) fn child_record_from_row(row: &Row<'_>) -> rusqlite::Result<ChildRecord> {
    let agent_status: Option<String> = row.get(12)?;
    let agent_status = match agent_status {
        Some(text) => {
            Some(parse_name(&text).ok_or_else(|| bad_value(12, Type::Text, format!("unknown child status {text:?}")))?)
        }
        None => None,
    };
    let mut record = ChildRecord::from(child_from_row(row)?);
    record.agent_status = agent_status;
    Ok(record)
}

pub(super) fn child_from_row(row: &Row<'_>) -> rusqlite::Result<ChildRunRecord> {
    Ok(ChildRunRecord {
        execution_id: row.get(0)?,
        task_path: row.get(1)?,
        attempt: row.get(2)?,
        agent: row.get(3)?,
        job: row.get(4)?,
        run_id: row.get(5)?,
        idempotency_key: row.get(6)?,
        status: named(row, 7)?,
        started_at: time(row, 8)?,
        duration_ms: optional_unsigned(row, 9)?,
        message: row.get(10)?,
        package: row.get(11)?,
    })
}

/// A status or result stored by its lower-case name.
fn named<T: serde::de::DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    parse_name(&text).ok_or_else(|| bad_value(index, Type::Text, format!("unknown status or result {text:?}")))
}
