//! Fencing when an agent comes back: runs of superseded attempts are stopped and reported as
//! superseded, and cancels that could not reach the agent while it was down are sent again.

use std::sync::Arc;
use std::time::Duration;

use switchyard_proto::StopJobRequest;
use switchyard_proto::agent_client::AgentClient;
use tokio::sync::broadcast;
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::{AgentState, Inner, Registry};

/// Why a run is stopped when its agent answers again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A later attempt replaced it after its agent was declared down.
    Superseded,
    /// Its execution was canceled while the agent was unreachable.
    Canceled,
}

impl StopReason {
    /// The lower-case name the store keeps it by.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Superseded => "superseded",
            StopReason::Canceled => "canceled",
        }
    }

    /// The reason named `name` ([`StopReason::as_str`]).
    pub fn from_name(name: &str) -> Option<StopReason> {
        match name {
            "superseded" => Some(StopReason::Superseded),
            "canceled" => Some(StopReason::Canceled),
            _ => None,
        }
    }
}

/// A change to what the registry must remember across a restart to fence superseded attempts
/// (DESIGN.md §4 Fencing), for the store. A stop delivered is settled by the executions' record
/// of the [`Stopped`] run, in the same write; the others come here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceChange {
    /// A stop of `run_id` is owed to `agent` until delivered.
    StopOwed {
        /// The agent.
        agent: String,
        /// The run.
        run_id: String,
        /// Why.
        reason: StopReason,
    },
    /// A late cancel found the run already ended (or unknown): nothing is owed any more.
    StopSettled {
        /// The agent.
        agent: String,
        /// The run.
        run_id: String,
    },
    /// A start given up while in flight to `agent`.
    StartAbandoned {
        /// The agent.
        agent: String,
        /// The start's idempotency key.
        idempotency_key: String,
    },
    /// `agent` has a new incarnation: the requests it held died with its old data.
    AbandonedStartsForgotten {
        /// The agent.
        agent: String,
    },
}

/// Where the registry sends [`FenceChange`]s; called under no lock, and must not block.
pub type FenceLog = Arc<dyn Fn(FenceChange) + Send + Sync>;

/// A run stopped (or found already ended) by reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// The agent.
    pub agent: String,
    /// The run.
    pub run_id: String,
    /// Why.
    pub reason: StopReason,
    /// What the run belongs to, when the coordinator never had it as a child: a start given up
    /// while in flight to an agent declared down, which the agent accepted once it resumed.
    pub run: Option<StoppedRun>,
}

/// The execution, task and attempt a stopped run was started for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedRun {
    /// The execution.
    pub execution_id: String,
    /// The task path.
    pub task_path: String,
    /// The attempt.
    pub attempt: u32,
    /// The job.
    pub job: String,
    /// The start's idempotency key.
    pub idempotency_key: String,
}

impl Registry {
    /// Sends every [`FenceChange`] to `log` from now on (the executions store them).
    pub fn log_fences_to(&self, log: FenceLog) {
        if self.inner.fence_log.set(log).is_err() {
            tracing::warn!("the registry's fence log was already set; keeping the first");
        }
    }

    /// Fencing facts a restarted coordinator stored: stops still owed, as (agent, run id,
    /// reason), and starts abandoned, as (agent, key). Used when those agents are added (call
    /// before adding them).
    pub fn resume_fences(
        &self,
        stops: impl IntoIterator<Item = (String, String, StopReason)>,
        abandoned: impl IntoIterator<Item = (String, String)>,
    ) {
        let mut state = self.inner.lock();
        for (agent, run_id, reason) in stops {
            state.stored_fences.entry(agent).or_default().stops.push((run_id, reason));
        }
        for (agent, key) in abandoned {
            state.stored_fences.entry(agent).or_default().abandoned_keys.insert(key);
        }
    }

    /// Stops `run_id` on `agent` now if it answers, or as soon as it comes back. The stop is
    /// owed durably (through the fence log) until it is delivered.
    pub fn stop_when_back(&self, agent: &str, run_id: &str, reason: StopReason) {
        let client = {
            let mut state = self.inner.lock();
            let Some(entry) = state.agents.get_mut(agent) else { return };
            if !entry.pending_stops.iter().any(|(pending, _)| pending == run_id) {
                entry.pending_stops.push((run_id.to_string(), reason));
            }
            (entry.state() == AgentState::Up).then(|| AgentClient::new(entry.channel.clone()))
        };
        self.inner.fence(FenceChange::StopOwed { agent: agent.to_string(), run_id: run_id.to_string(), reason });
        if let Some(client) = client {
            let inner = self.inner.clone();
            let agent = agent.to_string();
            tokio::spawn(async move { reconcile(&inner, &agent, client).await });
        }
    }

