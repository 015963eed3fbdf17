//! The engine: runs a package's control flow with SSIS semantics (precedence constraints,
//! error counting, concurrency limits, timeouts, cancellation) and records what happened.

mod budget;
mod checkpoint;
mod database;
mod events;
mod forced;
mod graph;
mod kinds;
mod loops;
mod params;
mod precedence;
mod report;
mod resume;
mod scope;
mod secrets;
mod sql;
mod task;
mod transaction;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use switchyard_settings::Limits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use checkpoint::{
    Checkpoint, CheckpointError, KeptTask, Restart, Settled, checkpoint_file, plan_restart, settle, version_hash,
};
pub use database::{Databases, DbFuture, Session};
pub use events::{Event, EventKind, EventLog, EventObserver};
pub use params::{ParameterError, bind_parameters, secret_env_var};
pub use report::{ChildRecord, ChildStatus, ExecutionStatus, PackageRun, TaskRecord, rfc3339, rfc3339_opt};
pub use resume::Resume;
pub use secrets::{MASK, Masker, masked_parameters, missing_secrets, secret_values, value_text};

use crate::expr::Map;
use crate::model::{AgentJobTask, Package, TaskResult};
use graph::run_graph;
use scope::Frame;
use transaction::{Enclosing, Membership};

/// How to run a package.
#[derive(Clone)]
pub struct RunOptions {
    /// The execution's id (a new UUID by default).
    pub execution_id: String,
    /// Parameter values, already bound with [`bind_parameters`]; missing ones take defaults.
    pub parameters: Map,
    /// Overrides the package's max_concurrent (`--max-concurrent`).
    pub max_concurrent: Option<i64>,
    /// Fires to cancel the run: no new task starts, running processes are ended.
    pub cancel: CancellationToken,
    /// Sees every event as it is recorded.
    pub observer: Option<EventObserver>,
    /// Starts `agent_job` tasks' jobs; without it they fail saying how to configure agents.
    pub agent_jobs: Option<Arc<dyn AgentJobLauncher>>,
    /// Bytes of stdout and of stderr kept per process task (never more than `limits.output`).
    pub output_limit: usize,
    /// Time between TERM and KILL when a process tree is ended.
    pub kill_grace: Duration,
    /// Told about every process group a process task starts and ends (an agent records them
    /// so that, restarted after a crash, it can end what its runs left behind).
    pub process_observer: Option<ProcessObserver>,
    /// Told what each process task printed, stdout and stderr whole (up to `output_limit`) and
    /// secrets masked (an agent keeps it as its package step's output for `switchyard logs`).
    pub output_observer: Option<OutputObserver>,
    /// What an earlier run of this execution had finished: its ended tasks are replayed and its
    /// events continue after the earlier ones (a coordinator resuming after a restart).
    pub resume: Option<Arc<Resume>>,
    /// Bounds of `[limits]`: child packages loaded at run time, and the work and wall-clock
    /// budget of each expression evaluation.
    pub limits: Limits,
    /// Set by servers (the coordinator: the execution's folder; an agent: packages_dir): child
    /// packages must resolve inside it (see [`crate::load::LoadOptions::root`]).
    pub package_root: Option<PathBuf>,
    /// Values to show as `***` beyond the package's own secret parameters (an agent running a
    /// job whose parameters the coordinator marked secret).
    pub secrets: Vec<String>,
    /// Opens database sessions for `sql` tasks; without it they fail saying so.
    pub databases: Option<Arc<dyn Databases>>,
}

/// What a [`ProcessObserver`] is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessEvent {
    /// A process started, leading this new process group.
    Started(u32),
    /// The process leading this group ended (and its group was ended if it was canceled).
    Ended(u32),
}

/// Sees the process groups that process tasks start and end.
pub type ProcessObserver = Arc<dyn Fn(ProcessEvent) + Send + Sync>;

/// What one process task printed, as an [`OutputObserver`] is told once it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessOutput {
    /// The task's path from the top package (`Stage/Load`, `Child/Copy` inside a child package).
    pub path: String,
    /// Its stdout, secrets masked.
    pub stdout: String,
    /// Its stderr, secrets masked.
    pub stderr: String,
    /// Whether either stream was cut at the output limit.
    pub truncated: bool,
}

