//! The agent's state: its jobs, the runs it has accepted, slots, epoch and draining. StartJob's
//! admission is in `admission`; the runner sees this state only through `RunHost`.

mod admission;

pub use admission::{Accepted, StartRequest};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::sync::{Notify, OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::error::Error;
use crate::faults::Faults;
use crate::jobs::JobDefinition;
use crate::model::RunStatus;
use crate::package_cache::PackageCache;
use crate::runner::RunHost;
use crate::store::Store;

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
    pub packages: PackageCache,
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
    /// The agent's metrics.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
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
            telemetry: Arc::new(crate::telemetry::Telemetry::new()),
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

impl RunHost for AgentRuntime {
    fn store(&self) -> &Store {
        &self.store
    }

    fn config(&self) -> &AgentConfig {
        &self.config
    }

    fn packages(&self) -> &PackageCache {
        &self.packages
    }

    fn set_progress(&self, run_id: &str, status: RunStatus, step: u32) {
        if let Some(run) = self.lock_active().get_mut(run_id) {
            run.status = status;
            run.current_step = step;
        }
    }

    fn stopped_by(&self, run_id: &str) -> Option<String> {
        self.lock_active().get(run_id).and_then(|r| r.stopped_by.clone())
    }

    fn queue_turn(&self, job: &str) -> Option<Arc<Semaphore>> {
        self.job(job).map(|entry| entry.turn)
    }

    fn slots(&self) -> Arc<Semaphore> {
        self.slots.clone()
    }

    fn telemetry(&self) -> &crate::telemetry::Telemetry {
        &self.telemetry
    }

    fn finish_run(&self, run_id: &str, idempotency_key: Option<&str>) {
        self.forget_active(run_id);
        if let Some(key) = idempotency_key {
            // Later repeats of the key are answered from the store.
            self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        }
        self.run_ended.notify_waiters();
    }
}
