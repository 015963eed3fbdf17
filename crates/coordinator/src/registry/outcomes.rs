//! A bounded cache of recently finished runs, so a waiter that asks after the FINISHED event
//! arrived still gets the outcome.

use std::collections::{HashMap, VecDeque};

use super::RunOutcome;

/// How many finished runs the registry remembers (per registry, over all agents). A waiter asks
/// right after its start was accepted, so the oldest entries are long past any waiter; 20,000
/// outcomes (about 0.5 KiB each) bound the cache near 10 MiB. (100,000 held about 50 MiB for
/// good after a large fan-out: the `scale` bench.)
pub const OUTCOME_CACHE_CAPACITY: usize = 20_000;

/// Outcomes keyed by (agent, run id), the oldest evicted first.
#[derive(Debug)]
pub(super) struct OutcomeCache {
    outcomes: HashMap<(String, String), RunOutcome>,
    order: VecDeque<(String, String)>,
    capacity: usize,
}

impl OutcomeCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self { outcomes: HashMap::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    pub(super) fn get(&self, agent: &str, run_id: &str) -> Option<&RunOutcome> {
        self.outcomes.get(&(agent.to_string(), run_id.to_string()))
    }

    pub(super) fn contains(&self, agent: &str, run_id: &str) -> bool {
        self.get(agent, run_id).is_some()
    }

    /// Remembers `outcome` (a repeated run id replaces the earlier outcome in place).
    pub(super) fn insert(&mut self, outcome: RunOutcome) {
        let key = (outcome.agent.clone(), outcome.run_id.clone());
        if self.outcomes.insert(key.clone(), outcome).is_none() {
            self.order.push_back(key);
            while self.order.len() > self.capacity {
                if let Some(oldest) = self.order.pop_front() {
                    self.outcomes.remove(&oldest);
                }
            }
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.outcomes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(agent: &str, run_id: &str) -> RunOutcome {
        RunOutcome {
            agent: agent.into(),
            run_id: run_id.into(),
            job: "j".into(),
            status: switchyard_proto::RunStatus::Succeeded,
            message: String::new(),
            duration_ms: 1,
            execution_id: String::new(),
            task_path: String::new(),
            attempt: 0,
            idempotency_key: String::new(),
            incarnation: String::new(),
            sequence: 0,
        }
    }

    #[test]
    fn the_oldest_outcomes_are_evicted_first() {
        let mut cache = OutcomeCache::new(2);
        cache.insert(outcome("a", "1"));
        cache.insert(outcome("b", "1"));
        cache.insert(outcome("a", "1"));
        assert_eq!(cache.len(), 2, "a repeated run does not count twice");
        cache.insert(outcome("a", "2"));
        assert!(!cache.contains("a", "1"));
        assert!(cache.contains("b", "1") && cache.contains("a", "2"));
        assert!(cache.get("c", "1").is_none());
    }
}
