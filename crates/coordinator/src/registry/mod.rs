//! The coordinator's live view of its agents (DESIGN.md §4 Liveness, Pools and placement): one
//! long-lived HTTP/2 channel and one monitor task per agent, their states, loads and the runs
//! active there, placement with reservations, and the outcomes of finished runs.
//!
//! Invariants: all state sits behind one std mutex that is held briefly and never across an
//! await; liveness uses monotonic clocks only; a monitor touches its agent's entry only while its
//! generation is current.

mod monitor;
mod outcomes;
mod pools;
mod reconcile;
mod reservation;
mod state;
mod types;

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use switchyard_proto::agent_client::AgentClient;
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::config::{agent_url, is_valid_name};

use crate::placement;
use crate::telemetry::Telemetry;
pub use monitor::is_connection_refused;
pub use outcomes::OUTCOME_CACHE_CAPACITY;
pub use reconcile::{FenceChange, FenceLog, StopReason, Stopped, StoppedRun};
pub use reservation::Reservation;
use state::{AgentEntry, Liveness, State};
pub use types::{
    AgentSnapshot, AgentSource, AgentState, PlaceError, RegistryError, RegistrySettings, RunOutcome, WaitOutcome,
};

/// How many FINISHED outcomes a slow `outcomes()` receiver may fall behind before it lags.
const OUTCOME_BROADCAST_CAPACITY: usize = 16_384;

