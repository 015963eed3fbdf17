//! Executions: a package sent with its children is written under the data dir, validated, and
//! run by the engine with agent jobs placed through the registry. Events and results are
//! stored behind the run (never read back while it runs) and streamed to watchers.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use switchyard_package::engine::{ChildStatus, Event, ExecutionStatus, RunOptions, bind_parameters, run_package};
use switchyard_package::model::OnParentEnd;
use switchyard_package::{LoadError, load_package};

use crate::error::Error;
use crate::launcher::{AgentJobs, ChildSink, ChildUpdate};
use crate::registry::{Registry, StopReason};
use crate::report::Report;
use crate::store::{ChildRunRecord, ExecutionRecord, Store, StoredEvent, Write};

/// Child outcomes recorded in one store request at most.
const OUTCOME_BATCH: usize = 256;

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
}

/// A running execution's live handles.
struct Live {
    cancel: CancellationToken,
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
    store: Store,
    registry: Registry,
    data_dir: PathBuf,
    live: Mutex<HashMap<String, Live>>,
    requests: tokio::sync::Mutex<()>,
    /// Running children by execution, then by run id.
    children: Mutex<HashMap<String, HashMap<String, RunningChild>>>,
    /// Child records, written in the order the launcher reports them.
    child_writes: mpsc::UnboundedSender<Write>,
}

