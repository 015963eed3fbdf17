//! What a run needs from the agent that accepted it, and nothing more: the runner depends on
//! this narrow interface instead of the agent's whole runtime, which hands runs to it.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::AgentConfig;
use crate::model::RunStatus;
use crate::package_cache::PackageCache;
use crate::store::Store;

/// The agent's side of a run: its store, settings and the live state of its active runs.
pub(crate) trait RunHost: Send + Sync + 'static {
    /// The durable store the run records itself in.
    fn store(&self) -> &Store;
    /// The agent's settings (packages_dir, output limits, kill grace).
    fn config(&self) -> &AgentConfig;
    /// Packages loaded by earlier runs.
    fn packages(&self) -> &PackageCache;
    /// Updates the live status and step of an active run.
    fn set_progress(&self, run_id: &str, status: RunStatus, step: u32);
    /// Who stopped the run through StopJob, if anyone did.
    fn stopped_by(&self, run_id: &str) -> Option<String>;
    /// The semaphore whose single permit is a queued job's turn, while the job exists.
    fn queue_turn(&self, job: &str) -> Option<Arc<Semaphore>>;
    /// The agent's slots.
    fn slots(&self) -> Arc<Semaphore>;
    /// The agent's metrics.
    fn telemetry(&self) -> &crate::telemetry::Telemetry;
    /// Forgets an ended run and wakes whoever waits for runs to end.
    fn finish_run(&self, run_id: &str, idempotency_key: Option<&str>);
}

/// The permits a run holds while it runs: a slot, and its job's turn for `concurrency = "queue"`.
pub(crate) struct Permits {
    /// One of the agent's slots.
    pub slot: Option<OwnedSemaphorePermit>,
    /// The job's turn.
    pub turn: Option<OwnedSemaphorePermit>,
}
