//! What the registry knows about each agent, and the transitions between its states. Everything
//! here runs under the registry's one std mutex, briefly, and never awaits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_proto::{GetLoadResponse, RunEvent, RunEventKind, RunStatus};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::outcomes::OutcomeCache;
use super::reconcile::{StopReason, Stopped, StoppedRun};
use super::{AgentSnapshot, AgentSource, AgentState, RunOutcome, WaitOutcome};
use crate::placement::{self, Candidate};

/// Whether the agent answers, apart from draining (which only stops placements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Liveness {
    Up,
    Suspect,
    Down,
}

/// All the registry's mutable state, behind one mutex.
#[derive(Debug)]
pub(super) struct State {
    pub(super) agents: BTreeMap<String, AgentEntry>,
    pub(super) round_robin_cursor: usize,
    pub(super) outcomes: OutcomeCache,
    pub(super) next_generation: u64,
    /// Stored stream positions for agents not added yet (a restarted coordinator's).
    pub(super) cursors: std::collections::HashMap<String, (String, u64)>,
    /// Stored fencing facts for agents not added yet (a restarted coordinator's).
    pub(super) stored_fences: HashMap<String, StoredFences>,
}

/// What a restarted coordinator still owes one agent.
#[derive(Debug, Default)]
pub(super) struct StoredFences {
    pub(super) stops: Vec<(String, StopReason)>,
    pub(super) abandoned_keys: HashSet<String>,
}

/// One agent: its connection, liveness, load and the runs known to be active there.
#[derive(Debug)]
pub(super) struct AgentEntry {
    pub(super) name: String,
    /// As given (coordinator.toml or RegisterAgent).
    pub(super) address: String,
    /// `http://host:port`.
    pub(super) url: String,
    pub(super) labels_override: Option<Vec<String>>,
    pub(super) source: AgentSource,
    /// The one long-lived channel every call to this agent shares.
    pub(super) channel: Channel,
    /// Which monitor owns the entry: a re-registration at another address starts a new one,
    /// and the old one must not touch the entry any more.
    pub(super) generation: u64,
    pub(super) stop: CancellationToken,
    /// Wakes the monitor for a probe now.
    pub(super) probe: Arc<Notify>,
    pub(super) liveness: Liveness,
    /// Set with `set_draining`.
    pub(super) operator_draining: bool,
    /// Reported by the agent (it is shutting down or was told to drain).
    pub(super) reported_draining: bool,
    pub(super) ever_up: bool,
    /// When it came back after being down: it gets work gradually from then on.
    pub(super) recovered_at: Option<Instant>,
    pub(super) reported_labels: Vec<String>,
    pub(super) slots: u32,
    pub(super) running: u32,
    pub(super) queued: u32,
    /// Running and queued at the last GetLoad, less the runs known to have finished since.
    pub(super) reported_active: u32,
    /// When runs known to be active finished, since the last GetLoad was sent.
    pub(super) finished_since_load: Vec<Instant>,
    /// Reservations not yet confirmed or dropped.
    pub(super) inflight: u32,
    /// Runs known to be active there (from its events and confirmed reservations), with when
    /// they became known.
    pub(super) active: HashMap<String, Instant>,
    /// The incarnation and sequence of the last event consumed.
    pub(super) incarnation: String,
    pub(super) last_sequence: u64,
    /// The incarnation its last GetLoad reported.
    pub(super) agent_incarnation: String,
    /// The last outbox sequence its last GetLoad reported.
    pub(super) reported_sequence: u64,
    pub(super) epoch: u64,
    pub(super) reported_epoch: u64,
    pub(super) version: String,
    pub(super) last_seen: Option<Instant>,
    /// The last time anything arrived from it (a GetLoad answer or an event), or when
    /// monitoring started.
    pub(super) last_heard: Instant,
    pub(super) last_error: Option<String>,
    pub(super) waiters: HashMap<String, Vec<oneshot::Sender<WaitOutcome>>>,
    /// Runs to stop once the agent answers again (superseded attempts, missed cancels).
    pub(super) pending_stops: Vec<(String, super::reconcile::StopReason)>,
    /// Keys of starts given up while in flight to it when it was declared down: a run it
    /// accepts under one of them (when it resumes) is a superseded attempt, stopped at once.
    pub(super) abandoned_keys: HashSet<String>,
    /// Notified (all waiters) each time it is declared down.
    pub(super) down_signal: Arc<Notify>,
}

