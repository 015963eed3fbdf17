//! Replaying what an earlier run had finished, the one mechanism behind both ways a run picks up
//! where another stopped:
//! - a coordinator restart resumes an execution from its stored events: what had ended is
//!   replayed, not run again. Containers and loops run again, so loop positions and variables
//!   come back as they were; inside them, every leaf task that had ended is replayed with its
//!   result, exit code and output. Tasks that were running (a process, a sleep, a child package,
//!   an agent job) run again; an agent job's launcher re-attaches to the child it had started
//!   (idempotency keys);
//! - a checkpoint restart (SSIS CheckpointUsage) replays the tasks a failed run's checkpoint
//!   file says succeeded; loops and transacted containers are kept or run again whole
//!   (`checkpoint.rs` decides what a checkpoint keeps).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::kinds::LazyScope;
use super::scope::Frame;
use super::task::TaskOutcome;
use super::{ChildRecord, ChildStatus, Event, EventKind, RunShared, TaskRecord};
use crate::expr::{Map, TaskFacts};
use crate::model::{Task, TaskKind, TaskResult};

/// What an earlier run had finished, replayed instead of run again: from the events a
/// coordinator stored for the same execution ([`Resume::from_events`]), or from a checkpoint
/// file a failed run left ([`super::Checkpoint::resume`]).
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Tasks that ended, by path (`Loop[1]/Copy`): leaf tasks, and from a checkpoint also
    /// containers restarted whole (loops, transacted containers) that succeeded.
    pub(super) ended: HashMap<String, EndedTask>,
    /// The last event the earlier run stored: the resumed run's events follow it.
    pub last_sequence: u64,
    /// The package variables (`vars.<name>`) the run starts with.
    pub variables: Map,
    /// Set when the replayed tasks come from a checkpoint: the execution that wrote it. The run
    /// is then a new execution, which records an event for each task it keeps.
    pub checkpoint_of: Option<String>,
}

/// How a task of the earlier run ended.
#[derive(Debug, Clone)]
pub(super) struct EndedTask {
    pub result: TaskResult,
    pub message: String,
    pub exit_code: Option<i32>,
    pub output: String,
    pub agent: Option<String>,
    pub duration_ms: u64,
    pub started_at: DateTime<Utc>,
    /// Errors it raised in its container.
    pub errors: u32,
    /// A container kept whole: the records of what it held.
    pub inner: Vec<TaskRecord>,
}

/// Appended to the message of a task a checkpoint restart keeps.
pub(super) const KEPT: &str = " (kept from the checkpoint)";

impl Resume {
    /// Reads the events of an earlier run of the package (in sequence order). Events of child
    /// packages run in process are skipped: a child package that had not ended runs again whole.
    pub fn from_events(events: &[Event]) -> Resume {
        let mut resume = Resume::default();
        let mut started: HashMap<&str, DateTime<Utc>> = HashMap::new();
        let mut child_packages: Vec<String> = Vec::new();
        for event in events {
            resume.last_sequence = resume.last_sequence.max(event.seq);
            let path = event.path.as_str();
            if child_packages.iter().any(|prefix| path.starts_with(prefix.as_str())) {
                continue;
            }
            match &event.kind {
                EventKind::PackageStarted { .. } if !path.is_empty() => child_packages.push(format!("{path}/")),
                EventKind::TaskStarted { .. } => {
                    started.insert(path, event.at);
                }
                EventKind::TaskFinished { kind, result, duration_ms, message, exit_code, output, agent, errors }
                    if !is_container(kind) =>
                {
                    let ended = EndedTask {
                        result: *result,
                        message: message.clone(),
                        exit_code: *exit_code,
                        output: output.clone(),
                        agent: agent.clone(),
                        duration_ms: *duration_ms,
                        started_at: started.get(path).copied().unwrap_or(event.at),
                        // Events written before `errors` was recorded: a failure raised one.
                        errors: (*errors).max(u32::from(*result == TaskResult::Failure)),
                        inner: Vec::new(),
                    };
                    resume.ended.insert(event.path.clone(), ended);
                }
                _ => {}
            }
        }
        resume
    }

    /// How many ended tasks a resumed run replays.
    pub fn replayed(&self) -> usize {
        self.ended.len()
    }

    /// True when the task at `path` had ended and is replayed.
    pub fn has_ended(&self, path: &str) -> bool {
        self.ended.contains_key(path)
    }
}

/// True for the kinds that hold tasks (they run again; their tasks are replayed).
fn is_container(kind: &str) -> bool {
    matches!(kind, "sequence" | "foreach" | "for")
}

/// The outcome of a task the earlier run had ended, without running it; `None` when it had not
/// ended. Resuming an execution emits no event for it (its events are stored already); a
/// checkpoint restart, a new execution, records its end again, marked as kept.
pub(crate) fn replay(shared: &Arc<RunShared>, task: &Task, path: &str, frame: &Frame) -> Option<TaskOutcome> {
    let resume = shared.resume.as_ref()?;
    let ended = resume.ended.get(path)?;
    let is_container = task.kind.children().is_some();
    if is_container && resume.checkpoint_of.is_none() {
        // Resuming from events: containers run again and replay their tasks one by one.
        return None;
    }
    let failed = ended.result == TaskResult::Failure;
    if failed && task.fail_package_on_failure {
        shared.fail_package.store(true, Ordering::SeqCst);
    }
    let message = match &resume.checkpoint_of {
        Some(_) => format!("{}{KEPT}", ended.message),
        None => ended.message.clone(),
    };
    if resume.checkpoint_of.is_some() {
        shared.events.emit(
            &format!("{}{path}", shared.event_prefix),
            EventKind::TaskFinished {
                kind: task.kind.name(),
                result: ended.result,
                duration_ms: ended.duration_ms,
                message: message.clone(),
                exit_code: ended.exit_code,
                output: ended.output.clone(),
                agent: ended.agent.clone(),
                errors: ended.errors,
            },
        );
    }
    let children = match &task.kind {
        TaskKind::Package(child) => vec![ChildRecord {
            task: path.to_string(),
            agent: None,
            job: None,
            run_id: None,
            package: LazyScope::new(shared, frame).render(&child.path).ok(),
            status: match ended.result {
                TaskResult::Success | TaskResult::Completion => ChildStatus::Succeeded,
                TaskResult::Canceled => ChildStatus::Canceled,
                _ => ChildStatus::Failed,
            },
            duration_ms: Some(ended.duration_ms),
            agent_status: None,
            tasks: Vec::new(),
            attempt: 0,
            started_at: None,
        }],
        _ => Vec::new(),
    };
    let mut records = vec![TaskRecord {
        path: path.to_string(),
        kind: task.kind.name(),
        result: ended.result,
        started_at: Some(ended.started_at),
        duration_ms: Some(ended.duration_ms),
        agent: ended.agent.clone(),
        message,
        exit_code: ended.exit_code,
    }];
    records.extend(ended.inner.iter().cloned());
    Some(TaskOutcome {
        result: ended.result,
        errors_up: ended.errors,
        fail_parent: failed && task.fail_parent_on_failure,
        facts: TaskFacts {
            result: ended.result.as_str().to_string(),
            exit_code: ended.exit_code.map(i64::from),
            duration_ms: ended.duration_ms,
            output: ended.output.clone(),
        },
        records,
        children,
    })
}