    /// Records a start given up while in flight to `agent` because it was declared down: if the
    /// agent accepts it when it resumes, the run is stopped at once and recorded superseded.
    pub fn supersede_when_accepted(&self, agent: &str, key: &str) {
        let known = match self.inner.lock().agents.get_mut(agent) {
            Some(entry) => {
                entry.abandoned_keys.insert(key.to_string());
                true
            }
            None => false,
        };
        if known {
            self.inner
                .fence(FenceChange::StartAbandoned { agent: agent.to_string(), idempotency_key: key.to_string() });
        }
    }

    /// Resolves once `agent` is declared down (at once when it is down or unknown). Woken by
    /// that agent's own signal, not by every registry change: starts in flight wait on it.
    pub async fn declared_down(&self, agent: &str) {
        let Some(signal) = self.inner.lock().agents.get(agent).map(|entry| entry.down_signal.clone()) else {
            return;
        };
        let notified = signal.notified();
        if !self.is_up(agent) {
            return;
        }
        notified.await;
    }

    /// Every run reconciliation stopped, for the executions' records.
    pub fn stopped(&self) -> broadcast::Receiver<Stopped> {
        self.inner.stopped.subscribe()
    }
}

impl Registry {
    /// Asks `agent` to stop one run, with the start deadline. NOT_FOUND when the coordinator
    /// does not know the agent; the agent's own status otherwise (FAILED_PRECONDITION when the
    /// run had already ended, NOT_FOUND when it does not know the run).
    pub async fn stop_run(&self, agent: &str, run_id: &str, requested_by: &str) -> Result<(), Status> {
        let client = self
            .client(agent)
            .ok_or_else(|| Status::not_found(format!("no agent named \"{agent}\" is known to the coordinator")))?;
        stop_job(client, run_id, requested_by, self.settings().start_timeout).await
    }
}

/// StopJob for one run: the one place the coordinator asks an agent to stop something.
async fn stop_job(
    mut client: AgentClient<Channel>,
    run_id: &str,
    requested_by: &str,
    timeout: Duration,
) -> Result<(), Status> {
    let mut call = tonic::Request::new(StopJobRequest {
        run_id: run_id.to_string(),
        job: String::new(),
        requested_by: requested_by.to_string(),
    });
    call.set_timeout(timeout);
    client.stop_job(call).await.map(|_| ())
}

/// Sends the agent's pending stops; those that cannot be delivered stay pending.
pub(super) async fn reconcile(inner: &Inner, agent: &str, client: AgentClient<Channel>) {
    let pending = match inner.lock().agents.get_mut(agent) {
        Some(entry) => std::mem::take(&mut entry.pending_stops),
        None => return,
    };
    let mut undelivered = Vec::new();
    for (run_id, reason) in pending {
        let requested_by = match reason {
            StopReason::Superseded => "switchyard coordinator (attempt superseded)",
            StopReason::Canceled => "switchyard coordinator (execution canceled)",
        };
        match stop_job(client.clone(), &run_id, requested_by, inner.settings.start_timeout).await {
            Ok(_) => {}
            // It had already ended (or is unknown there): a late cancel changes nothing, its real
            // outcome comes from the agent's outbox; a superseded attempt is superseded anyway.
            Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) => {
                if reason == StopReason::Canceled {
                    inner.fence(FenceChange::StopSettled { agent: agent.to_string(), run_id });
                    continue;
                }
            }
            Err(status) => {
                tracing::warn!(%agent, run = %run_id, error = %status.message(), "cannot stop a run yet; will retry when the agent is back");
                undelivered.push((run_id, reason));
                continue;
            }
        }
        tracing::info!(%agent, run = %run_id, ?reason, "run stopped on an agent that came back");
        let _ = inner.stopped.send(Stopped { agent: agent.to_string(), run_id, reason, run: None });
    }
    if !undelivered.is_empty()
        && let Some(entry) = inner.lock().agents.get_mut(agent)
    {
        entry.pending_stops.extend(undelivered);
    }
}
