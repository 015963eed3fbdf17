//! Executions: every execution of this coordinator, its live handles (cancel, event feed,
//! running children) and its report. Submission and the run are in `submission`, child runs
//! and outcomes in `children`, what a restart finds in `restart`. Events and results are stored
//! behind the run (never read back while it runs) and streamed to watchers.

mod activity;
mod checkpoints;
mod children;
mod restart;
mod retention;
mod submission;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use switchyard_package::engine::ExecutionStatus;
use switchyard_package::model::OnParentEnd;

use crate::error::Error;
use crate::registry::Registry;
use crate::report::Report;
use crate::store::{ExecutionRecord, Store, StoredEvent, Write};

pub use retention::{PRUNE_EVERY, PRUNE_GAP, Pruned, Retention};

/// What StartExecution asks for, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct StartExecution {
    /// Makes a retried submission one execution.
    pub request_id: Option<String>,
    /// The parent's path among `files`.
    pub package: String,
    /// (relative path, content) of the parent and its children.
    pub files: Vec<(String, String)>,
    /// `--set` overrides as name=value.
    pub parameters: Vec<String>,
    /// Who asked.
    pub caller: String,
    /// Overrides max_concurrent.
    pub max_concurrent: Option<i64>,
    /// Overrides the package's checkpoint usage (`run --restart`); empty for its own.
    pub restart: String,
}

/// A started (or, for a repeated request id, found) execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// Its id.
    pub execution_id: String,
    /// True when the request id was seen before and this is that execution.
    pub existing: bool,
    /// Where it started, when its package has a checkpoint: "restarting from ..." or why it runs
    /// from the start; empty otherwise.
    pub checkpoint: String,
}

impl StartExecution {
    /// Checks every string of the request against `[limits]`: `value` for parameter values,
    /// `field` for the others, `parameters` for their count; the refusal names the field.
    pub fn check(&self, limits: &switchyard_settings::Limits) -> Result<(), String> {
        limits.check_field("request_id", self.request_id.as_deref().unwrap_or(""))?;
        limits.check_field("package", &self.package)?;
        limits.check_field("restart", &self.restart)?;
        limits.check_field("caller (requested_by)", &self.caller)?;
        for (path, _) in &self.files {
            limits.check_field("files.path", path)?;
        }
        limits.check_parameter_count(self.parameters.len())?;
        for parameter in &self.parameters {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            limits.check_field("a parameter name", name)?;
            limits.check_value(name, value.len())?;
        }
        Ok(())
    }
}

/// A running execution's live handles.
struct Live {
    cancel: CancellationToken,
    /// What it is doing now: created, running, pending or stopping.
    activity: Arc<activity::Activity>,
    events: broadcast::Sender<StoredEvent>,
    /// Becomes true once the execution's result is stored.
    finished: tokio::sync::watch::Receiver<bool>,
}

/// A child run started by an agent_job task, kept to cascade cancels.
#[derive(Debug, Clone)]
struct RunningChild {
    agent: String,
    run_id: String,
    on_parent_end: OnParentEnd,
}

/// Every execution of this coordinator.
#[derive(Clone)]
pub struct Executions {
    inner: Arc<Inner>,
}

struct Inner {
    /// Bounds on requests and packages (`[limits]`).
    limits: switchyard_settings::Limits,
    store: Store,
    registry: Registry,
    data_dir: PathBuf,
    /// Database sessions for `sql` tasks; the two-phase journal lives in data_dir.
    databases: Arc<switchyard_sql::Drivers>,
    live: Mutex<HashMap<String, Live>>,
    requests: tokio::sync::Mutex<()>,
    /// Running children by execution, then by run id.
    children: Mutex<HashMap<String, HashMap<String, RunningChild>>>,
    /// Child records, written in the order the launcher reports them.
    child_writes: mpsc::UnboundedSender<Write>,
    /// What retention keeps; set by [`Executions::keep_pruned`].
    retention: Mutex<Retention>,
    /// One prune at a time.
    pruning: tokio::sync::Mutex<()>,
    /// Told when an execution's result is stored, so retention looks again.
    finished: tokio::sync::Notify,
}

