//! The agent's state: its jobs, the runs it has accepted, slots and concurrency policies.
//! StartJob is decided here under one short lock, recorded durably, then handed to the runner.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use chrono::Utc;
use tokio::sync::{Notify, OnceCell, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use switchyard_package::expr::Map;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::faults::Faults;
use crate::jobs::{Concurrency, JobDefinition};
use crate::model::{EventKind, OutboxEvent, RunRecord, RunStatus};
use crate::store::{Store, Write};

/// Where a job definition came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobSource {
    /// A file of jobs_dir.
    File,
    /// UpsertJob.
    Pushed,
}

impl JobSource {
    /// "file" or "pushed".
    pub fn as_str(self) -> &'static str {
        match self {
            JobSource::File => "file",
            JobSource::Pushed => "pushed",
        }
    }
}

/// A job the agent holds.
#[derive(Debug, Clone)]
pub struct JobEntry {
    /// Its definition.
    pub definition: Arc<JobDefinition>,
    /// Where it came from.
    pub source: JobSource,
    /// One permit: whose turn it is, for `concurrency = "queue"`.
    pub turn: Arc<Semaphore>,
}

/// A run that has not ended yet.
#[derive(Debug, Clone)]
pub struct ActiveRun {
    /// Its job.
    pub job: String,
    /// Who started it.
    pub requested_by: String,
    /// Where it is.
    pub status: RunStatus,
    /// The step executing now (1-based), 0 when none.
    pub current_step: u32,
    /// Fires to stop it.
    pub cancel: CancellationToken,
    /// Who stopped it, once StopJob was called.
    pub stopped_by: Option<String>,
}

/// A start request, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// The job.
    pub job: String,
    /// Parameters for its packages.
    pub params: Map,
    /// Makes a repeated request answer with the run it started.
    pub idempotency_key: Option<String>,
    /// Fencing epoch (0: not fenced).
    pub epoch: u64,
    /// Who asks.
    pub requested_by: String,
    /// Coordinator execution id, task path and attempt, recorded with the run.
    pub execution_id: String,
    /// See `execution_id`.
    pub task_path: String,
    /// See `execution_id`.
    pub attempt: u32,
}

/// What StartJob answers.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The run.
    pub run_id: String,
    /// Its ACCEPTED event's outbox sequence.
    pub sequence: u64,
    /// The outbox incarnation.
    pub incarnation: String,
    /// "Job 'x' started successfully."
    pub message: String,
    /// True when an earlier request with the same key started it.
    pub existing: bool,
    /// Queued or running.
    pub status: RunStatus,
    /// The packages the job's steps run, in step order.
    pub packages: Vec<String>,
}

/// The permits a run holds while it runs.
pub(crate) struct Permits {
    pub slot: Option<OwnedSemaphorePermit>,
    pub turn: Option<OwnedSemaphorePermit>,
}

/// The agent: jobs, active runs, slots, the store, faults and shutdown state.
pub struct AgentRuntime {
    /// The configuration it runs with.
    pub config: AgentConfig,
    /// The durable store.
    pub store: Store,
    /// Simulated failures.
    pub faults: Faults,
    /// Fires when the agent shuts down: watch streams end.
    pub shutdown: CancellationToken,
    /// Packages loaded by earlier runs.
    pub packages: crate::package_cache::PackageCache,
    jobs: RwLock<BTreeMap<String, JobEntry>>,
    active: Mutex<HashMap<String, ActiveRun>>,
    /// Active runs per job (locked after `active`, never before): the concurrency policy's
    /// count without a scan of every active run.
    active_per_job: Mutex<HashMap<String, usize>>,
    pub(crate) slots: Arc<Semaphore>,
    draining: AtomicBool,
    epoch: AtomicU64,
    started: Instant,
    keys: Mutex<HashMap<String, Arc<OnceCell<Accepted>>>>,
    /// Notified whenever a run ends.
    pub(crate) run_ended: Notify,
    /// The data dir's lock, held while the agent lives.
    _data_dir_lock: nix::fcntl::Flock<std::fs::File>,
}

