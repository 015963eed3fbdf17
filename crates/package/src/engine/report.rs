//! What a run produces: the execution status, one record per task, and the children it ran,
//! serialized as DESIGN.md §9 says.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};

use super::events::Event;
use crate::expr::Map;
use crate::model::TaskResult;

/// Execution status as SSISDB's catalog.executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Canceled by a user.
    Canceled,
    /// Ended with a failure.
    Failed,
    /// Waiting to start.
    Pending,
    /// Its process ended before it did.
    EndedUnexpectedly,
    /// Ended with success.
    Succeeded,
    /// Being canceled.
    Stopping,
    /// Ended with completion.
    Completed,
}

impl ExecutionStatus {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Created => "created",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Canceled => "canceled",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::EndedUnexpectedly => "ended_unexpectedly",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Stopping => "stopping",
            ExecutionStatus::Completed => "completed",
        }
    }

    /// dtexec's exit code for a run that ended with this status.
    pub fn exit_code(self) -> i32 {
        match self {
            ExecutionStatus::Succeeded | ExecutionStatus::Completed => 0,
            ExecutionStatus::Canceled | ExecutionStatus::Stopping => 3,
            _ => 1,
        }
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One task of a run (one per loop iteration for tasks in loops).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskRecord {
    /// `Stage/Load orders`, `Files[2]/Copy`.
    pub path: String,
    /// The task kind.
    #[serde(deserialize_with = "super::events::static_kind")]
    pub kind: super::events::KindName,
    /// Its result.
    pub result: TaskResult,
    /// When it started; null when it never ran.
    #[serde(serialize_with = "rfc3339_opt")]
    pub started_at: Option<DateTime<Utc>>,
    /// How long it ran; null when it never ran.
    pub duration_ms: Option<u64>,
    /// The agent that ran its child (agent_job tasks).
    pub agent: Option<String>,
    /// What happened.
    pub message: String,
    /// A process task's exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// The status of a child package run by a `package` or `agent_job` task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChildStatus {
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed,
    /// It was canceled.
    Canceled,
    /// It is still running (a fire-and-forget child).
    Running,
    /// Its agent was declared down while it ran.
    Lost,
    /// A later attempt replaced it.
    Superseded,
}

impl ChildStatus {
    /// The lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ChildStatus::Succeeded => "succeeded",
            ChildStatus::Failed => "failed",
            ChildStatus::Canceled => "canceled",
            ChildStatus::Running => "running",
            ChildStatus::Lost => "lost",
            ChildStatus::Superseded => "superseded",
        }
    }
}

/// A child package executed by a task.
#[derive(Debug, Clone, Serialize)]
pub struct ChildRecord {
    /// The path of the task that ran it.
    pub task: String,
    /// The agent it ran on (agent_job); null in process.
    pub agent: Option<String>,
    /// The job (agent_job).
    pub job: Option<String>,
    /// The agent's run id (agent_job).
    pub run_id: Option<String>,
    /// The child package file.
    pub package: Option<String>,
    /// How it ended.
    pub status: ChildStatus,
    /// How long it ran.
    pub duration_ms: Option<u64>,
    /// What the agent itself reported when `status` did not take it: the late outcome of a run
    /// recorded `lost` or `superseded` (DESIGN.md §4 Fencing). Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_status: Option<ChildStatus>,
    /// The child's own tasks, for children run in process.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskRecord>,
    /// Which attempt of its task it was (from 0). Shown by the report's tables and timeline;
    /// not part of DESIGN.md §9's JSON.
    #[serde(skip)]
    pub attempt: u32,
    /// When it was started, when known (the report's timeline). Not part of §9's JSON.
    #[serde(skip)]
    pub started_at: Option<DateTime<Utc>>,
}

/// Everything a finished run produced.
#[derive(Debug, Clone, Serialize)]
pub struct PackageRun {
    /// The execution's id.
    pub execution_id: String,
    /// The package's name.
    pub package: String,
    /// How it ended.
    pub status: ExecutionStatus,
    /// When it started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    /// When it ended.
    #[serde(serialize_with = "rfc3339")]
    pub ended_at: DateTime<Utc>,
    /// Monotonic duration.
    pub duration_ms: u64,
    /// The parameter values used.
    pub parameters: Map,
    /// Every task, in file order, iterations in order.
    pub tasks: Vec<TaskRecord>,
    /// The child packages executed.
    pub children: Vec<ChildRecord>,
    /// The package variables (`vars.<name>`) at the end, which a checkpoint keeps; not part of
    /// the JSON result.
    #[serde(skip)]
    pub variables: Map,
    /// The ordered event log.
    #[serde(skip)]
    pub events: Vec<Event>,
}

/// Serializes a UTC time as RFC 3339 with milliseconds and `Z`.
pub fn rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// As [`rfc3339`], for an optional time (null when absent).
pub fn rfc3339_opt<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => rfc3339(at, s),
        None => s.serialize_none(),
    }
}
