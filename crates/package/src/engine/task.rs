//! One task from start to end: slot, timeout, force_result, error counting, events and records.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::graph::not_run_facts;
use super::kinds::{KindOutcome, run_kind};
use super::scope::Frame;
use super::transaction::{self, Membership};
use super::{ChildRecord, EventKind, RunShared, TaskRecord};
use crate::expr::TaskFacts;
use crate::model::{Task, TaskKind, TaskResult};

/// How a task ended, as its container sees it.
#[derive(Debug)]
pub(crate) struct TaskOutcome {
    /// The result after force_result.
    pub result: TaskResult,
    /// Errors this task raises in its container.
    pub errors_up: u32,
    /// It failed with fail_parent_on_failure.
    pub fail_parent: bool,
    /// What expressions see of it.
    pub facts: TaskFacts,
    /// Its record, then its inner tasks' records.
    pub records: Vec<TaskRecord>,
    /// Child packages run by it or inside it.
    pub children: Vec<ChildRecord>,
}

/// True for tasks that hold a package slot while they run (containers do not: their tasks do).
fn holds_slot(kind: &TaskKind) -> bool {
    matches!(
        kind,
        TaskKind::Process(_) | TaskKind::Sleep(_) | TaskKind::Package(_) | TaskKind::AgentJob(_) | TaskKind::Sql(_)
    )
}

/// Runs a task whose constraints allowed it to start.
pub(crate) fn run_task<'a>(
    shared: &'a Arc<RunShared>,
    task: &'a Task,
    path: String,
    frame: Frame,
    cancel: &'a CancellationToken,
) -> Pin<Box<dyn Future<Output = TaskOutcome> + Send + 'a>> {
    Box::pin(async move {
        let kind = task.kind.name();
        let event_path = format!("{}{path}", shared.event_prefix);
        if task.disabled {
            return disabled(shared, task, &path, &event_path);
        }
        // Work done inside a transaction before a restart died with its session: a task that
        // runs in one runs again (a transacted container restarts whole), never replayed.
        if frame.transaction.is_none()
            && let Some(replayed) = super::resume::replay(shared, task, &path, &frame)
        {
            return replayed;
        }
        let permit = if holds_slot(&task.kind) {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return not_run(shared, task, &path, "the run was canceled before it started".into()),
                permit = shared.slots.clone().acquire_owned() => permit.ok(),
            }
        } else {
            None
        };
        let started_at = Utc::now();
        let clock = Instant::now();
        shared.events.emit(&event_path, EventKind::TaskStarted { kind });

        let task_cancel = cancel.child_token();
        let joined = transaction::enter(task.transaction, task.isolation, frame.transaction.as_ref(), || {
            format!("task \"{path}\"")
        });
        let frame = frame.with_transaction(joined.transaction());
        let body = run_kind(shared, task, &path, &frame, &task_cancel, permit);
        let mut timed_out = false;
        let mut outcome = match task.timeout {
            None => body.await,
            Some(limit) => {
                tokio::pin!(body);
                tokio::select! {
                    outcome = &mut body => outcome,
                    _ = tokio::time::sleep(limit) => {
                        task_cancel.cancel();
                        timed_out = true;
                        body.await
                    }
                }
            }
        };
        if timed_out && outcome.result == TaskResult::Canceled && !cancel.is_cancelled() {
            let limit = task.timeout.unwrap_or_default();
            outcome.result = TaskResult::Failure;
            outcome.message = format!("timed out after {}; {}", humantime::format_duration(limit), outcome.message);
        }
        if let Membership::Started(started) = &joined {
            let succeeded = outcome.result == TaskResult::Success;
            match transaction::settle(shared, started, &event_path, succeeded).await {
                Err(e) => {
                    outcome.result = TaskResult::Failure;
                    outcome.message = format!("{}; {e}", outcome.message);
                }
                Ok(()) if !succeeded => outcome.message = format!("{}; its transaction rolled back", outcome.message),
                Ok(()) => {}
            }
        }
        let duration_ms = clock.elapsed().as_millis() as u64;
        finish(shared, task, path, event_path, Some(started_at), duration_ms, outcome)
    })
}

