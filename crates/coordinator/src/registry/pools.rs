//! Questions placement asks about pools as a whole, answered under the registry's lock without
//! copying every agent (each start asks them: a snapshot of 1,000 agents per start cost more
//! than the start).

use std::collections::HashSet;

use super::{AgentState, Registry};

impl Registry {
    /// True when some agent (in any state) has the label.
    pub fn pool_exists(&self, pool: &str) -> bool {
        self.inner.lock().agents.values().any(|a| a.labels().iter().any(|l| l == pool))
    }

    /// True when an agent of the pool that is not excluded is up (full or not).
    pub fn pool_has_candidates(&self, pool: &str, exclude: &HashSet<String>) -> bool {
        self.inner
            .lock()
            .agents
            .values()
            .any(|a| a.state() == AgentState::Up && !exclude.contains(&a.name) && a.labels().iter().any(|l| l == pool))
    }

    /// The names of the agents with the label, in any state.
    pub fn pool_members(&self, pool: &str) -> Vec<String> {
        self.inner
            .lock()
            .agents
            .values()
            .filter(|a| a.labels().iter().any(|l| l == pool))
            .map(|a| a.name.clone())
            .collect()
    }

    /// True unless the agent is unknown or declared down.
    pub fn is_up(&self, agent: &str) -> bool {
        self.inner.lock().agents.get(agent).is_some_and(|a| a.state() != AgentState::Down)
    }
}
