//! The coordinator's metrics (DESIGN.md §12): what the launcher, the registry and executions
//! count as they go, and the gauges set from the registry's state when `/metrics` is scraped.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use switchyard_http::Metrics;

use crate::registry::{AgentSnapshot, AgentState};

/// Every agent state, so each series exists (at 0) from the first scrape.
const AGENT_STATES: [AgentState; 4] = [AgentState::Up, AgentState::Suspect, AgentState::Down, AgentState::Draining];

/// How a StartJob to an agent ended, as `switchyard_job_starts_total{outcome}` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// The agent recorded the run.
    Accepted,
    /// The agent had no free slot: the task stays pending.
    Full,
    /// The agent refused it (already running, unknown job, stale epoch, draining).
    Refused,
    /// The agent could not be reached, or was declared down while starting.
    Unreachable,
}

impl StartOutcome {
    fn as_str(self) -> &'static str {
        match self {
            StartOutcome::Accepted => "accepted",
            StartOutcome::Full => "full",
            StartOutcome::Refused => "refused",
            StartOutcome::Unreachable => "unreachable",
        }
    }
}

/// The coordinator's series and the handles it updates on its hot paths.
#[derive(Debug)]
pub struct Telemetry {
    metrics: Arc<Metrics>,
    start_latency: Histogram,
    pending_seconds: Histogram,
    store_commit: Histogram,
    failovers: Counter,
    retries: Counter,
    tasks_running: Gauge,
    tasks_pending: Gauge,
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
        metrics.describe_counter("switchyard_job_starts_total", "StartJob calls to agents, by agent and outcome.");
        metrics.describe_seconds("switchyard_start_latency_seconds", "StartJob round trips that an agent accepted.");
        metrics.describe_gauge("switchyard_tasks", "Tasks of running executions: running, or pending for an agent.");
        metrics.describe_gauge("switchyard_agents", "Known agents by state.");
        metrics.describe_counter(
            "switchyard_failovers_total",
            "Agent job attempts started again elsewhere after their agent was lost.",
        );
        metrics.describe_counter("switchyard_executions_total", "Executions ended, by status.");
        metrics.describe_counter("switchyard_placements_total", "Slots reserved on agents of a pool, by strategy.");
        metrics.describe_counter("switchyard_task_retries_total", "Agent job attempts after the first.");
        metrics.describe_seconds(
            "switchyard_pending_seconds",
            "How long agent job attempts waited for an agent to accept them.",
        );
        metrics.describe_gauge(
            "switchyard_outbox_lag",
            "Events in an agent's outbox not yet consumed by the coordinator, as of its last heartbeat.",
        );
        metrics
            .describe_gauge("switchyard_agent_load", "Runs an agent is running or queueing, as of its last heartbeat.");
        metrics.describe_gauge("switchyard_agent_slot_capacity", "Slots an agent reported.");
        metrics
            .describe_seconds("switchyard_store_commit_seconds", "Transactions committed by the coordinator's store.");
        let tasks_running = metrics.gauge("switchyard_tasks", &[("state", "running")]);
        let tasks_pending = metrics.gauge("switchyard_tasks", &[("state", "pending")]);
        Self {
            start_latency: metrics.histogram("switchyard_start_latency_seconds", &[]),
            pending_seconds: metrics.histogram("switchyard_pending_seconds", &[]),
            store_commit: metrics.histogram("switchyard_store_commit_seconds", &[]),
            failovers: metrics.counter("switchyard_failovers_total", &[]),
            retries: metrics.counter("switchyard_task_retries_total", &[]),
            tasks_running,
            tasks_pending,
            metrics,
        }
    }

    /// The recorder, for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A StartJob to `agent` ended with `outcome`; `latency` for an accepted one.
    pub fn job_start(&self, agent: &str, outcome: StartOutcome, latency: Duration) {
        self.metrics
            .counter("switchyard_job_starts_total", &[("agent", agent), ("outcome", outcome.as_str())])
            .increment(1);
        if outcome == StartOutcome::Accepted {
            self.start_latency.record(latency.as_secs_f64());
        }
    }

    /// A slot was reserved on an agent of a pool by `strategy`.
    pub fn placement(&self, strategy: &str) {
        self.metrics.counter("switchyard_placements_total", &[("strategy", strategy)]).increment(1);
    }

    /// An attempt after the first began; `failover` when the one before was lost with its agent.
    pub fn retry(&self, failover: bool) {
        self.retries.increment(1);
        if failover {
            self.failovers.increment(1);
        }
    }

    /// An attempt waited `pending` from its start to an agent's acceptance.
    pub fn pending_for(&self, pending: Duration) {
        self.pending_seconds.record(pending.as_secs_f64());
    }

    /// An execution ended with `status`.
    pub fn execution_ended(&self, status: &str) {
        self.metrics.counter("switchyard_executions_total", &[("status", status)]).increment(1);
    }

    /// A task began running: counted until the guard is dropped.
    pub fn task_running(&self) -> GaugeGuard {
        GaugeGuard::new(self.tasks_running.clone())
    }

    /// An agent job attempt is waiting for an agent: counted until the guard is dropped.
    pub fn task_pending(&self) -> GaugeGuard {
        GaugeGuard::new(self.tasks_pending.clone())
    }

    /// Records one store commit.
    pub fn store_commit(&self, took: Duration) {
        self.store_commit.record(took.as_secs_f64());
    }

    /// Sets the agent gauges from the registry's state (at scrape time).
    pub fn refresh_agents(&self, agents: &[AgentSnapshot]) {
        for state in AGENT_STATES {
            let count = agents.iter().filter(|agent| agent.state == state).count();
            self.metrics.gauge("switchyard_agents", &[("state", state.as_str())]).set(count as f64);
        }
        for agent in agents {
            let labels = [("agent", agent.name.as_str())];
            self.metrics.gauge("switchyard_outbox_lag", &labels).set(agent.outbox_lag as f64);
            self.metrics.gauge("switchyard_agent_load", &labels).set(f64::from(agent.running + agent.queued));
            self.metrics.gauge("switchyard_agent_slot_capacity", &labels).set(f64::from(agent.slots));
        }
    }
}

/// Holds one unit of a gauge; gives it back when dropped, whichever way the work ended.
#[derive(Debug)]
pub struct GaugeGuard {
    gauge: Gauge,
}

impl GaugeGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self { gauge }
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_give_back_what_they_hold_and_every_agent_state_is_a_series() {
        let telemetry = Telemetry::new();
        let running = telemetry.task_running();
        let pending = [telemetry.task_pending(), telemetry.task_pending()];
        telemetry.refresh_agents(&[]);
        let text = telemetry.metrics().render();
        assert!(text.contains("switchyard_tasks{state=\"running\"} 1"), "{text}");
        assert!(text.contains("switchyard_tasks{state=\"pending\"} 2"), "{text}");
        for state in ["up", "suspect", "down", "draining"] {
            assert!(text.contains(&format!("switchyard_agents{{state=\"{state}\"}} 0")), "{text}");
        }
        drop((running, pending));
        let text = telemetry.metrics().render();
        assert!(text.contains("switchyard_tasks{state=\"running\"} 0"), "{text}");
        assert!(text.contains("switchyard_tasks{state=\"pending\"} 0"), "{text}");
    }
}