/// Applies force_result, counts errors, emits the finish event and builds the records.
fn finish(
    shared: &RunShared,
    task: &Task,
    path: String,
    event_path: String,
    started_at: Option<chrono::DateTime<Utc>>,
    duration_ms: u64,
    outcome: KindOutcome,
) -> TaskOutcome {
    let raw = outcome.result;
    let mut message = shared.events.mask(&outcome.message);
    let shown_output = shared.events.mask(&outcome.output);
    let forced = super::forced::apply(task, raw, outcome.inner_errors);
    if let Some(note) = &forced.note {
        message = format!("{message} ({note})");
    }
    let result = forced.result;
    let errors_up = forced.errors_up;
    let failed = result == TaskResult::Failure;
    if failed && task.fail_package_on_failure {
        shared.fail_package.store(true, Ordering::SeqCst);
    }
    shared.events.emit(
        &event_path,
        EventKind::TaskFinished {
            kind: task.kind.name(),
            result,
            duration_ms,
            message: message.clone(),
            exit_code: outcome.exit_code,
            output: shown_output,
            agent: outcome.agent.clone(),
            errors: errors_up,
        },
    );
    let facts = TaskFacts {
        result: result.as_str().to_string(),
        exit_code: outcome.exit_code.map(i64::from),
        duration_ms,
        output: outcome.output,
    };
    let mut records = Vec::with_capacity(1 + outcome.records.len());
    records.push(TaskRecord {
        path,
        kind: task.kind.name(),
        result,
        started_at,
        duration_ms: started_at.map(|_| duration_ms),
        agent: outcome.agent,
        message,
        exit_code: outcome.exit_code,
    });
    records.extend(outcome.records);
    TaskOutcome {
        result,
        errors_up,
        fail_parent: failed && task.fail_parent_on_failure,
        facts,
        records,
        children: outcome.children,
    }
}

/// A disabled task: counts as success without running; what it holds is listed as not run.
fn disabled(shared: &RunShared, task: &Task, path: &str, event_path: &str) -> TaskOutcome {
    let outcome = KindOutcome {
        records: inner_not_run_records(task, path),
        ..KindOutcome::new(TaskResult::Success, "disabled: counts as success")
    };
    finish(shared, task, path.to_string(), event_path.to_string(), Some(Utc::now()), 0, outcome)
}

/// A task whose constraint expression failed: it fails without running.
pub(crate) fn failed_without_running(shared: &RunShared, task: &Task, path: &str, message: String) -> TaskOutcome {
    let event_path = format!("{}{path}", shared.event_prefix);
    let outcome =
        KindOutcome { records: inner_not_run_records(task, path), ..KindOutcome::new(TaskResult::Failure, message) };
    finish(shared, task, path.to_string(), event_path, None, 0, outcome)
}

/// A task that never ran, with everything inside it.
pub(crate) fn not_run(shared: &RunShared, task: &Task, path: &str, reason: String) -> TaskOutcome {
    let reason = shared.events.mask(&reason);
    shared.events.emit(&format!("{}{path}", shared.event_prefix), EventKind::TaskNotRun { reason: reason.clone() });
    let mut records = vec![TaskRecord {
        path: path.to_string(),
        kind: task.kind.name(),
        result: TaskResult::NotRun,
        started_at: None,
        duration_ms: None,
        agent: None,
        message: reason,
        exit_code: None,
    }];
    records.extend(inner_not_run_records(task, path));
    TaskOutcome {
        result: TaskResult::NotRun,
        errors_up: 0,
        fail_parent: false,
        facts: not_run_facts(),
        records,
        children: Vec::new(),
    }
}

/// Not-run records for everything a container holds (loop bodies without an iteration index).
pub(crate) fn inner_not_run_records(task: &Task, path: &str) -> Vec<TaskRecord> {
    let mut records = Vec::new();
    if let Some(children) = task.kind.children() {
        for child in children {
            let child_path = format!("{path}/{}", child.name);
            records.push(TaskRecord {
                path: child_path.clone(),
                kind: child.kind.name(),
                result: TaskResult::NotRun,
                started_at: None,
                duration_ms: None,
                agent: None,
                message: "its container did not run it".to_string(),
                exit_code: None,
            });
            records.extend(inner_not_run_records(child, &child_path));
        }
    }
    records
}
