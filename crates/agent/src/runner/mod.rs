//! Runs one accepted run: waits for its turn and slot, walks its steps by their on_success /
//! on_failure actions with retries and timeouts, and records every step and the job outcome
//! as history rows and outbox events.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::jobs::{JobDefinition, StepAction, StepDefinition};
use crate::model::{EventKind, HistoryRecord, HistoryStatus, OutboxEvent, RunRecord, RunStatus};
use crate::store::Write;

mod checkpoint;
mod host;
mod package_output;
mod steps;

pub(crate) use host::{Permits, RunHost};
pub(crate) use steps::process_groups_key;
use steps::{ProcessGroups, StepResult, run_attempt};

/// A job whose actions jump between steps forever is ended after this many step runs.
const MAX_STEP_RUNS: u32 = 1000;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum JobEnd {
    Succeeded,
    Failed(String),
    Canceled,
}

/// The last step that ran: id and name, for the job outcome message.
#[derive(Debug, Clone, Default)]
struct LastStep {
    id: u32,
    name: String,
}

/// Runs an accepted run to its end; never panics, always records an outcome.
pub(crate) async fn execute(
    host: Arc<dyn RunHost>,
    mut record: RunRecord,
    job: Arc<JobDefinition>,
    mut permits: Permits,
    cancel: CancellationToken,
) {
    let key = record.idempotency_key.clone();
    if record.status == RunStatus::Queued {
        if !wait_for_turn(&*host, &record, &mut permits, &cancel).await {
            let end = JobEnd::Canceled;
            finish(&*host, &mut record, &LastStep::default(), &end, None, Vec::new()).await;
            host.finish_run(&record.run_id, key.as_deref());
            return;
        }
        record.status = RunStatus::Running;
        record.started_at = Some(Utc::now());
        let started = OutboxEvent::started(&record);
        write(&*host, vec![Write::UpdateRun(record.clone()), Write::AppendEvent(started)]).await;
    }
    // A run that had a slot at acceptance was recorded started in the acceptance's commit.
    let clock = Instant::now();
    // Executing means a step runs: the first one starts right away.
    host.set_progress(&record.run_id, RunStatus::Running, job.steps.first().map_or(0, |s| s.id));

    let groups = ProcessGroups::start(host.clone(), record.run_id.clone());
    let steps_cancel = cancel.child_token();
    let mut last = LastStep::default();
    let mut pending = Vec::new();
    let mut timed_out = None;
    let end = {
        let steps = run_steps(&host, &mut record, &job, &steps_cancel, &groups, &mut last, &mut pending);
        tokio::pin!(steps);
        match job.timeout {
            None => steps.await,
            Some(limit) => tokio::select! {
                end = &mut steps => end,
                _ = tokio::time::sleep(limit) => {
                    steps_cancel.cancel();
                    timed_out = Some(limit);
                    steps.await
                }
            },
        }
    };
    let end = match (end, timed_out) {
        (JobEnd::Canceled, Some(limit)) if !cancel.is_cancelled() => {
            JobEnd::Failed(format!("the job timed out after {}", humantime::format_duration(limit)))
        }
        (end, _) => end,
    };
    groups.stop().await;
    finish(&*host, &mut record, &last, &end, Some(clock.elapsed()), pending).await;
    drop(permits);
    host.finish_run(&record.run_id, key.as_deref());
}

/// Waits until it is this queued run's turn and a slot is free; false when canceled first.
async fn wait_for_turn(
    host: &dyn RunHost,
    record: &RunRecord,
    permits: &mut Permits,
    cancel: &CancellationToken,
) -> bool {
    let Some(turn) = host.queue_turn(&record.job) else { return false };
    tokio::select! {
        turn = turn.acquire_owned() => permits.turn = turn.ok(),
        _ = cancel.cancelled() => return false,
    }
    tokio::select! {
        slot = host.slots().acquire_owned() => permits.slot = slot.ok(),
        _ = cancel.cancelled() => return false,
    }
    true
}