impl AgentEntry {
    pub(super) fn new(name: &str, address: &str, url: String, channel: Channel, generation: u64) -> Self {
        Self {
            name: name.to_string(),
            address: address.to_string(),
            url,
            labels_override: None,
            source: AgentSource::Config,
            channel,
            generation,
            stop: CancellationToken::new(),
            probe: Arc::new(Notify::new()),
            liveness: Liveness::Suspect,
            operator_draining: false,
            reported_draining: false,
            ever_up: false,
            recovered_at: None,
            reported_labels: Vec::new(),
            slots: 0,
            running: 0,
            queued: 0,
            reported_active: 0,
            finished_since_load: Vec::new(),
            inflight: 0,
            active: HashMap::new(),
            incarnation: String::new(),
            last_sequence: 0,
            agent_incarnation: String::new(),
            reported_sequence: 0,
            epoch: 1,
            reported_epoch: 0,
            version: String::new(),
            last_seen: None,
            last_heard: Instant::now(),
            last_error: None,
            waiters: HashMap::new(),
            pending_stops: Vec::new(),
            abandoned_keys: HashSet::new(),
            down_signal: Arc::new(Notify::new()),
        }
    }

    pub(super) fn state(&self) -> AgentState {
        match self.liveness {
            Liveness::Up if self.operator_draining || self.reported_draining => AgentState::Draining,
            Liveness::Up => AgentState::Up,
            Liveness::Suspect => AgentState::Suspect,
            Liveness::Down => AgentState::Down,
        }
    }

    pub(super) fn labels(&self) -> &[String] {
        self.labels_override.as_deref().unwrap_or(&self.reported_labels)
    }

    /// Runs there now as far as the coordinator knows, plus starts in flight. The events keep
    /// `active` exact while the stream is open; the last GetLoad covers runs whose events have
    /// not arrived yet.
    pub(super) fn load(&self) -> u32 {
        let active = u32::try_from(self.active.len()).unwrap_or(u32::MAX);
        self.inflight.saturating_add(active.max(self.reported_active))
    }

    pub(super) fn slow_start_cap(&self, now: Instant, step: Duration) -> Option<u32> {
        let since = now.saturating_duration_since(self.recovered_at?);
        placement::slow_start_cap(self.slots, since, step)
    }

    pub(super) fn candidate(&self, now: Instant, slow_start_step: Duration) -> Candidate {
        Candidate {
            name: self.name.clone(),
            labels: self.labels().to_vec(),
            slots: self.slots,
            load: self.load(),
            up: self.state() == AgentState::Up,
            slow_start_cap: self.slow_start_cap(now, slow_start_step),
        }
    }

    pub(super) fn snapshot(&self) -> AgentSnapshot {
        AgentSnapshot {
            name: self.name.clone(),
            address: self.address.clone(),
            state: self.state(),
            labels: self.labels().to_vec(),
            running: self.running,
            queued: self.queued,
            slots: self.slots,
            inflight: self.inflight,
            incarnation: if self.agent_incarnation.is_empty() {
                self.incarnation.clone()
            } else {
                self.agent_incarnation.clone()
            },
            epoch: self.epoch,
            source: self.source,
            version: self.version.clone(),
            last_seen: self.last_seen,
            last_error: self.last_error.clone(),
            outbox_lag: self.outbox_lag(),
        }
    }

    /// Events the agent has written to its outbox that this coordinator has not consumed yet:
    /// all of them when it consumed nothing of the agent's current incarnation.
    fn outbox_lag(&self) -> u64 {
        if self.agent_incarnation.is_empty() || self.agent_incarnation == self.incarnation {
            self.reported_sequence.saturating_sub(self.last_sequence)
        } else {
            self.reported_sequence
        }
    }

