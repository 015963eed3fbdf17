//! Resuming a run whose process stopped (a coordinator restart): what the earlier run's stored
//! events say had ended is replayed, not run again, as an SSIS checkpoint restart keeps the tasks
//! that succeeded. Containers and loops run again, so loop positions and variables come back as
//! they were; inside them, every leaf task that had ended is replayed with its result, exit code
//! and output. Tasks that were running (a process, a sleep, a child package, an agent job) run
//! again; an agent job's launcher re-attaches to the child it had started (idempotency keys).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};

use super::kinds::LazyScope;
use super::scope::Frame;
use super::task::TaskOutcome;
use super::{ChildRecord, ChildStatus, Event, EventKind, RunShared, TaskRecord};
use crate::expr::TaskFacts;
use crate::model::{Task, TaskKind, TaskResult};

/// What an earlier run of the same execution had finished, from its stored events.
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Leaf tasks that ended, by path (`Loop[1]/Copy`).
    ended: HashMap<String, EndedTask>,
    /// The last event the earlier run stored: the resumed run's events follow it.
    pub last_sequence: u64,
}

/// How a leaf task of the earlier run ended.
#[derive(Debug, Clone)]
struct EndedTask {
    result: TaskResult,
    message: String,
    exit_code: Option<i32>,
    output: String,
    agent: Option<String>,
    duration_ms: u64,
    started_at: DateTime<Utc>,
}

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
                EventKind::TaskFinished { kind, result, duration_ms, message, exit_code, output, agent }
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

/// The outcome of a leaf task the earlier run had ended, without running it or emitting events
/// (its events are stored already); `None` when it had not ended.
pub(crate) fn replay(shared: &Arc<RunShared>, task: &Task, path: &str, frame: &Frame) -> Option<TaskOutcome> {
    if task.kind.children().is_some() {
        return None;
    }
    let ended = shared.resume.as_ref()?.ended.get(path)?;
    let failed = ended.result == TaskResult::Failure;
    if failed && task.fail_package_on_failure {
        shared.fail_package.store(true, Ordering::SeqCst);
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
    Some(TaskOutcome {
        result: ended.result,
        errors_up: u32::from(failed),
        fail_parent: failed && task.fail_parent_on_failure,
        facts: TaskFacts {
            result: ended.result.as_str().to_string(),
            exit_code: ended.exit_code.map(i64::from),
            duration_ms: ended.duration_ms,
            output: ended.output.clone(),
        },
        records: vec![TaskRecord {
            path: path.to_string(),
            kind: task.kind.name(),
            result: ended.result,
            started_at: Some(ended.started_at),
            duration_ms: Some(ended.duration_ms),
            agent: ended.agent.clone(),
            message: ended.message.clone(),
            exit_code: ended.exit_code,
        }],
        children,
    })
}