async fn run_steps(
    host: &Arc<dyn RunHost>,
    record: &mut RunRecord,
    job: &JobDefinition,
    cancel: &CancellationToken,
    groups: &ProcessGroups,
    last: &mut LastStep,
    pending: &mut Vec<Write>,
) -> JobEnd {
    let mut index = 0usize;
    for _ in 0..MAX_STEP_RUNS {
        let Some(step) = job.steps.get(index) else {
            return JobEnd::Failed(format!("step index {index} does not exist"));
        };
        *last = LastStep { id: step.id, name: step.name.clone() };
        let result = run_step(host, record, step, cancel, groups, pending).await;
        let action = match result.status {
            HistoryStatus::Canceled => return JobEnd::Canceled,
            HistoryStatus::Succeeded => step.on_success,
            _ => step.on_failure,
        };
        match action {
            StepAction::Next if index + 1 < job.steps.len() => index += 1,
            StepAction::Next if result.status == HistoryStatus::Succeeded => return JobEnd::Succeeded,
            StepAction::Next => return JobEnd::Failed(result.message),
            StepAction::QuitSuccess => return JobEnd::Succeeded,
            StepAction::QuitFailure => return JobEnd::Failed(result.message),
            StepAction::GoTo(target) => index = target,
        }
    }
    JobEnd::Failed(format!(
        "the job ran {MAX_STEP_RUNS} steps without reaching a quit action; check the steps' on_success and on_failure"
    ))
}

/// One step with its retries: history rows for retries and for the step's end. The step's end
/// is left in `pending`, written with whatever comes next (the next step's start, or the job
/// outcome), so a one-step run commits its end once.
async fn run_step(
    host: &Arc<dyn RunHost>,
    record: &mut RunRecord,
    step: &StepDefinition,
    cancel: &CancellationToken,
    groups: &ProcessGroups,
    pending: &mut Vec<Write>,
) -> StepResult {
    let mut attempt = 0u32;
    loop {
        record.status = RunStatus::Running;
        record.current_step = step.id;
        host.set_progress(&record.run_id, RunStatus::Running, step.id);
        let mut started =
            OutboxEvent::about(record, EventKind::StepStarted, format!("step {} ({}) started", step.id, step.name));
        started.step_id = step.id;
        started.step_name = step.name.clone();
        // Progress, not an outcome: queued behind what is pending, not waited for (the live
        // state is in memory; the job outcome is written, and waited for, at the end).
        let mut batch = std::mem::take(pending);
        batch.push(Write::AppendEvent(started));
        queue(&**host, batch).await;

        let started_at = Utc::now();
        let clock = Instant::now();
        let (result, output, package_hash) = run_attempt(host, record, step, attempt, cancel, groups).await;
        let duration_ms = clock.elapsed().as_millis() as u64;
        if let Some(hash) = package_hash
            && !record.package_hashes.contains(&hash)
        {
            record.package_hashes.push(hash);
        }
        let mut batch = vec![Write::PutOutput(output)];
        let retry = result.status == HistoryStatus::Failed && attempt < step.retry_attempts && !cancel.is_cancelled();
        let (row_status, message, kind) = if retry {
            let message = format!(
                "{} The step failed and will be retried in {} (retry {} of {}).",
                result.message,
                humantime::format_duration(step.retry_interval),
                attempt + 1,
                step.retry_attempts
            );
            (HistoryStatus::Retry, message, EventKind::StepRetrying)
        } else {
            let verdict = match result.status {
                HistoryStatus::Succeeded => "The step succeeded.",
                HistoryStatus::Canceled => "The step was canceled.",
                _ => "The step failed.",
            };
            (result.status, format!("{} {verdict}", result.message), EventKind::StepFinished)
        };
        batch.push(Write::AppendHistory(HistoryRecord {
            instance_id: 0,
            job: record.job.clone(),
            step_id: step.id,
            step_name: step.name.clone(),
            run_status: row_status,
            started_at,
            duration_ms,
            message: message.clone(),
            run_id: record.run_id.clone(),
            retries_attempted: attempt,
        }));
        if retry {
            record.status = RunStatus::BetweenRetries;
            host.set_progress(&record.run_id, RunStatus::BetweenRetries, step.id);
        }
        let mut event = OutboxEvent::about(record, kind, message);
        event.step_id = step.id;
        event.step_name = step.name.clone();
        event.exit_code = result.exit_code;
        event.duration_ms = duration_ms;
        batch.push(Write::AppendEvent(event));
        if !retry {
            pending.extend(batch);
            return result;
        }
        batch.push(Write::UpdateRun(record.clone()));
        write(&**host, batch).await;
        tokio::select! {
            _ = tokio::time::sleep(step.retry_interval) => {}
            _ = cancel.cancelled() => {
                return StepResult { status: HistoryStatus::Canceled, message: "canceled between retries".into(), exit_code: None };
            }
        }
        attempt += 1;
    }
}