    /// Why waiters of its runs are lost.
    pub(super) fn down_reason(&self) -> String {
        match &self.last_error {
            Some(error) => format!("agent \"{}\" is down: {error}", self.name),
            None => format!("agent \"{}\" is down", self.name),
        }
    }

    /// A GetLoad answer sent at `sent` arrived. Returns whether capacity may have grown.
    pub(super) fn apply_load(&mut self, load: GetLoadResponse, sent: Instant, now: Instant) -> bool {
        let before = (self.load(), self.slots, self.state());
        self.reported_labels = load.labels;
        self.slots = load.slots;
        self.running = load.running;
        self.queued = load.queued;
        let counted = load.running.saturating_add(load.queued);
        // A run that finished after the GetLoad was sent may be in its count: leaving it there
        // would keep a freed slot taken until the next heartbeat.
        let finished_since = self.finished_since_load.iter().filter(|finished| **finished >= sent).count();
        self.finished_since_load.clear();
        self.reported_active = counted.saturating_sub(u32::try_from(finished_since).unwrap_or(u32::MAX));
        self.version = load.version;
        self.agent_incarnation = load.incarnation;
        self.reported_sequence = load.last_sequence;
        self.reported_draining = load.draining;
        self.reported_epoch = load.epoch;
        self.last_seen = Some(now);
        self.last_heard = now;
        self.forget_runs_no_longer_counted(sent, counted);
        let after = (self.load(), self.slots, self.state());
        after.0 < before.0 || after.1 > before.1 || after.2 != before.2 || self.recovered_at.is_some()
    }

    /// Runs known before the GetLoad was sent are all counted by it while they are active:
    /// when more are known than it counts, the surplus has ended (its FINISHED is late or was
    /// never seen), so the oldest are forgotten.
    fn forget_runs_no_longer_counted(&mut self, sent: Instant, counted: u32) {
        let mut known_before: Vec<(Instant, &String)> =
            self.active.iter().filter(|(_, known)| **known < sent).map(|(id, known)| (*known, id)).collect();
        let counted = counted as usize;
        if known_before.len() <= counted {
            return;
        }
        known_before.sort();
        let surplus: Vec<String> =
            known_before[..known_before.len() - counted].iter().map(|(_, id)| (*id).clone()).collect();
        for run_id in surplus {
            self.active.remove(&run_id);
        }
    }

    /// GetLoad answered and the event stream is open. Returns whether it was not up before.
    pub(super) fn mark_up(&mut self, now: Instant) -> bool {
        if self.liveness == Liveness::Up {
            return false;
        }
        let recovered = self.liveness == Liveness::Down && self.ever_up;
        if recovered {
            // Starts fenced with the old epoch are refused from now on.
            self.epoch += 1;
            self.recovered_at = Some(now);
        }
        // A restarted coordinator adopts the epoch the agent has seen, or every start would be
        // refused as stale.
        self.epoch = self.epoch.max(self.reported_epoch);
        self.liveness = Liveness::Up;
        self.ever_up = true;
        self.last_error = None;
        tracing::info!(agent = %self.name, epoch = self.epoch, recovered, "agent up");
        true
    }

    /// In doubt (a broken stream, a failed call): no placements until a probe answers.
    pub(super) fn mark_suspect(&mut self, reason: &str) -> bool {
        self.last_error = Some(reason.to_string());
        if self.liveness != Liveness::Up {
            return false;
        }
        self.liveness = Liveness::Suspect;
        tracing::warn!(agent = %self.name, reason, "agent suspect");
        true
    }

    /// Declared down: waiters of its runs are lost. Returns whether it was not down before.
    pub(super) fn mark_down(&mut self, reason: &str) -> bool {
        self.last_error = Some(reason.to_string());
        if self.liveness == Liveness::Down {
            return false;
        }
        self.liveness = Liveness::Down;
        self.recovered_at = None;
        self.finished_since_load.clear();
        tracing::warn!(agent = %self.name, reason, "agent down");
        self.down_signal.notify_waiters();
        self.lose_waiters(&self.down_reason());
        true
    }