/// Sees what process tasks printed.
pub type OutputObserver = Arc<dyn Fn(ProcessOutput) + Send + Sync>;

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            execution_id: uuid::Uuid::new_v4().to_string(),
            parameters: Map::new(),
            max_concurrent: None,
            cancel: CancellationToken::new(),
            observer: None,
            agent_jobs: None,
            output_limit: 1 << 20,
            kill_grace: Duration::from_secs(5),
            process_observer: None,
            output_observer: None,
            resume: None,
            limits: Limits::default(),
            package_root: None,
            secrets: Vec::new(),
            databases: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("execution_id", &self.execution_id)
            // Names only: values may be secret.
            .field("parameters", &self.parameters.keys().collect::<Vec<_>>())
            .field("max_concurrent", &self.max_concurrent)
            .finish_non_exhaustive()
    }
}

/// A request to start an `agent_job` task's job, handed to the [`AgentJobLauncher`].
pub struct AgentJobRequest {
    /// The execution the task belongs to.
    pub execution_id: String,
    /// The task path with loop iterations (`Files[2]/Load`): part of the idempotency key.
    pub task_path: String,
    /// The task as written.
    pub task: AgentJobTask,
    /// Parameters for the job, templates evaluated (secret values in clear: the job needs them).
    pub params: Map,
    /// The names of `params` whose values hold a secret: whoever records the job shows them
    /// as `***`.
    pub secret_params: Vec<String>,
    /// The package slot the task holds: drop it once the start is accepted, so a task that
    /// waits for its child holds the agent's slot, not the package's.
    pub package_slot: Option<OwnedSemaphorePermit>,
    /// Fires when the task is canceled or times out.
    pub cancel: CancellationToken,
}

/// How an `agent_job` task ended.
#[derive(Debug, Clone)]
pub struct AgentJobOutcome {
    /// Success, failure or canceled.
    pub result: TaskResult,
    /// What happened, e.g. `Job 'load' started successfully.`.
    pub message: String,
    /// The agent that accepted the start.
    pub agent: Option<String>,
    /// The child runs of every attempt (failed, lost or superseded ones too), for the report.
    pub children: Vec<ChildRecord>,
}

/// Starts jobs on agents for `agent_job` tasks (implemented by the coordinator).
pub trait AgentJobLauncher: Send + Sync {
    /// Starts the job and resolves when the task is done (at acceptance, or with the child's
    /// outcome when the task waits).
    fn launch(&self, request: AgentJobRequest) -> Pin<Box<dyn Future<Output = AgentJobOutcome> + Send + 'static>>;
}

/// What every task of one package run shares.
pub(crate) struct RunShared {
    pub execution_id: String,
    pub package: Arc<Package>,
    pub params: Arc<Map>,
    pub slots: Arc<Semaphore>,
    pub events: Arc<EventLog>,
    pub agent_jobs: Option<Arc<dyn AgentJobLauncher>>,
    pub output_limit: usize,
    pub kill_grace: Duration,
    /// Set when a task with fail_package_on_failure fails.
    pub fail_package: AtomicBool,
    /// Prefix of every event path: empty for the top package, `Task path/` for a child.
    pub event_prefix: String,
    pub process_observer: Option<ProcessObserver>,
    pub output_observer: Option<OutputObserver>,
    /// Ended tasks of an earlier run, replayed (the top package only: a child package that had
    /// not ended runs again whole).
    pub resume: Option<Arc<Resume>>,
    pub limits: Limits,
    pub package_root: Option<PathBuf>,
    pub databases: Option<Arc<dyn Databases>>,
    /// Sessions used outside transactions, shared with child packages.
    pub pool: Arc<transaction::SessionPool>,
}