/// Records the job outcome: what is `pending` (the last step's end), the run's final state, the
/// step 0 history row, the FINISHED event; in one commit.
async fn finish(
    host: &dyn RunHost,
    record: &mut RunRecord,
    last: &LastStep,
    end: &JobEnd,
    ran: Option<Duration>,
    mut pending: Vec<Write>,
) {
    let (status, history_status) = match end {
        JobEnd::Succeeded => (RunStatus::Succeeded, HistoryStatus::Succeeded),
        JobEnd::Failed(_) => (RunStatus::Failed, HistoryStatus::Failed),
        JobEnd::Canceled => (RunStatus::Canceled, HistoryStatus::Canceled),
    };
    let invoked = format!("The Job was invoked by User {}.", record.requested_by);
    let last_step = if last.id == 0 {
        "No step ran.".to_string()
    } else {
        format!("The last step to run was step {} ({}).", last.id, last.name)
    };
    let message = match end {
        JobEnd::Succeeded => format!("The job succeeded.  {invoked}  {last_step}"),
        JobEnd::Failed(reason) => format!("The job failed: {reason}  {invoked}  {last_step}"),
        JobEnd::Canceled => {
            let by = host.stopped_by(&record.run_id).unwrap_or_else(|| "the agent shutting down".to_string());
            format!("The job was stopped prior to completion by User {by}.  {invoked}  {last_step}")
        }
    };
    let duration_ms = ran.map_or(0, |d| d.as_millis() as u64);
    record.status = status;
    record.ended_at = Some(Utc::now());
    record.duration_ms = Some(duration_ms);
    record.message = message.clone();
    record.current_step = 0;
    let history = HistoryRecord {
        instance_id: 0,
        job: record.job.clone(),
        step_id: 0,
        step_name: "(Job outcome)".to_string(),
        run_status: history_status,
        started_at: record.started_at.unwrap_or(record.accepted_at),
        duration_ms,
        message: message.clone(),
        run_id: record.run_id.clone(),
        retries_attempted: 0,
    };
    let mut event = OutboxEvent::about(record, EventKind::Finished, message);
    event.duration_ms = duration_ms;
    tracing::info!(run = %record.run_id, job = %record.job, status = status.as_str(), duration_ms, "run finished");
    host.telemetry().run_ended(&record.job, status.as_str());
    pending.extend([Write::UpdateRun(record.clone()), Write::AppendHistory(history), Write::AppendEvent(event)]);
    write(host, pending).await;
}

/// Queues a batch without waiting for its commit; a failure is logged by the store's writer.
async fn queue(host: &dyn RunHost, batch: Vec<Write>) {
    if let Err(e) = host.store().queue(batch).await {
        tracing::error!(error = %e, "cannot record run progress; the history of this run is incomplete");
    }
}

/// Writes a batch; a store failure is logged (the run goes on; its outcome write retries once).
async fn write(host: &dyn RunHost, batch: Vec<Write>) {
    if let Err(first) = host.store().write(batch.clone()).await {
        tracing::error!(error = %first, "cannot record run progress; retrying once");
        if let Err(e) = host.store().write(batch).await {
            tracing::error!(error = %e, "cannot record run progress; the history of this run is incomplete");
        }
    }
}