impl Executions {
    /// Executions stored in `store`, placing agent jobs through `registry`.
    pub fn new(store: Store, registry: Registry, data_dir: PathBuf, limits: switchyard_settings::Limits) -> Self {
        let registry_outcomes = registry.outcomes();
        let registry_stops = registry.stopped();
        let (child_writes, queued) = mpsc::unbounded_channel();
        tokio::spawn(children::write_in_order(store.clone(), queued));
        // Fencing facts join the child records' queue, so they are written in the order they
        // happened, in the batch of the child record that goes with them.
        registry.log_fences_to(children::fence_log(child_writes.clone()));
        let executions = Self {
            inner: Arc::new(Inner {
                store,
                registry,
                databases: Arc::new(switchyard_sql::Drivers::new(&data_dir)),
                data_dir,
                limits,
                live: Mutex::new(HashMap::new()),
                requests: tokio::sync::Mutex::new(()),
                children: Mutex::new(HashMap::new()),
                child_writes,
                retention: Mutex::new(Retention::default()),
                pruning: tokio::sync::Mutex::new(()),
                finished: tokio::sync::Notify::new(),
            }),
        };
        // Subscribe now, before any agent's stream can deliver an outcome.
        tokio::spawn(executions.clone().record_outcomes(registry_outcomes));
        tokio::spawn(executions.clone().record_stops(registry_stops));
        executions
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Cancels an execution: no new task starts, running processes end, and running children
    /// on agents are stopped (unless their task says on_parent_end = "abandon").
    pub async fn cancel(&self, execution_id: &str) -> Result<ExecutionStatus, Error> {
        let live = self
            .inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(execution_id)
            .map(|l| (l.cancel.clone(), l.activity.clone()));
        match live {
            Some((cancel, activity)) => {
                activity.stop();
                cancel.cancel();
                self.cascade_cancel(execution_id).await;
                Ok(ExecutionStatus::Stopping)
            }
            None => {
                let record = self
                    .inner
                    .store
                    .execution(execution_id)
                    .await?
                    .ok_or_else(|| Error::UnknownExecution(execution_id.to_string()))?;
                Err(Error::FailedPrecondition(format!(
                    "execution \"{execution_id}\" already ended ({})",
                    record.status
                )))
            }
        }
    }

    /// Resolves once the execution's result is stored (at once for one that is not running).
    pub async fn wait_finished(&self, execution_id: &str) {
        let finished =
            self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).get(execution_id).map(|l| l.finished.clone());
        if let Some(mut finished) = finished {
            let _ = finished.wait_for(|done| *done).await;
        }
    }

    /// The live event feed of a running execution, if it runs.
    pub fn subscribe(&self, execution_id: &str) -> Option<broadcast::Receiver<StoredEvent>> {
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).get(execution_id).map(|l| l.events.subscribe())
    }

    /// An execution's record, with the status of what it is doing now while it runs.
    pub async fn execution(&self, execution_id: &str) -> Result<ExecutionRecord, Error> {
        let record = self.inner.store.execution(execution_id).await?;
        let mut record = record.ok_or_else(|| Error::UnknownExecution(execution_id.to_string()))?;
        self.overlay(&mut record);
        Ok(record)
    }

    /// The latest `limit` executions, as [`Executions::execution`] shows each.
    pub async fn executions(&self, limit: usize) -> Result<Vec<ExecutionRecord>, Error> {
        let mut records = self.inner.store.executions(limit).await?;
        records.iter_mut().for_each(|r| self.overlay(r));
        Ok(records)
    }

    /// Shows a running execution's live activity (created, pending, stopping) over the stored
    /// `running`; an ended execution keeps its stored status.
    fn overlay(&self, record: &mut ExecutionRecord) {
        if !matches!(record.status, ExecutionStatus::Running | ExecutionStatus::Created) {
            return;
        }
        let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(live) = live.get(&record.execution_id) {
            record.status = live.activity.status();
        }
    }

    /// The Overview report of an execution (while it runs: what its stored events and children
    /// say so far), children in task order.
    pub async fn report(&self, execution_id: &str) -> Result<Report, Error> {
        let store = &self.inner.store;
        let execution = self.execution(execution_id).await?;
        let mut tasks = store.tasks(execution_id).await?;
        // Task rows are stored when the execution ends; until then its events tell.
        if tasks.is_empty() && execution.ended_at.is_none() {
            let events: Vec<_> =
                store.events_after(execution_id, 0, 0).await?.into_iter().map(|stored| stored.event).collect();
            tasks = crate::replay::live_task_records(&events);
        }
        let children = store.child_records(execution_id).await?;
        let mut report = Report { execution, tasks, children };
        report.order_children();
        Ok(report)
    }
}
