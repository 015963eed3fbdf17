//! Records to rows and back: the statements the writer runs and the mapping readers use.

use chrono::{DateTime, Utc};
use rusqlite::types::Type;
use rusqlite::{Connection, Row, params};
use switchyard_sqlite::columns::{
    Unsigned, bad_value, from_json, optional_time, optional_unsigned, time, timestamp, to_json, unsigned,
};

use crate::model::{EventKind, HistoryRecord, HistoryStatus, OutboxEvent, RunRecord, RunStatus, StepOutputRecord};

use super::schema::META_CONSUMED_SEQUENCE;

pub(super) const RUN_COLUMNS: &str = "run_id, job, status, idempotency_key, epoch, requested_by, execution_id, \
    task_path, attempt, params, accepted_at, started_at, ended_at, duration_ms, message, current_step, job_hash, \
    package_hashes, accepted_sequence, process_groups";

pub(super) const HISTORY_COLUMNS: &str =
    "instance_id, job, step_id, step_name, run_status, started_at, duration_ms, message, run_id, retries_attempted";

pub(super) const EVENT_COLUMNS: &str = "sequence, run_id, job, idempotency_key, kind, status, message, at, step_id, \
    step_name, exit_code, duration_ms, execution_id, task_path, attempt";

pub(super) const OUTPUT_COLUMNS: &str = "run_id, step_id, attempt, step_name, stdout, stderr, truncated";

/// Inserts a run; a second run with the same id or idempotency key breaks a constraint.
pub(super) const INSERT_RUN: &str = "INSERT INTO runs (run_id, job, status, idempotency_key, epoch, requested_by, \
    execution_id, task_path, attempt, params, accepted_at, started_at, ended_at, duration_ms, message, current_step, \
    job_hash, package_hashes, accepted_sequence, process_groups) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)";

/// Replaces the whole row of a run (inserting it when missing).
pub(super) const UPSERT_RUN: &str = "INSERT INTO runs (run_id, job, status, idempotency_key, epoch, requested_by, \
    execution_id, task_path, attempt, params, accepted_at, started_at, ended_at, duration_ms, message, current_step, \
    job_hash, package_hashes, accepted_sequence, process_groups) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20) \
    ON CONFLICT (run_id) DO UPDATE SET job = excluded.job, status = excluded.status, \
    idempotency_key = excluded.idempotency_key, epoch = excluded.epoch, requested_by = excluded.requested_by, \
    execution_id = excluded.execution_id, task_path = excluded.task_path, attempt = excluded.attempt, \
    params = excluded.params, accepted_at = excluded.accepted_at, started_at = excluded.started_at, \
    ended_at = excluded.ended_at, duration_ms = excluded.duration_ms, message = excluded.message, \
    current_step = excluded.current_step, job_hash = excluded.job_hash, package_hashes = excluded.package_hashes, \
    accepted_sequence = excluded.accepted_sequence, process_groups = excluded.process_groups";

/// Deletes one history row (retention), giving back its run id.
pub(super) const DELETE_HISTORY_ROW: &str = "DELETE FROM history WHERE instance_id = ?1 RETURNING run_id";

/// Deletes an ended run once retention took its last history row: the run goes with its
/// history, as SQL Server Agent's sysjobhistory rows are the run's record.
pub(super) const DELETE_ENDED_RUN: &str = "DELETE FROM runs WHERE run_id = ?1 \
    AND status IN ('succeeded', 'failed', 'canceled') \
    AND NOT EXISTS (SELECT 1 FROM history WHERE run_id = ?1)";

/// Deletes the captured output of a run that is no longer stored.
pub(super) const DELETE_ORPHAN_OUTPUT: &str =
    "DELETE FROM step_outputs WHERE run_id = ?1 AND NOT EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)";

/// Runs `sql` (INSERT_RUN or UPSERT_RUN) for `run`.
pub(super) fn put_run(connection: &Connection, sql: &str, run: &RunRecord) -> rusqlite::Result<()> {
    connection.prepare_cached(sql)?.execute(params![
        run.run_id,
        run.job,
        run.status.as_str(),
        run.idempotency_key,
        Unsigned(run.epoch),
        run.requested_by,
        run.execution_id,
        run.task_path,
        run.attempt,
        to_json(&run.params)?,
        timestamp(&run.accepted_at),
        run.started_at.as_ref().map(timestamp),
        run.ended_at.as_ref().map(timestamp),
        run.duration_ms.map(Unsigned),
        run.message,
        run.current_step,
        run.job_hash,
        to_json(&run.package_hashes)?,
        Unsigned(run.accepted_sequence),
        to_json(&run.process_groups)?,
    ])?;
    Ok(())
}