impl Executions {
    /// Executions stored in `store`, placing agent jobs through `registry`.
    pub fn new(store: Store, registry: Registry, data_dir: PathBuf) -> Self {
        let registry_outcomes = registry.outcomes();
        let registry_stops = registry.stopped();
        let (child_writes, queued) = mpsc::unbounded_channel();
        tokio::spawn(write_in_order(store.clone(), queued));
        let executions = Self {
            inner: Arc::new(Inner {
                store,
                registry,
                data_dir,
                live: Mutex::new(HashMap::new()),
                requests: tokio::sync::Mutex::new(()),
                children: Mutex::new(HashMap::new()),
                child_writes,
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

    /// Marks executions a previous process left running as ended_unexpectedly.
    pub async fn close_interrupted(&self) -> Result<usize, Error> {
        let open =
            self.inner.store.executions_with_status(&[ExecutionStatus::Running, ExecutionStatus::Created]).await?;
        for mut execution in open.iter().cloned() {
            let ended = Utc::now();
            execution.status = ExecutionStatus::EndedUnexpectedly;
            execution.ended_at = Some(ended);
            execution.duration_ms = Some((ended - execution.started_at).num_milliseconds().max(0) as u64);
            // Task results are written when an execution ends; rebuild them from its events.
            let events: Vec<_> = self
                .inner
                .store
                .events_after(&execution.execution_id, 0, 0)
                .await?
                .into_iter()
                .map(|stored| stored.event)
                .collect();
            let file =
                self.inner.data_dir.join("executions").join(&execution.execution_id).join(&execution.package_file);
            let package = load_package(&file).ok().map(|loaded| loaded.package);
            let mut tasks = crate::replay::task_records(&events, package.as_deref());
            self.stop_orphans(&execution.execution_id, package.as_deref()).await?;
            // Events do not name agents; the children recorded for each task do.
            let children = self.inner.store.children(&execution.execution_id).await?;
            for task in &mut tasks {
                task.agent = children
                    .iter()
                    .rev()
                    .find(|c| c.task_path == task.path && !c.agent.is_empty())
                    .map(|c| c.agent.clone());
            }
            self.inner
                .store
                .write(vec![
                    Write::PutTasks { execution_id: execution.execution_id.clone(), tasks },
                    Write::UpdateExecution(execution),
                ])
                .await?;
        }
        Ok(open.len())
    }

    /// Children still running for an execution that ended unexpectedly are stopped when their
    /// task says on_parent_end = "cancel" (the default), as soon as their agent answers.
    async fn stop_orphans(
        &self,
        execution_id: &str,
        package: Option<&switchyard_package::Package>,
    ) -> Result<(), Error> {
        for child in self.inner.store.children(execution_id).await? {
            if child.status != ChildStatus::Running || child.agent.is_empty() {
                continue;
            }
            let on_parent_end = package
                .and_then(|p| crate::replay::find_task(p, &child.task_path))
                .and_then(|t| match &t.kind {
                    switchyard_package::TaskKind::AgentJob(job) => Some(job.on_parent_end),
                    _ => None,
                })
                .unwrap_or(OnParentEnd::Cancel);
            if on_parent_end == OnParentEnd::Cancel {
                tracing::info!(agent = %child.agent, run = %child.run_id, "stopping a child of an execution that ended unexpectedly");
                self.inner.registry.stop_when_back(&child.agent, &child.run_id, StopReason::Canceled);
            }
        }
        Ok(())
    }

    /// Starts an execution; a repeated request id answers with the one it started.
    pub async fn start(&self, request: StartExecution) -> Result<(String, bool), Error> {
        // One start at a time per coordinator keeps request-id checks and inserts atomic.
        let _one = self.inner.requests.lock().await;
        if let Some(id) = request.request_id.as_deref().filter(|r| !r.is_empty())
            && let Some(existing) = self.inner.store.execution_by_request(id).await?
        {
            return Ok((existing.execution_id, true));
        }
        let execution_id = uuid::Uuid::new_v4().to_string();
        let dir = self.inner.data_dir.join("executions").join(&execution_id);
        let package_path = write_files(&dir, &request.package, &request.files)?;
        let package = match load_package(&package_path) {
            Ok(loaded) => loaded.package,
            Err(LoadError::Invalid(d)) => return Err(Error::InvalidArgument(format!("the package is invalid:\n{d}"))),
            Err(e) => return Err(Error::InvalidArgument(format!("package: {e}"))),
        };
        let parameters = bind_parameters(&package, &request.parameters)
            .map_err(|e| Error::InvalidArgument(format!("parameters: {e}")))?;
        let mut all_parameters = package.parameters.clone();
        for (k, v) in &parameters {
            all_parameters.insert(k.clone(), v.clone());
        }
        let record = ExecutionRecord {
            execution_id: execution_id.clone(),
            request_id: request.request_id.clone().filter(|r| !r.is_empty()),
            package: package.name.clone(),
            package_file: request.package.clone(),
            status: ExecutionStatus::Running,
            caller: request.caller.clone(),
            parameters: all_parameters,
            started_at: Utc::now(),
            ended_at: None,
            duration_ms: None,
        };
        self.inner.store.write(vec![Write::InsertExecution(record.clone())]).await?;
        let cancel = CancellationToken::new();
        let (events, _) = broadcast::channel(4096);
        let (finished_tx, finished) = tokio::sync::watch::channel(false);
        self.inner
            .live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(execution_id.clone(), Live { cancel: cancel.clone(), events: events.clone(), finished });
        tracing::info!(execution = %execution_id, package = %package.name, "execution started");
        let this = self.clone();
        let options = RunOptions {
            execution_id: execution_id.clone(),
            parameters,
            max_concurrent: request.max_concurrent,
            cancel,
            ..RunOptions::default()
        };
        tokio::spawn(async move {
            this.run(record, package, options, events).await;
            let _ = finished_tx.send(true);
        });
        Ok((execution_id, false))
    }

    async fn run(
        self,
        mut record: ExecutionRecord,
        package: Arc<switchyard_package::Package>,
        mut options: RunOptions,
        events: broadcast::Sender<StoredEvent>,
    ) {
        let id = record.execution_id.clone();
        let (event_tx, event_rx) = mpsc::unbounded_channel::<Event>();
        let writer = tokio::spawn(store_events(self.inner.store.clone(), id.clone(), event_rx, events));
        options.observer = Some(Arc::new(move |event: &Event| {
            let _ = event_tx.send(event.clone());
        }));
        let sink: ChildSink = {
            let this = self.clone();
            Arc::new(move |update: ChildUpdate| this.child_changed(update))
        };
        let jobs = AgentJobs::new(self.inner.registry.clone(), record.caller.clone(), Some(sink));
        options.agent_jobs = Some(Arc::new(jobs));
        let run = run_package(package, options).await;
        let _ = writer.await;
        record.status = run.status;
        record.ended_at = Some(run.ended_at);
        record.duration_ms = Some(run.duration_ms);
        // Children run in process (package tasks) are known only from the run's result.
        let in_process: Vec<Write> = run
            .children
            .iter()
            .filter(|c| c.agent.is_none())
            .map(|c| {
                Write::UpsertChild(ChildRunRecord {
                    execution_id: id.clone(),
                    task_path: c.task.clone(),
                    attempt: 0,
                    agent: String::new(),
                    job: String::new(),
                    run_id: format!("{}#{}", id, c.task),
                    idempotency_key: String::new(),
                    status: c.status,
                    started_at: run.started_at,
                    duration_ms: c.duration_ms,
                    message: String::new(),
                    package: c.package.clone(),
                })
            })
            .collect();
        let mut batch = vec![Write::PutTasks { execution_id: id.clone(), tasks: run.tasks }];
        batch.extend(in_process);
        batch.push(Write::UpdateExecution(record.clone()));
        if let Err(e) = self.inner.store.write(batch).await {
            tracing::error!(execution = %id, error = %e, "cannot store the execution's result");
        }
        if record.status == ExecutionStatus::Canceled {
            self.cascade_cancel(&id).await;
        }
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        self.forget_children_if_done(&id);
        tracing::info!(execution = %id, status = %record.status, "execution finished");
    }

    fn child_changed(&self, update: ChildUpdate) {
        let agent = update.child.agent.clone().unwrap_or_default();
        let run_id = update.child.run_id.clone().unwrap_or_default();
        {
            let mut children = self.inner.children.lock().unwrap_or_else(|p| p.into_inner());
            let list = children.entry(update.execution_id.clone()).or_default();
            if update.child.status == ChildStatus::Running {
                let child =
                    RunningChild { agent: agent.clone(), run_id: run_id.clone(), on_parent_end: update.on_parent_end };
                list.insert(run_id.clone(), child);
            } else {
                list.remove(&run_id);
            }
        }
        let record = ChildRunRecord {
            execution_id: update.execution_id,
            task_path: update.task_path,
            attempt: update.attempt,
            agent,
            job: update.child.job.unwrap_or_default(),
            run_id,
            idempotency_key: update.idempotency_key,
            status: update.child.status,
            started_at: Utc::now(),
            duration_ms: update.child.duration_ms,
            message: String::new(),
            package: update.child.package,
        };
        let _ = self.inner.child_writes.send(Write::UpsertChild(record));
    }

    /// Records the outcome of every child run the agents report (fire-and-forget children too).
    /// Outcomes that arrive together are written in one batch, in the order they came.
    async fn record_outcomes(self, mut outcomes: broadcast::Receiver<crate::registry::RunOutcome>) {
        loop {
            let first = match outcomes.recv().await {
                Ok(o) => o,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "outcome feed lagged");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let mut batch = Vec::new();
            self.outcome_writes(first, &mut batch);
            while batch.len() < OUTCOME_BATCH {
                match outcomes.try_recv() {
                    Ok(outcome) => self.outcome_writes(outcome, &mut batch),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "outcome feed lagged");
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = self.inner.store.write(batch).await {
                tracing::warn!(error = %e, "cannot record child outcomes");
            }
        }
    }

    /// The writes recording one outcome: the child's record and the agent's stream cursor.
    fn outcome_writes(&self, outcome: crate::registry::RunOutcome, batch: &mut Vec<Write>) {
        // The cursor is stored with the outcome it covers: a restarted coordinator resumes the
        // agent's stream after it and loses no outcome.
        let cursor = Write::SetAgentCursor {
            agent: outcome.agent.clone(),
            incarnation: outcome.incarnation.clone(),
            sequence: outcome.sequence,
        };
        if outcome.execution_id.is_empty() {
            batch.push(cursor);
            return;
        }
        let status = outcome.child_status();
        if let Some(list) = self.inner.children.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&outcome.execution_id)
        {
            list.remove(&outcome.run_id);
        }
        self.forget_children_if_done(&outcome.execution_id);
        // A full record: the outcome may arrive before the start was recorded.
        batch.push(Write::UpsertChild(ChildRunRecord {
            execution_id: outcome.execution_id,
            task_path: outcome.task_path,
            attempt: outcome.attempt,
            agent: outcome.agent,
            job: outcome.job,
            run_id: outcome.run_id,
            idempotency_key: outcome.idempotency_key,
            status,
            started_at: Utc::now(),
            duration_ms: Some(outcome.duration_ms),
            message: outcome.message,
            package: None,
        }));
        batch.push(cursor);
    }

    /// Records runs that reconciliation stopped on agents that came back: superseded attempts
    /// (which never change their task's state) and cancels delivered late.
    async fn record_stops(self, mut stopped: broadcast::Receiver<crate::registry::Stopped>) {
        loop {
            let stop = match stopped.recv().await {
                Ok(s) => s,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let (status, message) = match stop.reason {
                StopReason::Superseded => {
                    (ChildStatus::Superseded, "superseded by a later attempt; stopped when its agent came back")
                }
                StopReason::Canceled => (ChildStatus::Canceled, "canceled with its execution when its agent came back"),
            };
            let write = match stop.run {
                // A run the coordinator never had as a child (its start was given up): recorded whole.
                Some(run) => Write::UpsertChild(ChildRunRecord {
                    execution_id: run.execution_id,
                    task_path: run.task_path,
                    attempt: run.attempt,
                    agent: stop.agent.clone(),
                    job: run.job,
                    run_id: stop.run_id.clone(),
                    idempotency_key: run.idempotency_key,
                    status,
                    started_at: Utc::now(),
                    duration_ms: None,
                    message: message.to_string(),
                    package: None,
                }),
                None => Write::UpdateChildStatus {
                    agent: stop.agent.clone(),
                    run_id: stop.run_id.clone(),
                    status,
                    duration_ms: None,
                    message: message.to_string(),
                },
            };
            if let Err(e) = self.inner.store.write(vec![write]).await {
                tracing::warn!(error = %e, "cannot record a stopped child run");
            }
        }
    }

    /// Drops the running-children list of an execution that has ended and has none left.
    fn forget_children_if_done(&self, execution_id: &str) {
        let running = self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).contains_key(execution_id);
        let mut children = self.inner.children.lock().unwrap_or_else(|p| p.into_inner());
        if !running && children.get(execution_id).is_some_and(HashMap::is_empty) {
            children.remove(execution_id);
        }
    }

    /// Cancels an execution: no new task starts, running processes end, and running children
    /// on agents are stopped (unless their task says on_parent_end = "abandon").
    pub async fn cancel(&self, execution_id: &str) -> Result<ExecutionStatus, Error> {
        let live =
            self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).get(execution_id).map(|l| l.cancel.clone());
        match live {
            Some(cancel) => {
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

    async fn cascade_cancel(&self, execution_id: &str) {
        let running: Vec<RunningChild> = self
            .inner
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(execution_id)
            .map(|list| list.values().cloned().collect())
            .unwrap_or_default();
        for child in running.into_iter().filter(|c| c.on_parent_end == OnParentEnd::Cancel) {
            let stop = self.inner.registry.stop_run(
                &child.agent,
                &child.run_id,
                "switchyard coordinator (execution canceled)",
            );
            match stop.await {
                Ok(_) => tracing::info!(agent = %child.agent, run = %child.run_id, "child run stopped"),
                Err(e) if matches!(e.code(), tonic::Code::FailedPrecondition | tonic::Code::NotFound) => {}
                Err(e) => {
                    tracing::warn!(agent = %child.agent, run = %child.run_id, error = %e.message(), "cannot stop a child run now; will again when its agent is back");
                    self.inner.registry.stop_when_back(&child.agent, &child.run_id, StopReason::Canceled);
                }
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

    /// The Overview report of an execution (while it runs: what is stored so far).
    pub async fn report(&self, execution_id: &str) -> Result<Report, Error> {
        let store = &self.inner.store;
        let execution =
            store.execution(execution_id).await?.ok_or_else(|| Error::UnknownExecution(execution_id.to_string()))?;
        let tasks = store.tasks(execution_id).await?;
        let children = store
            .children(execution_id)
            .await?
            .into_iter()
            .map(switchyard_package::engine::ChildRecord::from)
            .collect();
        Ok(Report { execution, tasks, children })
    }
}

/// Writes the sent files under `dir`, refusing paths that leave it; returns the parent's path.
fn write_files(dir: &Path, package: &str, files: &[(String, String)]) -> Result<PathBuf, Error> {
    let mut parent = None;
    for (path, content) in files {
        let relative = Path::new(path);
        if path.is_empty()
            || relative.is_absolute()
            || relative.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(Error::InvalidArgument(format!(
                "files: \"{path}\" must be a relative path inside the package's folder (no .., no absolute paths)"
            )));
        }
        let target = dir.join(relative);
        if let Some(folder) = target.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|e| Error::InvalidArgument(format!("files: cannot create {}: {e}", folder.display())))?;
        }
        std::fs::write(&target, content)
            .map_err(|e| Error::InvalidArgument(format!("files: cannot write {}: {e}", target.display())))?;
        if path == package {
            parent = Some(target);
        }
    }
    parent.ok_or_else(|| Error::InvalidArgument(format!("package: \"{package}\" is not among the files sent")))
}

/// Stores an execution's events in order, batching whatever is queued, and feeds watchers
/// once each batch is durable.
async fn store_events(
    store: Store,
    execution_id: String,
    mut events: mpsc::UnboundedReceiver<Event>,
    live: broadcast::Sender<StoredEvent>,
) {
    let mut batch = Vec::new();
    while events.recv_many(&mut batch, 1024).await > 0 {
        let stored: Vec<StoredEvent> = batch
            .drain(..)
            .map(|event| StoredEvent { execution_id: execution_id.clone(), sequence: event.seq, event })
            .collect();
        if let Err(e) = store.write(vec![Write::AppendEvents(stored.clone())]).await {
            tracing::error!(execution = %execution_id, error = %e, "cannot store execution events");
        }
        for event in stored {
            let _ = live.send(event);
        }
    }
}

/// Writes queued records one batch at a time, in the order they were queued.
async fn write_in_order(store: Store, mut queued: mpsc::UnboundedReceiver<Write>) {
    let mut batch = Vec::new();
    while queued.recv_many(&mut batch, 256).await > 0 {
        if let Err(e) = store.write(std::mem::take(&mut batch)).await {
            tracing::warn!(error = %e, "cannot record child runs");
        }
    }
}
