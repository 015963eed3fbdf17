//! The ordered event log of a run: what started and ended, when, and how.

use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::report::{ExecutionStatus, rfc3339};
use super::secrets::Masker;
use crate::model::{TaskKind, TaskResult};

/// One entry of the event log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When it happened (UTC).
    #[serde(serialize_with = "rfc3339")]
    pub at: DateTime<Utc>,
    /// The task path (`Stage/Load orders`, `Files[2]/Copy`); empty for the package itself.
    pub path: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event says.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The package (or a child package, with the path of its `package` task) started.
    PackageStarted {
        /// The package's name.
        package: String,
    },
    /// The package ended.
    PackageFinished {
        /// Its status.
        status: ExecutionStatus,
        /// Monotonic duration.
        duration_ms: u64,
    },
    /// A task started (after it got a slot).
    TaskStarted {
        /// Its kind.
        #[serde(deserialize_with = "static_kind")]
        kind: KindName,
    },
    /// A task ended.
    TaskFinished {
        /// Its kind.
        #[serde(deserialize_with = "static_kind")]
        kind: KindName,
        /// Its result, after force_result.
        result: TaskResult,
        /// Monotonic duration from start.
        duration_ms: u64,
        /// What happened, e.g. "exited with code 1".
        message: String,
        /// A process task's exit code.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// What a process task printed on stdout (`tasks["X"].output`), so a resumed run can
        /// replay the task with what expressions saw of it.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        output: String,
        /// The agent that ran an agent_job task's child.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Errors the task raised in its container (a forced result keeps them), so a replayed
        /// task counts what it counted.
        #[serde(default, skip_serializing_if = "is_zero")]
        errors: u32,
    },
    /// A task was never run (constraints not met, or the run was canceled first).
    TaskNotRun {
        /// Why.
        reason: String,
    },
    /// The run was resumed after its process stopped: tasks that had ended are replayed, not
    /// run again, and the tasks that were running run again.
    Resumed {
        /// How many ended tasks the resumed run replays.
        replayed: usize,
    },
    /// The run could not be resumed after its process stopped, and ended unexpectedly.
    NotResumed {
        /// Why.
        reason: String,
    },
    /// A transaction ended where it started (the package or the task at the event's path).
    TransactionEnded {
        /// True when it committed, false when it rolled back.
        committed: bool,
        /// What happened, e.g. `committed on 2 connection(s) (two-phase)`.
        message: String,
    },
}

impl Serialize for TaskResult {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TaskResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const NAMES: [&str; 5] = ["success", "failure", "completion", "canceled", "not_run"];
        let name = String::deserialize(d)?;
        Ok(match name.as_str() {
            "success" => TaskResult::Success,
            "failure" => TaskResult::Failure,
            "completion" => TaskResult::Completion,
            "canceled" => TaskResult::Canceled,
            "not_run" => TaskResult::NotRun,
            _ => return Err(serde::de::Error::unknown_variant(&name, &NAMES)),
        })
    }
}

/// A task kind as [`TaskKind::name`] gives it. Written through an alias because serde's derive
/// takes a field spelled `&'static str` as borrowed from the input, and would then deserialize
/// only from `'static` data.
pub(crate) type KindName = &'static str;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Reads a task kind back as the static string [`TaskKind::name`] gives.
pub(crate) fn static_kind<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    TaskKind::static_name(&name).ok_or_else(|| serde::de::Error::unknown_variant(&name, &TaskKind::NAMES))
}

/// Called for every event as it is recorded (live progress).
pub type EventObserver = Arc<dyn Fn(&Event) + Send + Sync>;

/// The run's event log: appends are ordered and numbered under one short lock. Every text an
/// event carries is masked with the run's secret values before anyone sees it.
pub struct EventLog {
    events: Mutex<Vec<Event>>,
    observer: Option<EventObserver>,
    /// The secret values of the package and its child packages run in process.
    masker: RwLock<Masker>,
    /// The sequence the log continues after (the events an earlier run of a resumed execution
    /// stored); 0 for a new run.
    after: u64,
}

impl EventLog {
    /// An empty log that also hands each event to `observer`.
    pub fn new(observer: Option<EventObserver>) -> Self {
        Self::continuing(observer, 0)
    }

    /// An empty log whose first event is numbered `after + 1`.
    pub fn continuing(observer: Option<EventObserver>, after: u64) -> Self {
        Self { events: Mutex::new(Vec::new()), observer, after, masker: RwLock::new(Masker::default()) }
    }

    /// Adds secret values to mask in this log's events (and [`EventLog::mask`]).
    pub fn add_secrets(&self, values: impl IntoIterator<Item = String>) {
        self.masker.write().unwrap_or_else(|poisoned| poisoned.into_inner()).add(values);
    }

    /// A copy of the secret values this log masks.
    pub fn masker(&self) -> Masker {
        self.masker.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// `text` with the run's secret values shown as `***`.
    pub fn mask(&self, text: &str) -> String {
        self.masker.read().unwrap_or_else(|poisoned| poisoned.into_inner()).mask(text)
    }

    /// Records an event now.
    pub fn emit(&self, path: &str, mut kind: EventKind) {
        {
            let masker = self.masker.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !masker.is_empty() {
                match &mut kind {
                    EventKind::TaskFinished { message, output, .. } => {
                        masker.mask_in_place(message);
                        masker.mask_in_place(output);
                    }
                    EventKind::TaskNotRun { reason }
                    | EventKind::NotResumed { reason }
                    | EventKind::TransactionEnded { message: reason, .. } => {
                        masker.mask_in_place(reason);
                    }
                    _ => {}
                }
            }
        }
        let mut events = self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let seq = self.after + events.len() as u64 + 1;
        let event = Event { seq, at: Utc::now(), path: path.to_string(), kind };
        if let Some(observer) = &self.observer {
            observer(&event);
        }
        events.push(event);
    }

    /// Everything recorded so far.
    pub fn snapshot(&self) -> Vec<Event> {
        self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Takes the events out of the log.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog").finish_non_exhaustive()
    }
}
