//! Questions placement asks about pools as a whole, answered from agent snapshots.

use std::collections::HashSet;

use super::{AgentState, Registry};

impl Registry {
    /// True when some agent (in any state) has the label.
    pub fn pool_exists(&self, pool: &str) -> bool {
        self.agents().iter().any(|a| a.labels.iter().any(|l| l == pool))
    }

    /// True when an agent of the pool that is not excluded is up (full or not).
    pub fn pool_has_candidates(&self, pool: &str, exclude: &HashSet<String>) -> bool {
        self.agents()
            .iter()
            .any(|a| a.state == AgentState::Up && !exclude.contains(&a.name) && a.labels.iter().any(|l| l == pool))
    }

    /// True unless the agent is unknown or declared down.
    pub fn is_up(&self, agent: &str) -> bool {
        self.agent(agent).is_some_and(|a| a.state != AgentState::Down)
    }
}