/// Appends a history row under `instance_id`.
pub(super) fn insert_history(connection: &Connection, instance_id: u64, row: &HistoryRecord) -> rusqlite::Result<()> {
    let sql = "INSERT INTO history (instance_id, job, step_id, step_name, run_status, started_at, duration_ms, \
        message, run_id, retries_attempted) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
    connection.prepare_cached(sql)?.execute(params![
        Unsigned(instance_id),
        row.job,
        row.step_id,
        row.step_name,
        row.run_status.code(),
        timestamp(&row.started_at),
        Unsigned(row.duration_ms),
        row.message,
        row.run_id,
        row.retries_attempted,
    ])?;
    Ok(())
}

/// Appends an outbox event under its (already assigned) sequence.
pub(super) fn insert_event(connection: &Connection, event: &OutboxEvent) -> rusqlite::Result<()> {
    let sql = "INSERT INTO outbox (sequence, run_id, job, idempotency_key, kind, status, message, at, step_id, \
        step_name, exit_code, duration_ms, execution_id, task_path, attempt) \
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";
    connection.prepare_cached(sql)?.execute(params![
        Unsigned(event.sequence),
        event.run_id,
        event.job,
        event.idempotency_key,
        event_kind_name(event.kind),
        event.status.as_str(),
        event.message,
        timestamp(&event.at),
        event.step_id,
        event.step_name,
        event.exit_code,
        Unsigned(event.duration_ms),
        event.execution_id,
        event.task_path,
        event.attempt,
    ])?;
    Ok(())
}

/// Stores a step attempt's output, replacing an earlier one for the same attempt.
pub(super) fn put_output(connection: &Connection, output: &StepOutputRecord) -> rusqlite::Result<()> {
    let sql = "INSERT INTO step_outputs (run_id, step_id, attempt, step_name, stdout, stderr, truncated) \
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET \
        step_name = excluded.step_name, stdout = excluded.stdout, stderr = excluded.stderr, \
        truncated = excluded.truncated";
    connection.prepare_cached(sql)?.execute(params![
        output.run_id,
        output.step_id,
        output.attempt,
        output.step_name,
        output.stdout,
        output.stderr,
        output.truncated,
    ])?;
    Ok(())
}

/// Stores a job definition.
pub(super) fn upsert_job(connection: &Connection, name: &str, definition: &str, hash: &str) -> rusqlite::Result<()> {
    let sql = "INSERT INTO jobs (name, definition, hash) VALUES (?1, ?2, ?3) \
        ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, hash = excluded.hash";
    connection.prepare_cached(sql)?.execute(params![name, definition, hash])?;
    Ok(())
}

/// Removes a job definition.
pub(super) fn delete_job(connection: &Connection, name: &str) -> rusqlite::Result<()> {
    connection.prepare_cached("DELETE FROM jobs WHERE name = ?1")?.execute([name])?;
    Ok(())
}

/// Stores a package.
pub(super) fn put_package(connection: &Connection, name: &str, content: &str, hash: &str) -> rusqlite::Result<()> {
    let sql = "INSERT INTO packages (name, content, hash) VALUES (?1, ?2, ?3) \
        ON CONFLICT (name) DO UPDATE SET content = excluded.content, hash = excluded.hash";
    connection.prepare_cached(sql)?.execute(params![name, content, hash])?;
    Ok(())
}

/// Raises the consumed sequence to `sequence` (never lowers it).
pub(super) fn set_consumed(connection: &Connection, sequence: u64) -> rusqlite::Result<()> {
    let sql = "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET \
        value = CAST(max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER)) AS TEXT)";
    connection.prepare_cached(sql)?.execute(params![META_CONSUMED_SEQUENCE, sequence.to_string()])?;
    Ok(())
}