impl AgentRuntime {
    /// A runtime over an open store and the jobs loaded at start.
    pub fn new(
        config: AgentConfig,
        store: Store,
        jobs: Vec<(Arc<JobDefinition>, JobSource)>,
        epoch: u64,
        data_dir_lock: nix::fcntl::Flock<std::fs::File>,
    ) -> Arc<Self> {
        let slots = Arc::new(Semaphore::new(config.slots as usize));
        let runtime = Arc::new(Self {
            config,
            store,
            faults: Faults::default(),
            shutdown: CancellationToken::new(),
            packages: Default::default(),
            jobs: RwLock::new(BTreeMap::new()),
            active: Mutex::new(HashMap::new()),
            active_per_job: Mutex::new(HashMap::new()),
            slots,
            draining: AtomicBool::new(false),
            epoch: AtomicU64::new(epoch),
            started: Instant::now(),
            keys: Mutex::new(HashMap::new()),
            run_ended: Notify::new(),
            _data_dir_lock: data_dir_lock,
        });
        for (definition, source) in jobs {
            runtime.put_job(definition, source);
        }
        runtime
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Time since start.
    pub fn uptime(&self) -> std::time::Duration {
        self.started.elapsed()
    }

    /// The highest fencing epoch seen.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// True once shutdown began: no new start is accepted.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stops accepting starts (SIGTERM).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Adds or replaces a job.
    pub fn put_job(&self, definition: Arc<JobDefinition>, source: JobSource) -> bool {
        let mut jobs = self.jobs.write().unwrap_or_else(|p| p.into_inner());
        let turn = jobs.get(&definition.name).map_or_else(|| Arc::new(Semaphore::new(1)), |e| e.turn.clone());
        jobs.insert(definition.name.clone(), JobEntry { definition, source, turn }).is_none()
    }

    /// Removes a job.
    pub fn remove_job(&self, name: &str) -> Option<JobEntry> {
        self.jobs.write().unwrap_or_else(|p| p.into_inner()).remove(name)
    }

    /// A job by name.
    pub fn job(&self, name: &str) -> Option<JobEntry> {
        self.jobs.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// Every job, by name.
    pub fn jobs(&self) -> Vec<JobEntry> {
        self.jobs.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// A snapshot of the active runs by id.
    pub fn active_runs(&self) -> HashMap<String, ActiveRun> {
        self.lock_active().clone()
    }

    /// Runs executing and runs waiting (queued or for a slot).
    pub fn load(&self) -> (u32, u32) {
        let active = self.lock_active();
        let queued = active.values().filter(|r| r.status == RunStatus::Queued).count() as u32;
        (active.len() as u32 - queued, queued)
    }

    pub(crate) fn lock_active(&self) -> std::sync::MutexGuard<'_, HashMap<String, ActiveRun>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Updates an active run's status and step.
    pub(crate) fn set_progress(&self, run_id: &str, status: RunStatus, step: u32) {
        if let Some(run) = self.lock_active().get_mut(run_id) {
            run.status = status;
            run.current_step = step;
        }
    }

    /// Removes a run from the active runs and its job's count.
    fn forget_active(&self, run_id: &str) {
        let mut active = self.lock_active();
        if let Some(run) = active.remove(run_id) {
            let mut counts = self.active_per_job.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(count) = counts.get_mut(&run.job) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    counts.remove(&run.job);
                }
            }
        }
    }

    /// Forgets an ended run and wakes whoever waits for runs to end.
    pub(crate) fn finish_run(&self, run_id: &str, idempotency_key: Option<&str>) {
        self.forget_active(run_id);
        if let Some(key) = idempotency_key {
            // Later repeats of the key are answered from the store.
            self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        }
        self.run_ended.notify_waiters();
    }

    /// StartJob: accepts and records a run, or refuses it; never waits for the run.
    pub async fn start_job(self: &Arc<Self>, request: StartRequest) -> Result<Accepted, Error> {
        self.faults.gate().await?;
        if self.draining() {
            return Err(Error::Unavailable(format!(
                "agent \"{}\" is shutting down and accepts no new runs; start the job on another agent",
                self.name()
            )));
        }
        let current = self.epoch();
        if request.epoch > 0 && request.epoch < current {
            return Err(Error::StaleEpoch { given: request.epoch, current });
        }
        let Some(key) = request.idempotency_key.clone().filter(|k| !k.is_empty()) else {
            return self.accept(request).await;
        };
        let cell = self.keys.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_default().clone();
        if let Some(done) = cell.get() {
            return Ok(Accepted { existing: true, ..done.clone() });
        }
        // Keys of active runs are answered from memory; a key whose run has ended (or that an
        // earlier incarnation of this process accepted) is refused by the store's unique index,
        // and then answered from the store. No read on the path of a new start.
        let mut initialized_here = false;
        let accepted = cell
            .get_or_try_init(|| {
                initialized_here = true;
                self.accept(request)
            })
            .await;
        let accepted = match accepted {
            Ok(accepted) => accepted.clone(),
            Err(Error::Store(e)) if e.is_constraint_violation() => {
                self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                return match self.store.run_by_key(&key).await? {
                    Some(record) => Ok(self.existing(&record)),
                    None => Err(Error::Store(e)),
                };
            }
            Err(e) => return Err(e),
        };
        Ok(Accepted { existing: !initialized_here, ..accepted })
    }

    fn existing(&self, record: &RunRecord) -> Accepted {
        Accepted {
            run_id: record.run_id.clone(),
            sequence: record.accepted_sequence,
            incarnation: self.store.incarnation().to_string(),
            message: format!("Job '{}' started successfully.", record.job),
            existing: true,
            status: record.status,
            packages: self.job(&record.job).map(|e| packages_of(&e.definition)).unwrap_or_default(),
        }
    }

    async fn accept(self: &Arc<Self>, request: StartRequest) -> Result<Accepted, Error> {
        let entry = self
            .job(&request.job)
            .ok_or_else(|| Error::UnknownJob { job: request.job.clone(), agent: self.name().to_string() })?;
        // Time-ordered ids: new runs append to the end of the table's B-tree, so a group commit
        // writes a few shared pages instead of one page per run.
        let run_id = uuid::Uuid::now_v7().to_string();
        let cancel = CancellationToken::new();
        let (status, permits) = self.reserve(&entry, &request, &run_id, &cancel)?;

        let now = Utc::now();
        let record = RunRecord {
            run_id: run_id.clone(),
            job: request.job.clone(),
            status,
            idempotency_key: request.idempotency_key.clone().filter(|k| !k.is_empty()),
            epoch: request.epoch,
            requested_by: request.requested_by.clone(),
            execution_id: request.execution_id.clone(),
            task_path: request.task_path.clone(),
            attempt: request.attempt,
            params: request.params.clone(),
            accepted_at: now,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            message: format!("Job '{}' started successfully.", request.job),
            current_step: 0,
            job_hash: entry.definition.hash.clone(),
            package_hashes: Vec::new(),
            accepted_sequence: 0,
            process_groups: Vec::new(),
        };
        let accepted_event = event_for(&record, EventKind::Accepted, record.message.clone());
        // A run that got its slot starts now: its start is recorded in the same commit.
        let record = if status == RunStatus::Running { RunRecord { started_at: Some(now), ..record } } else { record };
        let mut batch = vec![Write::InsertRun(record.clone()), Write::AppendEvent(accepted_event)];
        if status == RunStatus::Running {
            batch.push(Write::AppendEvent(event_for(&record, EventKind::Started, started_message(&record.job))));
        }
        if request.epoch > self.epoch() {
            batch.push(Write::SetMeta { key: "epoch".into(), value: request.epoch.to_string() });
        }
        let receipt = match self.store.write(batch).await {
            Ok(r) => r,
            Err(e) => {
                self.forget_active(&run_id);
                return Err(e.into());
            }
        };
        self.epoch.fetch_max(request.epoch, Ordering::SeqCst);
        let sequence = receipt.sequences.first().copied().unwrap_or_default();
        let record = RunRecord { accepted_sequence: sequence, ..record };
        tracing::info!(run = %run_id, job = %record.job, sequence, status = status.as_str(), "run accepted");
        tokio::spawn(crate::runner::execute(self.clone(), record.clone(), entry.definition.clone(), permits, cancel));
        Ok(Accepted {
            run_id,
            sequence,
            incarnation: self.store.incarnation().to_string(),
            message: record.message,
            existing: false,
            status,
            packages: packages_of(&entry.definition),
        })
    }

    /// Applies the job's concurrency policy and the agent's slots under one lock.
    fn reserve(
        &self,
        entry: &JobEntry,
        request: &StartRequest,
        run_id: &str,
        cancel: &CancellationToken,
    ) -> Result<(RunStatus, Permits), Error> {
        let mut active = self.lock_active();
        let running_of_job = self.active_per_job.lock().unwrap_or_else(|p| p.into_inner()).get(&request.job).copied();
        let running_of_job = running_of_job.unwrap_or(0);
        // The job's runs are listed only when a policy needs them (a refusal, a queue).
        let of_job = || -> Vec<&ActiveRun> { active.values().filter(|r| r.job == request.job).collect() };
        let refusal = |other: &ActiveRun| {
            format!(
                "Request to run job {} (from User {}) refused because the job is already running from a request by User {}.",
                request.job, request.requested_by, other.requested_by
            )
        };
        let mut queued = false;
        match entry.definition.concurrency {
            Concurrency::Forbid => {
                if running_of_job > 0
                    && let Some(other) = of_job().first()
                {
                    return Err(Error::AlreadyRunning(refusal(other)));
                }
            }
            Concurrency::Allow { max_running } => {
                if running_of_job >= max_running as usize
                    && let Some(other) = of_job().first()
                {
                    return Err(Error::AlreadyRunning(format!("{} (max_running = {max_running})", refusal(other))));
                }
            }
            Concurrency::Queue { max_queue } => {
                if running_of_job > 0 {
                    let waiting = of_job().iter().filter(|r| r.status == RunStatus::Queued).count();
                    if waiting >= max_queue as usize {
                        return Err(Error::Exhausted(format!(
                            "the queue of job \"{}\" is full ({waiting} waiting, max_queue = {max_queue}); try again later",
                            request.job
                        )));
                    }
                    queued = true;
                }
            }
        }
        let mut permits = Permits { slot: None, turn: None };
        if !queued {
            permits.slot = Some(self.slots.clone().try_acquire_owned().map_err(|_| {
                Error::Exhausted(format!(
                    "no free slot on agent \"{}\": all {} slots are running jobs; try another agent or later",
                    self.name(),
                    self.config.slots
                ))
            })?);
            if matches!(entry.definition.concurrency, Concurrency::Queue { .. }) {
                permits.turn = entry.turn.clone().try_acquire_owned().ok();
            }
        }
        let status = if queued { RunStatus::Queued } else { RunStatus::Running };
        *self.active_per_job.lock().unwrap_or_else(|p| p.into_inner()).entry(request.job.clone()).or_default() += 1;
        active.insert(
            run_id.to_string(),
            ActiveRun {
                job: request.job.clone(),
                requested_by: request.requested_by.clone(),
                status,
                current_step: 0,
                cancel: cancel.clone(),
                stopped_by: None,
            },
        );
        Ok((status, permits))
    }

    /// StopJob: cancels a run, or every active run of a job.
    pub async fn stop(
        &self,
        run_id: Option<&str>,
        job: Option<&str>,
        requested_by: &str,
    ) -> Result<(Vec<String>, String), Error> {
        self.faults.gate().await?;
        let mut stopped = Vec::new();
        let mut job_name = job.unwrap_or_default().to_string();
        {
            let mut active = self.lock_active();
            for (id, run) in active.iter_mut() {
                let matches = match (run_id, job) {
                    (Some(r), _) if !r.is_empty() => id == r,
                    (_, Some(j)) if !j.is_empty() => run.job == j,
                    _ => false,
                };
                if matches {
                    run.stopped_by = Some(requested_by.to_string());
                    run.cancel.cancel();
                    job_name = run.job.clone();
                    stopped.push(id.clone());
                }
            }
        }
        if stopped.is_empty() {
            return Err(match (run_id.filter(|r| !r.is_empty()), job.filter(|j| !j.is_empty())) {
                (Some(r), _) => match self.store.run(r).await? {
                    Some(record) => {
                        Error::FailedPrecondition(format!("run \"{r}\" already ended ({})", record.status.as_str()))
                    }
                    None => Error::UnknownRun(r.to_string()),
                },
                (None, Some(j)) if self.job(j).is_none() => {
                    Error::UnknownJob { job: j.to_string(), agent: self.name().to_string() }
                }
                (None, Some(j)) => Error::FailedPrecondition(format!("job \"{j}\" is not running")),
                (None, None) => Error::InvalidArgument("give run_id or job".into()),
            });
        }
        Ok((stopped, format!("Job '{job_name}' stopped successfully.")))
    }
}

/// An outbox event about a run (sequence assigned by the store).
pub(crate) fn event_for(record: &RunRecord, kind: EventKind, message: String) -> OutboxEvent {
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

/// The message of a run's STARTED event.
pub(crate) fn started_message(job: &str) -> String {
    format!("job \"{job}\" started")
}

/// The package paths of a job's package steps, in step order.
fn packages_of(job: &JobDefinition) -> Vec<String> {
    job.steps
        .iter()
        .filter_map(|s| match &s.work {
            crate::jobs::StepWork::Package { path, .. } => Some(path.clone()),
            crate::jobs::StepWork::Command { .. } => None,
        })
        .collect()
}
