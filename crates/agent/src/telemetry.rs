//! The agent's metrics (DESIGN.md §12): runs counted as they end, and the gauges set from the
//! runtime when `/metrics` is scraped.

use std::sync::Arc;
use std::time::Duration;

use metrics::Histogram;
use switchyard_http::Metrics;

/// The agent's series.
#[derive(Debug)]
pub struct Telemetry {
    metrics: Arc<Metrics>,
    store_commit: Histogram,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A fresh recorder with every series described.
    pub fn new() -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.describe_counter("switchyard_agent_runs_total", "Runs ended on this agent, by job and outcome.");
        metrics.describe_gauge("switchyard_agent_running", "Runs executing steps now.");
        metrics.describe_gauge("switchyard_agent_queued", "Runs accepted and waiting for their turn or a slot.");
        metrics.describe_gauge("switchyard_agent_slots", "Jobs this agent runs at once.");
        metrics.describe_gauge(
            "switchyard_agent_outbox_unconsumed",
            "Outbox events no coordinator has confirmed consuming yet.",
        );
        metrics.describe_gauge("switchyard_agent_draining", "1 while the agent takes no new starts.");
        metrics
            .describe_seconds("switchyard_agent_store_commit_seconds", "Transactions committed by the agent's store.");
        Self { store_commit: metrics.histogram("switchyard_agent_store_commit_seconds", &[]), metrics }
    }

    /// The recorder, for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A run of `job` ended with `outcome` (succeeded, failed or canceled).
    pub fn run_ended(&self, job: &str, outcome: &str) {
        self.metrics.counter("switchyard_agent_runs_total", &[("job", job), ("outcome", outcome)]).increment(1);
    }

    /// Records one store commit.
    pub fn store_commit(&self, took: Duration) {
        self.store_commit.record(took.as_secs_f64());
    }

    /// Sets the gauges read from the runtime at scrape time.
    pub fn refresh(&self, load: Load) {
        self.metrics.gauge("switchyard_agent_running", &[]).set(f64::from(load.running));
        self.metrics.gauge("switchyard_agent_queued", &[]).set(f64::from(load.queued));
        self.metrics.gauge("switchyard_agent_slots", &[]).set(f64::from(load.slots));
        self.metrics.gauge("switchyard_agent_outbox_unconsumed", &[]).set(load.outbox_unconsumed as f64);
        self.metrics.gauge("switchyard_agent_draining", &[]).set(if load.draining { 1.0 } else { 0.0 });
    }
}

/// The runtime's state the gauges show.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Runs executing steps.
    pub running: u32,
    /// Runs waiting.
    pub queued: u32,
    /// Configured slots.
    pub slots: u32,
    /// Outbox events after the last one a coordinator confirmed.
    pub outbox_unconsumed: u64,
    /// Draining.
    pub draining: bool,
}
