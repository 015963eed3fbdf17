//! Submission: the files sent with a package are written under the data dir and validated, the
//! execution is recorded, and the engine runs it with agent jobs placed through the registry;
//! its events are stored behind the run and fed to watchers once durable.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use switchyard_package::LoadError;
use switchyard_package::engine::{
    Event, EventKind, ExecutionStatus, Masker, RunOptions, bind_parameters, masked_parameters, run_package,
    secret_values,
};
use switchyard_package::load::{LoadOptions, load_package_with};

use super::activity::Activity;
use super::{Executions, Live, StartExecution, Started, checkpoints};
use crate::error::Error;
use crate::launcher::{AgentJobs, ChildSink, ChildUpdate, PriorAttempts};
use crate::store::{ChildRunRecord, ExecutionRecord, Store, StoredEvent, Write};

impl Executions {
    /// Starts an execution; a repeated request id answers with the one it started.
    pub async fn start(&self, request: StartExecution) -> Result<Started, Error> {
        // One start at a time per coordinator keeps request-id checks and inserts atomic.
        let _one = self.inner.requests.lock().await;
        if let Some(id) = request.request_id.as_deref().filter(|r| !r.is_empty())
            && let Some(existing) = self.inner.store.execution_by_request(id).await?
        {
            return Ok(Started { execution_id: existing.execution_id, existing: true, checkpoint: String::new() });
        }
        request.check(&self.inner.limits).map_err(Error::InvalidArgument)?;
        let execution_id = uuid::Uuid::new_v4().to_string();
        let dir = self.inner.data_dir.join("executions").join(&execution_id);
        // A rejected request leaves none of its files behind.
        let prepared = self
            .prepare(&dir, &request)
            .and_then(|(package, parameters)| Ok((checkpoints::relocated(package, &self.inner.data_dir)?, parameters)))
            .and_then(|(package, parameters)| {
                let (resume, said) = checkpoints::plan(&package, &request.restart)?;
                Ok((package, parameters, resume, said))
            });
        let (package, parameters, resume, checkpoint) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => {
                if let Err(removed) = std::fs::remove_dir_all(&dir)
                    && removed.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(dir = %dir.display(), error = %removed, "could not remove a rejected execution's files");
                }
                return Err(e);
            }
        };
        let mut all_parameters = package.parameters.clone();
        for (k, v) in &parameters {
            all_parameters.insert(k.clone(), v.clone());
        }
        // Secret values stay in this process's memory: the record shows `***`.
        let masker = Masker::new(secret_values(&package, &all_parameters));
        let all_parameters = masked_parameters(&package, &all_parameters, &masker);
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
        tracing::info!(execution = %execution_id, package = %package.name, "execution started");
        let options = RunOptions {
            execution_id: execution_id.clone(),
            parameters,
            max_concurrent: request.max_concurrent,
            limits: self.inner.limits.clone(),
            package_root: Some(dir),
            databases: Some(self.inner.databases.clone()),
            resume,
            ..RunOptions::default()
        };
        if !checkpoint.is_empty() {
            tracing::info!(execution = %execution_id, %checkpoint, "checkpoint");
        }
        self.launch(record, package, options, None);
        Ok(Started { execution_id, existing: false, checkpoint })
    }

    /// Writes a request's files under `dir`, loads its package confined to `dir`, and binds
    /// its parameters.
    fn prepare(
        &self,
        dir: &Path,
        request: &StartExecution,
    ) -> Result<(Arc<switchyard_package::Package>, switchyard_package::expr::Map), Error> {
        let package_path = write_files(dir, &request.package, &request.files)?;
        let package = match load_package_with(&package_path, &self.load_options(dir)) {
            Ok(loaded) => loaded.package,
            Err(LoadError::Invalid(d)) => return Err(Error::InvalidArgument(format!("the package is invalid:\n{d}"))),
            Err(e) => return Err(Error::InvalidArgument(format!("package: {e}"))),
        };
        let parameters = bind_parameters(&package, &request.parameters)
            .map_err(|e| Error::InvalidArgument(format!("parameters: {e}")))?;
        Ok((package, parameters))
    }

    /// How an execution's packages load: `[limits]`, confined to the execution's folder.
    pub(super) fn load_options(&self, dir: &Path) -> LoadOptions {
        LoadOptions { limits: self.inner.limits.clone(), root: Some(dir.to_path_buf()) }
    }

    /// The bounds of `[limits]`.
    pub fn limits(&self) -> &switchyard_settings::Limits {
        &self.inner.limits
    }

    /// Runs a recorded execution on its own task, live (cancel, event feed) until it ends;
    /// `prior` holds the attempts its agent jobs made before a restart, when it resumes.
    pub(super) fn launch(
        &self,
        record: ExecutionRecord,
        package: Arc<switchyard_package::Package>,
        mut options: RunOptions,
        prior: Option<PriorAttempts>,
    ) {
        let cancel = CancellationToken::new();
        options.cancel = cancel.clone();
        let (events, _) = broadcast::channel(4096);
        let (finished_tx, finished) = tokio::sync::watch::channel(false);
        let activity = Arc::new(Activity::default());
        let live = Live { cancel, activity: activity.clone(), events: events.clone(), finished };
        self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).insert(record.execution_id.clone(), live);
        let this = self.clone();
        tokio::spawn(async move {
            this.run(record, package, options, events, prior, activity).await;
            let _ = finished_tx.send(true);
        });
    }

    /// Runs a recorded execution to its end and stores its tasks, in-process children and result.
    async fn run(
        self,
        mut record: ExecutionRecord,
        package: Arc<switchyard_package::Package>,
        mut options: RunOptions,
        events: broadcast::Sender<StoredEvent>,
        prior: Option<PriorAttempts>,
        activity: Arc<Activity>,
    ) {
        let id = record.execution_id.clone();
        let (event_tx, event_rx) = mpsc::unbounded_channel::<Event>();
        let writer = tokio::spawn(store_events(self.inner.store.clone(), id.clone(), event_rx, events));
        let telemetry = self.inner.registry.telemetry().clone();
        // Tasks running now, for `switchyard_tasks{state="running"}`: a guard per running task,
        // all given back when the run (and this observer) ends.
        let running = std::sync::Mutex::new(std::collections::HashMap::new());
        let observed = activity.clone();
        options.observer = Some(Arc::new(move |event: &Event| {
            observed.observe(event);
            match &event.kind {
                EventKind::TaskStarted { .. } => {
                    let guard = telemetry.task_running();
                    running.lock().unwrap_or_else(|p| p.into_inner()).insert(event.path.clone(), guard);
                }
                EventKind::TaskFinished { .. } => {
                    running.lock().unwrap_or_else(|p| p.into_inner()).remove(&event.path);
                }
                _ => {}
            }
            let _ = event_tx.send(event.clone());
        }));
        let sink: ChildSink = {
            let this = self.clone();
            Arc::new(move |update: ChildUpdate| this.child_changed(update))
        };
        let jobs = AgentJobs::new(self.inner.registry.clone(), record.caller.clone(), Some(sink))
            .counting_pending(activity.pending_counter());
        let jobs = match prior {
            Some(prior) => jobs.resuming(prior),
            None => jobs,
        };
        let resumed = options.resume.is_some();
        options.agent_jobs = Some(Arc::new(jobs));
        let run = run_package(package.clone(), options).await;
        checkpoints::finish(&package, &run);
        let _ = writer.await;
        record.status = run.status;
        record.ended_at = Some(run.ended_at);
        // A resumed execution's duration counts from its first start, across the restart.
        record.duration_ms = Some(match resumed {
            true => (run.ended_at - record.started_at).num_milliseconds().max(0) as u64,
            false => run.duration_ms,
        });
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
        self.inner.registry.telemetry().execution_ended(record.status.as_str());
        self.inner.finished.notify_one();
        tracing::info!(execution = %id, status = %record.status, "execution finished");
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