/// The coordinator's agents. Cheap to clone; every clone is the same registry. Monitors end
/// when `shutdown` fires or the last clone (and reservation) is dropped.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    settings: RegistrySettings,
    shutdown: CancellationToken,
    state: Mutex<State>,
    /// Capacity may have freed or an agent's state changed.
    changed: Arc<Notify>,
    finished: broadcast::Sender<RunOutcome>,
    stopped: broadcast::Sender<reconcile::Stopped>,
    /// Where fencing facts go to be stored; unset, they live in memory only.
    fence_log: std::sync::OnceLock<FenceLog>,
    /// With `[tls]`: agents are reached over https with the coordinator's certificate.
    tls: Option<Arc<switchyard_tls::Tls>>,
    /// The coordinator's metrics; the registry owns them so every part that holds it counts.
    telemetry: Arc<Telemetry>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock cannot leave the state half-updated in a way that matters more
        // than stopping the coordinator would.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify_changed(&self) {
        self.changed.notify_waiters();
    }

    /// Hands a fencing fact to the fence log; call under no lock.
    fn fence(&self, change: FenceChange) {
        if let Some(log) = self.fence_log.get() {
            log(change);
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        for entry in self.lock().agents.values() {
            entry.stop.cancel();
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("settings", &self.inner.settings).finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(settings: RegistrySettings, shutdown: CancellationToken) -> Self {
        Self::new_with_tls(settings, None, shutdown)
    }

    /// A registry whose channels to agents are mutual TLS with `tls` (plain text without).
    pub fn new_with_tls(
        settings: RegistrySettings,
        tls: Option<Arc<switchyard_tls::Tls>>,
        shutdown: CancellationToken,
    ) -> Self {
        let state = State {
            agents: BTreeMap::new(),
            round_robin_cursor: 0,
            outcomes: outcomes::OutcomeCache::new(OUTCOME_CACHE_CAPACITY),
            next_generation: 1,
            cursors: std::collections::HashMap::new(),
            stored_fences: std::collections::HashMap::new(),
        };
        let (finished, _) = broadcast::channel(OUTCOME_BROADCAST_CAPACITY);
        let (stopped, _) = broadcast::channel(OUTCOME_BROADCAST_CAPACITY);
        let inner = Inner {
            settings,
            shutdown,
            state: Mutex::new(state),
            changed: Arc::new(Notify::new()),
            finished,
            stopped,
            fence_log: std::sync::OnceLock::new(),
            tls,
            telemetry: Arc::new(Telemetry::new()),
        };
        Self { inner: Arc::new(inner) }
    }

    pub fn settings(&self) -> &RegistrySettings {
        &self.inner.settings
    }

    /// The coordinator's metrics.
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.inner.telemetry
    }

    /// Where to resume each agent's WatchRuns stream (incarnation, last sequence consumed), as a
    /// restarted coordinator stored them; used when those agents are added.
    pub fn resume_from(&self, cursors: impl IntoIterator<Item = (String, String, u64)>) {
        let mut state = self.inner.lock();
        for (agent, incarnation, sequence) in cursors {
            state.cursors.insert(agent, (incarnation, sequence));
        }
    }

    /// Adds an agent and starts monitoring it. Adding the same name again updates its labels
    /// override; a new address replaces its channel and monitor. A registering agent cannot take
    /// over the address of an agent configured in coordinator.toml. Call within a Tokio runtime.
    pub fn add_agent(
        &self,
        name: &str,
        address: &str,
        labels_override: Option<Vec<String>>,
        source: AgentSource,
    ) -> Result<(), RegistryError> {
        if !is_valid_name(name) {
            return Err(RegistryError::InvalidName(name.to_string()));
        }
        if let Some(label) = labels_override.iter().flatten().find(|l| !is_valid_name(l)) {
            return Err(RegistryError::InvalidLabel { agent: name.to_string(), label: label.clone() });
        }
        let transport = switchyard_settings::Transport::of(&self.inner.tls);
        let url = agent_url(address, transport)
            .map_err(|message| RegistryError::InvalidAddress { agent: name.to_string(), message })?;
        let mut state = self.inner.lock();
        if let Some(entry) = state.agents.get_mut(name) {
            if entry.source == AgentSource::Config && source == AgentSource::Registered {
                if entry.url != url {
                    return Err(RegistryError::Conflict {
                        agent: name.to_string(),
                        configured: entry.address.clone(),
                        address: address.to_string(),
                    });
                }
                // coordinator.toml keeps its say over the labels.
                entry.probe.notify_one();
                return Ok(());
            }
            entry.source = source;
            entry.labels_override = labels_override.clone();
            entry.address = address.to_string();
            if entry.url == url {
                entry.probe.notify_one();
                drop(state);
                self.inner.notify_changed();
                return Ok(());
            }
        }
        let channel = self.channel(name, &url)?;
        let generation = state.next_generation;
        state.next_generation += 1;
        let entry = match state.agents.get_mut(name) {
            Some(entry) => {
                tracing::info!(agent = %name, address, "agent moved to a new address");
                entry.stop.cancel();
                entry.stop = self.inner.shutdown.child_token();
                entry.probe = Arc::new(Notify::new());
                entry.url = url;
                entry.channel = channel;
                entry.generation = generation;
                entry.mark_suspect("the agent moved to a new address");
                entry
            }
            None => {
                tracing::info!(agent = %name, address, source = source.as_str(), "agent added");
                let mut entry = AgentEntry::new(name, address, url, channel, generation);
                if let Some((incarnation, sequence)) = state.cursors.remove(name) {
                    entry.incarnation = incarnation;
                    entry.last_sequence = sequence;
                }
                // A restarted coordinator still owes these stops and still fences these keys.
                if let Some(fences) = state.stored_fences.remove(name) {
                    entry.pending_stops = fences.stops;
                    entry.abandoned_keys = fences.abandoned_keys;
                }
                entry.stop = self.inner.shutdown.child_token();
                entry.labels_override = labels_override.clone();
                entry.source = source;
                state.agents.entry(name.to_string()).or_insert(entry)
            }
        };
        let monitor = monitor::Monitor::new(&self.inner, entry);
        drop(state);
        tokio::spawn(monitor.run());
        self.inner.notify_changed();
        Ok(())
    }

    /// Stops monitoring an agent and forgets it; waiters of its runs are lost.
    pub fn remove_agent(&self, name: &str) -> Result<(), RegistryError> {
        let mut entry =
            self.inner.lock().agents.remove(name).ok_or_else(|| RegistryError::UnknownAgent(name.to_string()))?;
        entry.stop.cancel();
        entry.lose_waiters(&format!("agent \"{name}\" was removed from the coordinator"));
        tracing::info!(agent = %name, "agent removed");
        self.inner.notify_changed();
        Ok(())
    }

    /// Every agent, sorted by name.
    pub fn agents(&self) -> Vec<AgentSnapshot> {
        self.inner.lock().agents.values().map(AgentEntry::snapshot).collect()
    }

    pub fn agent(&self, name: &str) -> Option<AgentSnapshot> {
        self.inner.lock().agents.get(name).map(AgentEntry::snapshot)
    }

    /// A client on the agent's one long-lived channel (cheap: clones share the connection).
    pub fn client(&self, name: &str) -> Option<AgentClient<Channel>> {
        self.inner.lock().agents.get(name).map(|entry| AgentClient::new(entry.channel.clone()))
    }

    /// Reserves a slot on the best agent of `pool` (up, not draining, not in `exclude`, with a
    /// free slot) by the configured strategy; `None` when every slot is taken or no agent fits.
    pub fn place(&self, pool: &str, exclude: &HashSet<String>) -> Option<(String, Reservation)> {
        let settings = &self.inner.settings;
        let now = Instant::now();
        let mut state = self.inner.lock();
        let candidates: Vec<placement::Candidate> =
            state.agents.values().map(|entry| entry.candidate(now, settings.heartbeat_interval)).collect();
        let mut cursor = state.round_robin_cursor;
        let order = placement::order(settings.strategy, &candidates, pool, exclude, &mut cursor);
        state.round_robin_cursor = cursor;
        let name = order.into_iter().next()?;
        let entry = state.agents.get_mut(&name)?;
        entry.inflight += 1;
        let reservation = Reservation::new(self.inner.clone(), &name, entry.epoch);
        drop(state);
        self.inner.telemetry.placement(settings.strategy.as_str());
        Some((name, reservation))
    }

    /// Reserves a slot on a fixed agent.
    pub fn reserve(&self, agent: &str) -> Result<Reservation, PlaceError> {
        let mut state = self.inner.lock();
        let entry = state.agents.get_mut(agent).ok_or_else(|| PlaceError::Unknown { agent: agent.to_string() })?;
        match entry.state() {
            AgentState::Up => {}
            AgentState::Draining => return Err(PlaceError::Draining { agent: agent.to_string() }),
            state @ (AgentState::Down | AgentState::Suspect) => {
                let reason = entry.last_error.clone().unwrap_or_else(|| "it has not answered yet".to_string());
                return Err(PlaceError::Down { agent: agent.to_string(), state, reason });
            }
        }
        let load = entry.load();
        if load >= entry.slots {
            return Err(PlaceError::Full { agent: agent.to_string(), load, slots: entry.slots });
        }
        entry.inflight += 1;
        Ok(Reservation::new(self.inner.clone(), agent, entry.epoch))
    }

    /// Resolves when capacity may have freed or an agent's state changed (a run finished, an
    /// agent came up, a reservation was dropped). The future registers when this is called, not
    /// when it is first polled, so call it before checking and await it after:
    /// `let changed = registry.wait_changed(); if let Some(p) = registry.place(..) { .. } changed.await;`
    pub fn wait_changed(&self) -> impl Future<Output = ()> + Send + 'static {
        self.inner.changed.clone().notified_owned()
    }

    /// A call to `agent` failed to connect: it is suspect until a probe (now) decides; refused
    /// means down at once, no answer within `down_after` means down.
    pub fn report_unreachable(&self, agent: &str, error: &str) {
        let mut state = self.inner.lock();
        let Some(entry) = state.agents.get_mut(agent) else { return };
        entry.mark_suspect(error);
        entry.probe.notify_one();
        drop(state);
        self.inner.notify_changed();
    }

    /// Waits for the outcome of `run_id` on `agent`: `Finished` when its FINISHED event arrives
    /// (or already arrived), `Lost` when the agent is (or is declared) down, `Canceled` when
    /// `cancel` fires.
    pub async fn wait_for_outcome(&self, agent: &str, run_id: &str, cancel: &CancellationToken) -> WaitOutcome {
        let receiver = {
            let mut state = self.inner.lock();
            if let Some(outcome) = state.outcomes.get(agent, run_id) {
                return WaitOutcome::Finished(outcome.clone());
            }
            let Some(entry) = state.agents.get_mut(agent) else {
                let reason = format!("no agent named \"{agent}\" is known to the coordinator");
                return WaitOutcome::Lost { agent: agent.to_string(), reason };
            };
            if entry.liveness == Liveness::Down {
                return WaitOutcome::Lost { agent: agent.to_string(), reason: entry.down_reason() };
            }
            let (sender, receiver) = oneshot::channel();
            entry.waiters.entry(run_id.to_string()).or_default().push(sender);
            receiver
        };
        let _forget = ForgetWaiter { inner: &self.inner, agent, run_id };
        tokio::select! {
            outcome = receiver => outcome.unwrap_or_else(|_| WaitOutcome::Lost {
                agent: agent.to_string(),
                reason: format!("agent \"{agent}\" was removed or moved while its run was waited for"),
            }),
            _ = cancel.cancelled() => WaitOutcome::Canceled,
            _ = self.inner.shutdown.cancelled() => WaitOutcome::Canceled,
        }
    }

    /// Every FINISHED event seen from now on (a receiver that falls far behind lags).
    pub fn outcomes(&self) -> broadcast::Receiver<RunOutcome> {
        self.inner.finished.subscribe()
    }

    /// Sets or clears the coordinator's drain of `agent`; returns its state after.
    pub fn set_draining(&self, agent: &str, draining: bool) -> Result<AgentState, RegistryError> {
        let mut state = self.inner.lock();
        let entry = state.agents.get_mut(agent).ok_or_else(|| RegistryError::UnknownAgent(agent.to_string()))?;
        if entry.operator_draining != draining {
            tracing::info!(agent, draining, "agent drain changed");
        }
        entry.operator_draining = draining;
        let after = entry.state();
        drop(state);
        self.inner.notify_changed();
        Ok(after)
    }

    /// The fencing epoch of `agent` (0 for an unknown agent): 1 at first, one more each time it
    /// comes back after being declared down.
    pub fn epoch(&self, agent: &str) -> u64 {
        self.inner.lock().agents.get(agent).map_or(0, |entry| entry.epoch)
    }

    /// The incarnation and sequence of the last event consumed from `agent` (`("", 0)` before
    /// any).
    pub fn consumed(&self, agent: &str) -> (String, u64) {
        self.inner
            .lock()
            .agents
            .get(agent)
            .map_or_else(|| (String::new(), 0), |entry| (entry.incarnation.clone(), entry.last_sequence))
    }

    /// The agent's one channel: connected on first use and re-connected by tonic after a
    /// failure; HTTP/2 keepalive notices a dead peer even while no call is running.
    fn channel(&self, name: &str, url: &str) -> Result<Channel, RegistryError> {
        let settings = &self.inner.settings;
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| RegistryError::InvalidAddress { agent: name.to_string(), message: e.to_string() })?;
        // No HTTP/2 keepalive: GetLoad every heartbeat_interval, with a deadline of down_after,
        // already proves the connection and the agent; pings on top doubled the idle cost
        // (the `scale` bench: 1,000 agents).
        let endpoint = endpoint.connect_timeout(settings.down_after).tcp_nodelay(true);
        Ok(switchyard_tls::connect_lazy(endpoint, self.inner.tls.as_ref()))
    }
}

/// Drops a waiter's sender when its wait ends without an outcome (canceled).
struct ForgetWaiter<'a> {
    inner: &'a Inner,
    agent: &'a str,
    run_id: &'a str,
}

impl Drop for ForgetWaiter<'_> {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        let Some(entry) = state.agents.get_mut(self.agent) else { return };
        if let Some(waiters) = entry.waiters.get_mut(self.run_id) {
            waiters.retain(|waiter| !waiter.is_closed());
            if waiters.is_empty() {
                entry.waiters.remove(self.run_id);
            }
        }
    }
}