/// Runs a package to its end and returns what happened. Never panics on task failures: every
/// problem becomes a task result with a message.
pub async fn run_package(package: Arc<Package>, options: RunOptions) -> PackageRun {
    let after = options.resume.as_ref().map_or(0, |r| r.last_sequence);
    let events = Arc::new(EventLog::continuing(options.observer.clone(), after));
    let mut run = run_with_log(package, &options, events.clone(), String::new(), Enclosing::default()).await;
    run.events = events.take();
    run
}

/// Runs a package whose events go to `events` with paths under `event_prefix`.
pub(crate) async fn run_with_log(
    package: Arc<Package>,
    options: &RunOptions,
    events: Arc<EventLog>,
    event_prefix: String,
    enclosing: Enclosing,
) -> PackageRun {
    let mut parameters = package.parameters.clone();
    for (k, v) in &options.parameters {
        parameters.insert(k.clone(), v.clone());
    }
    events.add_secrets(secret_values(&package, &parameters).into_iter().chain(options.secrets.iter().cloned()));
    let slots = package.effective_max_concurrent(options.max_concurrent);
    let shared = Arc::new(RunShared {
        execution_id: options.execution_id.clone(),
        package: package.clone(),
        params: Arc::new(parameters.clone()),
        slots: Arc::new(Semaphore::new(slots)),
        events,
        agent_jobs: options.agent_jobs.clone(),
        output_limit: options.output_limit.min(options.limits.output),
        kill_grace: options.kill_grace,
        fail_package: AtomicBool::new(false),
        event_prefix,
        process_observer: options.process_observer.clone(),
        output_observer: options.output_observer.clone(),
        resume: options.resume.clone(),
        limits: options.limits.clone(),
        package_root: options.package_root.clone(),
        databases: options.databases.clone(),
        pool: enclosing.pool.clone(),
    });
    let started_at = Utc::now();
    let clock = Instant::now();
    let package_path = shared.event_prefix.trim_end_matches('/').to_string();
    match &shared.resume {
        Some(resume) if resume.checkpoint_of.is_none() => {
            shared.events.emit(&package_path, EventKind::Resumed { replayed: resume.replayed() })
        }
        _ => shared.events.emit(&package_path, EventKind::PackageStarted { package: package.name.clone() }),
    }
    // The package variables: restored from a checkpoint, else none yet; `sql` tasks' `result`
    // sets them, and the run ends with them (a checkpoint keeps them).
    let variables = shared.resume.as_ref().map(|r| r.variables.clone()).unwrap_or_default();
    tracing::debug!(execution = %shared.execution_id, package = %package.name, slots, "package started");

    let joined = transaction::enter(package.transaction, package.isolation, enclosing.transaction.as_ref(), || {
        format!("package \"{}\"", package.name)
    });
    let frame = Frame::root_with_variables(variables).with_transaction(joined.transaction());
    let outcome = run_graph(&shared, &package.tasks, frame.clone(), "", &options.cancel).await;

    let mut status = if options.cancel.is_cancelled() {
        ExecutionStatus::Canceled
    } else if shared.fail_package.load(Ordering::SeqCst)
        || outcome.fail_parent
        || (package.max_errors > 0 && outcome.errors >= package.max_errors)
    {
        ExecutionStatus::Failed
    } else {
        ExecutionStatus::Succeeded
    };
    if let Membership::Started(started) = &joined {
        let succeeded = status == ExecutionStatus::Succeeded;
        if transaction::settle(&shared, started, &package_path, succeeded).await.is_err() {
            status = ExecutionStatus::Failed;
        }
    }
    let duration_ms = clock.elapsed().as_millis() as u64;
    shared.events.emit(&package_path, EventKind::PackageFinished { status, duration_ms });
    tracing::debug!(execution = %shared.execution_id, %status, duration_ms, errors = outcome.errors, "package finished");
    PackageRun {
        execution_id: options.execution_id.clone(),
        package: package.name.clone(),
        status,
        started_at,
        ended_at: Utc::now(),
        duration_ms,
        parameters: masked_parameters(&package, &parameters, &shared.events.masker()),
        tasks: outcome.records,
        children: outcome.children,
        variables: frame.variables(),
        events: Vec::new(),
    }
}