/// Deletes events both consumed and older than `older_than`; returns how many.
pub(super) fn prune_outbox(
    connection: &Connection,
    consumed_up_to: u64,
    older_than: &DateTime<Utc>,
) -> rusqlite::Result<u64> {
    let sql = "DELETE FROM outbox WHERE sequence <= ?1 AND at < ?2";
    let deleted = connection.prepare_cached(sql)?.execute(params![Unsigned(consumed_up_to), timestamp(older_than)])?;
    Ok(deleted as u64)
}

pub(super) fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        run_id: row.get(0)?,
        job: row.get(1)?,
        status: run_status(row, 2)?,
        idempotency_key: row.get(3)?,
        epoch: unsigned(row, 4)?,
        requested_by: row.get(5)?,
        execution_id: row.get(6)?,
        task_path: row.get(7)?,
        attempt: row.get(8)?,
        params: from_json(row, 9)?,
        secrets: Default::default(),
        accepted_at: time(row, 10)?,
        started_at: optional_time(row, 11)?,
        ended_at: optional_time(row, 12)?,
        duration_ms: optional_unsigned(row, 13)?,
        message: row.get(14)?,
        current_step: row.get(15)?,
        job_hash: row.get(16)?,
        package_hashes: from_json(row, 17)?,
        accepted_sequence: unsigned(row, 18)?,
        process_groups: from_json(row, 19)?,
    })
}

pub(super) fn history_from_row(row: &Row<'_>) -> rusqlite::Result<HistoryRecord> {
    let code: u8 = row.get(4)?;
    Ok(HistoryRecord {
        instance_id: unsigned(row, 0)?,
        job: row.get(1)?,
        step_id: row.get(2)?,
        step_name: row.get(3)?,
        run_status: HistoryStatus::from_code(code)
            .ok_or_else(|| bad_value(4, Type::Integer, format!("unknown history run_status {code}")))?,
        started_at: time(row, 5)?,
        duration_ms: unsigned(row, 6)?,
        message: row.get(7)?,
        run_id: row.get(8)?,
        retries_attempted: row.get(9)?,
    })
}

pub(super) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<OutboxEvent> {
    let kind: String = row.get(4)?;
    Ok(OutboxEvent {
        sequence: unsigned(row, 0)?,
        run_id: row.get(1)?,
        job: row.get(2)?,
        idempotency_key: row.get(3)?,
        kind: parse_event_kind(&kind)
            .ok_or_else(|| bad_value(4, Type::Text, format!("unknown event kind {kind:?}")))?,
        status: run_status(row, 5)?,
        message: row.get(6)?,
        at: time(row, 7)?,
        step_id: row.get(8)?,
        step_name: row.get(9)?,
        exit_code: row.get(10)?,
        duration_ms: unsigned(row, 11)?,
        execution_id: row.get(12)?,
        task_path: row.get(13)?,
        attempt: row.get(14)?,
    })
}

pub(super) fn output_from_row(row: &Row<'_>) -> rusqlite::Result<StepOutputRecord> {
    Ok(StepOutputRecord {
        run_id: row.get(0)?,
        step_id: row.get(1)?,
        attempt: row.get(2)?,
        step_name: row.get(3)?,
        stdout: row.get(4)?,
        stderr: row.get(5)?,
        truncated: row.get(6)?,
    })
}

fn event_kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Accepted => "accepted",
        EventKind::Started => "started",
        EventKind::StepStarted => "step_started",
        EventKind::StepFinished => "step_finished",
        EventKind::StepRetrying => "step_retrying",
        EventKind::Finished => "finished",
    }
}

fn parse_event_kind(name: &str) -> Option<EventKind> {
    Some(match name {
        "accepted" => EventKind::Accepted,
        "started" => EventKind::Started,
        "step_started" => EventKind::StepStarted,
        "step_finished" => EventKind::StepFinished,
        "step_retrying" => EventKind::StepRetrying,
        "finished" => EventKind::Finished,
        _ => return None,
    })
}

fn run_status(row: &Row<'_>, index: usize) -> rusqlite::Result<RunStatus> {
    let text: String = row.get(index)?;
    RunStatus::parse(&text).ok_or_else(|| bad_value(index, Type::Text, format!("unknown run status {text:?}")))
}
