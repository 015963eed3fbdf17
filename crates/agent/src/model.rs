//! The agent's domain records: runs, history rows, outbox events and captured output.
//! Wire types stop at the gRPC handler; the store and the runner speak these.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use switchyard_package::expr::Map;

/// Where a run is, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Accepted, waiting for its turn or a slot.
    Queued,
    /// A step is executing.
    Running,
    /// Waiting before a step's retry.
    BetweenRetries,
    /// Ended: the job outcome was success.
    Succeeded,
    /// Ended: the job outcome was failure.
    Failed,
    /// Ended: stopped.
    Canceled,
}

impl RunStatus {
    /// The name stored in SQLite and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::BetweenRetries => "between_retries",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Canceled => "canceled",
        }
    }

    /// Parses [`RunStatus::as_str`].
    pub fn parse(text: &str) -> Option<RunStatus> {
        Some(match text {
            "queued" => RunStatus::Queued,
            "running" => RunStatus::Running,
            "between_retries" => RunStatus::BetweenRetries,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "canceled" => RunStatus::Canceled,
            _ => return None,
        })
    }

    /// True once the run has ended.
    pub fn is_final(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
    }
}

/// run_status of sysjobhistory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryStatus {
    /// 0.
    Failed,
    /// 1.
    Succeeded,
    /// 2: a step failed and will be retried.
    Retry,
    /// 3.
    Canceled,
    /// 4.
    InProgress,
}

impl HistoryStatus {
    /// The sysjobhistory number.
    pub fn code(self) -> u8 {
        match self {
            HistoryStatus::Failed => 0,
            HistoryStatus::Succeeded => 1,
            HistoryStatus::Retry => 2,
            HistoryStatus::Canceled => 3,
            HistoryStatus::InProgress => 4,
        }
    }

    /// From the sysjobhistory number.
    pub fn from_code(code: u8) -> Option<HistoryStatus> {
        Some(match code {
            0 => HistoryStatus::Failed,
            1 => HistoryStatus::Succeeded,
            2 => HistoryStatus::Retry,
            3 => HistoryStatus::Canceled,
            4 => HistoryStatus::InProgress,
            _ => return None,
        })
    }

    /// The lower-case name shown by `switchyard history`.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryStatus::Failed => "failed",
            HistoryStatus::Succeeded => "succeeded",
            HistoryStatus::Retry => "retry",
            HistoryStatus::Canceled => "canceled",
            HistoryStatus::InProgress => "in_progress",
        }
    }
}

/// One run of a job, as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// A UUID.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// Where it is.
    pub status: RunStatus,
    /// The caller's idempotency key, if any (unique among runs).
    pub idempotency_key: Option<String>,
    /// The fencing epoch it was started with (0: not fenced).
    pub epoch: u64,
    /// Who asked ("User x" in messages).
    pub requested_by: String,
    /// The coordinator execution it belongs to, if any.
    pub execution_id: String,
    /// The coordinator task path, if any.
    pub task_path: String,
    /// The coordinator attempt number.
    pub attempt: u32,
    /// Parameters for the job's child packages, the secret ones shown as `***`.
    pub params: Map,
    /// The clear values of the params the start marked secret: kept only in memory, for the
    /// run's steps (never stored, never in a reply).
    #[serde(skip)]
    pub secrets: Map,
    /// When StartJob accepted it.
    pub accepted_at: DateTime<Utc>,
    /// When its first step started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Monotonic duration from its first step's start to its end.
    pub duration_ms: Option<u64>,
    /// The last thing said about it (the job outcome message at the end).
    pub message: String,
    /// The step executing now (1-based), 0 when none.
    pub current_step: u32,
    /// SHA-256 of the job definition it ran.
    pub job_hash: String,
    /// SHA-256 of each package its steps ran.
    pub package_hashes: Vec<String>,
    /// The outbox sequence of its ACCEPTED event.
    pub accepted_sequence: u64,
    /// Process groups of its steps running now, so a restarted agent can end them.
    pub process_groups: Vec<u32>,
}

/// A row of the job history (sysjobhistory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// Assigned by the store, increasing.
    pub instance_id: u64,
    /// The job.
    pub job: String,
    /// 0 for the job outcome row.
    pub step_id: u32,
    /// "(Job outcome)" for step 0.
    pub step_name: String,
    /// How the step (or job) ended.
    pub run_status: HistoryStatus,
    /// When the step (or job) started.
    pub started_at: DateTime<Utc>,
    /// How long it ran.
    pub duration_ms: u64,
    /// What happened, whole.
    pub message: String,
    /// The run it belongs to.
    pub run_id: String,
    /// Retries attempted before this row.
    pub retries_attempted: u32,
}

/// The kinds of outbox event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// StartJob accepted and recorded the run.
    Accepted,
    /// The first step started.
    Started,
    /// A step started.
    StepStarted,
    /// A step ended (its retries spent, or it succeeded).
    StepFinished,
    /// A step failed and will be retried.
    StepRetrying,
    /// The job outcome.
    Finished,
}

/// An outbox event; `sequence` is assigned by the store when it is committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// Position in the outbox within this incarnation (0 until committed).
    pub sequence: u64,
    /// The run.
    pub run_id: String,
    /// The job.
    pub job: String,
    /// The run's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// The run's status after it.
    pub status: RunStatus,
    /// Details.
    pub message: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The step (1-based), 0 for run-level events.
    pub step_id: u32,
    /// The step's name.
    pub step_name: String,
    /// A command step's exit code.
    pub exit_code: Option<i32>,
    /// How long the step or run took.
    pub duration_ms: u64,
    /// The coordinator execution, if any.
    pub execution_id: String,
    /// The coordinator task path, if any.
    pub task_path: String,
    /// The coordinator attempt.
    pub attempt: u32,
}

/// What one step attempt printed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutputRecord {
    /// The run.
    pub run_id: String,
    /// The step (1-based).
    pub step_id: u32,
    /// Its name.
    pub step_name: String,
    /// 0 for the first attempt, then 1, 2, … for retries.
    pub attempt: u32,
    /// Captured stdout (bounded).
    pub stdout: String,
    /// Captured stderr (bounded).
    pub stderr: String,
    /// True when either stream was cut at the bound.
    pub truncated: bool,
}

impl OutboxEvent {
    /// An event about a run (its sequence is assigned by the store).
    pub(crate) fn about(record: &RunRecord, kind: EventKind, message: String) -> OutboxEvent {
        OutboxEvent {
            sequence: 0,
            run_id: record.run_id.clone(),
            job: record.job.clone(),
            idempotency_key: record.idempotency_key.clone(),
            kind,
            status: record.status,
            message,
            at: Utc::now(),
            step_id: 0,
            step_name: String::new(),
            exit_code: None,
            duration_ms: 0,
            execution_id: record.execution_id.clone(),
            task_path: record.task_path.clone(),
            attempt: record.attempt,
        }
    }

    /// A run's STARTED event.
    pub(crate) fn started(record: &RunRecord) -> OutboxEvent {
        OutboxEvent::about(record, EventKind::Started, format!("job \"{}\" started", record.job))
    }
}
