//! The coordinator's records, shared by the store that keeps them and the report that shows
//! them (neither knows the other): executions, their events and child runs, an execution's
//! report, and the lower-case names statuses are stored and sent by.

use chrono::{DateTime, Utc};
use switchyard_package::engine::{ChildRecord, ChildStatus, Event, ExecutionStatus, TaskRecord};
use switchyard_package::expr::Map;

/// One execution of a package, as the executions list and the report's header show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// The execution's id.
    pub execution_id: String,
    /// The client's request id, unique across executions, so a retried submission is found.
    pub request_id: Option<String>,
    /// The package's name.
    pub package: String,
    /// The package file it was loaded from.
    pub package_file: String,
    /// Its status (SSISDB's catalog.executions).
    pub status: ExecutionStatus,
    /// Who started it.
    pub caller: String,
    /// The parameter values used.
    pub parameters: Map,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; None while it runs.
    pub ended_at: Option<DateTime<Utc>>,
    /// How long it ran; None while it runs.
    pub duration_ms: Option<u64>,
}

/// One entry of an execution's event log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The execution it belongs to.
    pub execution_id: String,
    /// Its position in the execution's log, assigned by the caller.
    pub sequence: u64,
    /// The event, stored as JSON.
    pub event: Event,
}

/// One start of a job on an agent for an `agent_job` task: one per attempt, so failed, lost
/// and superseded attempts stay in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRunRecord {
    /// The execution whose task started it.
    pub execution_id: String,
    /// The task's path, loop iterations included.
    pub task_path: String,
    /// Which attempt of the task (from 0).
    pub attempt: u32,
    /// The agent it was started on.
    pub agent: String,
    /// The job.
    pub job: String,
    /// The agent's run id; with `agent`, the record's key.
    pub run_id: String,
    /// The idempotency key the start carried.
    pub idempotency_key: String,
    /// How it stands.
    pub status: ChildStatus,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// How long it ran, once it ended.
    pub duration_ms: Option<u64>,
    /// What the agent said of it.
    pub message: String,
    /// The child package the job ran, when known.
    pub package: Option<String>,
}

impl From<ChildRunRecord> for ChildRecord {
    /// The report's view of a child run. Empty agent, job or run id (a child run in process,
    /// which has none) become null.
    fn from(child: ChildRunRecord) -> ChildRecord {
        let present = |text: String| if text.is_empty() { None } else { Some(text) };
        ChildRecord {
            task: child.task_path,
            agent: present(child.agent),
            job: present(child.job),
            run_id: present(child.run_id),
            package: child.package,
            status: child.status,
            duration_ms: child.duration_ms,
            agent_status: None,
            tasks: Vec::new(),
            attempt: child.attempt,
            started_at: Some(child.started_at),
        }
    }
}

/// An execution's Overview report, as read from the store; [`crate::report`] renders it.
#[derive(Debug, Clone)]
pub struct Report {
    /// The execution's information and the parameters used.
    pub execution: ExecutionRecord,
    /// Every task of the package, in order; those that never ran with `not_run`.
    pub tasks: Vec<TaskRecord>,
    /// The child packages executed, every attempt included.
    pub children: Vec<ChildRecord>,
}

/// A status or result from its lower-case name (`ended_unexpectedly`, `not_run`), through its
/// serde name so the names live in one place.
pub fn parse_name<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name)).ok()
}
