//! A slot held on an agent from placement until the agent answers the start.

use std::sync::Arc;
use std::time::Instant;

use super::Inner;
use super::state::State;

/// One slot held on an agent between placement and the StartJob answer. Dropping it releases
/// the slot; [`Reservation::confirm`] turns it into a known active run.
#[derive(Debug)]
pub struct Reservation {
    inner: Arc<Inner>,
    agent: String,
    epoch: u64,
    held: bool,
}

impl Reservation {
    pub(super) fn new(inner: Arc<Inner>, agent: &str, epoch: u64) -> Self {
        Self { inner, agent: agent.to_string(), epoch, held: true }
    }

    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The agent's fencing epoch when the slot was reserved: the StartJob carries it.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The agent accepted the start as `run_id`: the slot now counts as that run until its
    /// FINISHED event (or a GetLoad that no longer counts it).
    pub fn confirm(mut self, run_id: &str) {
        self.held = false;
        let mut guard = self.inner.lock();
        let State { agents, outcomes, .. } = &mut *guard;
        let Some(entry) = agents.get_mut(&self.agent) else { return };
        entry.inflight = entry.inflight.saturating_sub(1);
        if !outcomes.contains(&self.agent, run_id) {
            entry.active.entry(run_id.to_string()).or_insert_with(Instant::now);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.held {
            return;
        }
        if let Some(entry) = self.inner.lock().agents.get_mut(&self.agent) {
            entry.inflight = entry.inflight.saturating_sub(1);
        }
        self.inner.notify_changed();
    }
}