    pub(super) fn lose_waiters(&mut self, reason: &str) {
        for (_, waiters) in self.waiters.drain() {
            for waiter in waiters {
                let _ = waiter.send(WaitOutcome::Lost { agent: self.name.clone(), reason: reason.to_string() });
            }
        }
    }
}

impl State {
    pub(super) fn entry_mut(&mut self, name: &str, generation: u64) -> Option<&mut AgentEntry> {
        self.agents.get_mut(name).filter(|entry| entry.generation == generation)
    }

    /// Whether `event` comes from a new incarnation of `name` (its data dir was recreated).
    pub(super) fn is_new_incarnation(&self, name: &str, event: &RunEvent) -> bool {
        self.agents
            .get(name)
            .is_some_and(|entry| !entry.incarnation.is_empty() && entry.incarnation != event.incarnation)
    }

    /// Consumes one event of `name`'s stream. Returns the outcome of a FINISHED run.
    pub(super) fn consume(&mut self, name: &str, generation: u64, event: RunEvent, now: Instant) -> Consumed {
        let State { agents, outcomes, .. } = self;
        let Some(entry) = agents.get_mut(name).filter(|entry| entry.generation == generation) else {
            return Consumed::Stale;
        };
        entry.last_heard = now;
        if event.incarnation != entry.incarnation {
            if !entry.incarnation.is_empty() {
                // Its data dir was recreated: sequences restarted and its old runs are gone.
                tracing::warn!(
                    agent = %name, old = %entry.incarnation, new = %event.incarnation,
                    "agent has a new incarnation; forgetting its active runs"
                );
                entry.active.clear();
                // Requests it held died with its old data: none can be accepted any more.
                entry.abandoned_keys.clear();
            }
            entry.incarnation = event.incarnation.clone();
            entry.last_sequence = 0;
        } else if event.sequence <= entry.last_sequence {
            return Consumed::Other;
        }
        entry.last_sequence = event.sequence;
        match RunEventKind::try_from(event.kind).unwrap_or(RunEventKind::Unspecified) {
            RunEventKind::Accepted | RunEventKind::Started => {
                if !event.idempotency_key.is_empty() && entry.abandoned_keys.remove(&event.idempotency_key) {
                    entry.pending_stops.push((event.run_id.clone(), StopReason::Superseded));
                    return Consumed::Superseded(Box::new(Stopped {
                        agent: name.to_string(),
                        run_id: event.run_id,
                        reason: StopReason::Superseded,
                        run: Some(StoppedRun {
                            execution_id: event.execution_id,
                            task_path: event.task_path,
                            attempt: event.attempt,
                            job: event.job,
                            idempotency_key: event.idempotency_key,
                        }),
                    }));
                }
                if !outcomes.contains(name, &event.run_id) {
                    entry.active.entry(event.run_id).or_insert(now);
                }
                Consumed::Other
            }
            RunEventKind::Finished => {
                if entry.active.remove(&event.run_id).is_some() {
                    entry.reported_active = entry.reported_active.saturating_sub(1);
                    entry.finished_since_load.push(now);
                }
                let outcome = RunOutcome {
                    agent: name.to_string(),
                    run_id: event.run_id,
                    job: event.job,
                    status: RunStatus::try_from(event.status).unwrap_or(RunStatus::Unspecified),
                    message: event.message,
                    duration_ms: event.duration_ms,
                    execution_id: event.execution_id,
                    task_path: event.task_path,
                    attempt: event.attempt,
                    idempotency_key: event.idempotency_key,
                    incarnation: event.incarnation.clone(),
                    sequence: event.sequence,
                };
                for waiter in entry.waiters.remove(&outcome.run_id).into_iter().flatten() {
                    let _ = waiter.send(WaitOutcome::Finished(outcome.clone()));
                }
                outcomes.insert(outcome.clone());
                Consumed::Finished(Box::new(outcome))
            }
            _ => Consumed::Other,
        }
    }
}

/// What consuming an event did.
pub(super) enum Consumed {
    Finished(Box<RunOutcome>),
    /// A run accepted under an abandoned key: to be stopped, and recorded superseded.
    Superseded(Box<Stopped>),
    Other,
    /// The agent was removed or re-registered elsewhere: its monitor ends.
    Stale,
}
