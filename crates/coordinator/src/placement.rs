//! Placement: which agents of a pool may take the next job start, best first. Pure functions over
//! a snapshot of the agents; the registry calls them under its lock and reserves the first.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

/// How a `pool` picks among its eligible agents (`placement` in coordinator.toml).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlacementStrategy {
    /// The agent with the smallest share of its slots in use.
    #[default]
    LeastLoaded,
    /// Each agent in turn.
    RoundRobin,
}

impl PlacementStrategy {
    /// The name used in coordinator.toml: `least_loaded` or `round_robin`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PlacementStrategy::LeastLoaded => "least_loaded",
            PlacementStrategy::RoundRobin => "round_robin",
        }
    }
}

impl std::fmt::Display for PlacementStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One agent as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub labels: Vec<String>,
    pub slots: u32,
    /// Runs running and queued there, plus starts reserved but not yet confirmed.
    pub load: u32,
    /// Up and not draining.
    pub up: bool,
    /// While an agent that came back recovers (slow start): how many runs it may hold for now.
    pub slow_start_cap: Option<u32>,
}

impl Candidate {
    /// How many runs it may hold now: its slots, or less during slow start.
    pub fn capacity(&self) -> u32 {
        self.slow_start_cap.map_or(self.slots, |cap| cap.min(self.slots))
    }

    /// Whether it may take a start for `pool` now.
    pub fn is_eligible(&self, pool: &str, exclude: &HashSet<String>) -> bool {
        self.up
            && self.load < self.capacity()
            && self.labels.iter().any(|label| label == pool)
            && !exclude.contains(&self.name)
    }
}

/// The agents of `pool` that may take a start now, best first: up, labelled `pool`, not in
/// `exclude`, with a free slot.
///
/// `least_loaded` orders by the share of slots in use, then by free slots (more first), then in
/// turn: ties go to the first agent at or after the cursor, so equally loaded agents (all idle,
/// say) share the starts instead of the first by name taking them all. `round_robin` walks
/// `candidates` in their given order from the cursor. Both take `round_robin_cursor` (an index
/// into `candidates`) and move it past the first agent returned, so the next call starts at the
/// agent after it; callers pass the candidates in a stable order (by name).
pub fn order(
    strategy: PlacementStrategy,
    candidates: &[Candidate],
    pool: &str,
    exclude: &HashSet<String>,
    round_robin_cursor: &mut usize,
) -> Vec<String> {
    match strategy {
        PlacementStrategy::LeastLoaded => {
            let n = candidates.len().max(1);
            let start = *round_robin_cursor % n;
            let turn = |index: usize| (index + n - start) % n;
            let mut eligible: Vec<(usize, &Candidate)> =
                candidates.iter().enumerate().filter(|(_, c)| c.is_eligible(pool, exclude)).collect();
            eligible.sort_by(|(i, a), (j, b)| {
                by_share_of_slots(a, b)
                    .then_with(|| free_slots(b).cmp(&free_slots(a)))
                    .then_with(|| turn(*i).cmp(&turn(*j)))
            });
            if let Some((index, _)) = eligible.first() {
                *round_robin_cursor = (index + 1) % n;
            }
            eligible.into_iter().map(|(_, c)| c.name.clone()).collect()
        }
        PlacementStrategy::RoundRobin => {
            if candidates.is_empty() {
                return Vec::new();
            }
            let start = *round_robin_cursor % candidates.len();
            let rotated = candidates.iter().enumerate().cycle().skip(start).take(candidates.len());
            let eligible: Vec<(usize, &Candidate)> =
                rotated.filter(|(_, candidate)| candidate.is_eligible(pool, exclude)).collect();
            if let Some((index, _)) = eligible.first() {
                *round_robin_cursor = (index + 1) % candidates.len();
            }
            eligible.into_iter().map(|(_, c)| c.name.clone()).collect()
        }
    }
}

/// The slow-start cap of an agent that came back `since_recovery` ago: 1 run at first, doubling
/// every `step`, `None` once the cap reaches its slots (it then takes work like any other).
pub fn slow_start_cap(slots: u32, since_recovery: Duration, step: Duration) -> Option<u32> {
    let steps = if step.is_zero() { u32::MAX } else { (since_recovery.as_nanos() / step.as_nanos()) as u32 };
    let cap = 1u32.checked_shl(steps.min(31)).unwrap_or(u32::MAX);
    (cap < slots).then_some(cap)
}

/// `a.load / a.slots` against `b.load / b.slots`, exactly (cross-multiplied); an agent without
/// slots counts as full.
fn by_share_of_slots(a: &Candidate, b: &Candidate) -> Ordering {
    let share = |c: &Candidate, other: &Candidate| u64::from(c.load) * u64::from(other.slots.max(1));
    share(a, b).cmp(&share(b, a))
}

fn free_slots(c: &Candidate) -> u32 {
    c.capacity().saturating_sub(c.load)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, slots: u32, load: u32) -> Candidate {
        Candidate { name: name.into(), labels: vec!["etl".into()], slots, load, up: true, slow_start_cap: None }
    }

    fn least_loaded(candidates: &[Candidate]) -> Vec<String> {
        order(PlacementStrategy::LeastLoaded, candidates, "etl", &HashSet::new(), &mut 0)
    }

    #[test]
    fn least_loaded_prefers_the_smallest_share_of_slots() {
        let candidates = [agent("a", 4, 2), agent("b", 2, 0), agent("c", 8, 2)];
        assert_eq!(least_loaded(&candidates), ["b", "c", "a"]);
    }

    #[test]
    fn least_loaded_spreads_successive_starts() {
        let mut candidates = vec![agent("a", 2, 0), agent("b", 2, 0), agent("c", 2, 0)];
        let mut placed = Vec::new();
        while let Some(first) = least_loaded(&candidates).first().cloned() {
            candidates.iter_mut().find(|c| c.name == first).expect("placed on a candidate").load += 1;
            placed.push(first);
        }
        assert_eq!(placed, ["a", "b", "c", "a", "b", "c"], "spread first, and stop at the total of slots");
    }

    #[test]
    fn equal_shares_prefer_more_free_slots_then_take_turns() {
        let candidates = [agent("a", 2, 1), agent("b", 2, 1), agent("c", 4, 2)];
        assert_eq!(least_loaded(&candidates), ["c", "a", "b"]);
        let candidates = [agent("a", 2, 0), agent("b", 2, 0)];
        assert_eq!(least_loaded(&candidates), ["a", "b"], "from the cursor (0)");
        let mut cursor = 1;
        let order = order(PlacementStrategy::LeastLoaded, &candidates, "etl", &HashSet::new(), &mut cursor);
        assert_eq!(order, ["b", "a"], "from the cursor (1)");
        assert_eq!(cursor, 0, "moved past the agent chosen");
    }

    #[test]
    fn least_loaded_shares_starts_among_idle_agents_whose_runs_end_at_once() {
        // Loads never change (each run ends before the next start): turns decide.
        let candidates: Vec<Candidate> = ["a", "b", "c", "d"].iter().map(|n| agent(n, 4, 0)).collect();
        let mut cursor = 0;
        let firsts: Vec<String> = (0..8)
            .map(|_| order(PlacementStrategy::LeastLoaded, &candidates, "etl", &HashSet::new(), &mut cursor)[0].clone())
            .collect();
        assert_eq!(firsts, ["a", "b", "c", "d", "a", "b", "c", "d"]);
    }

    #[test]
    fn full_down_excluded_and_unlabelled_agents_are_skipped() {
        let full = agent("full", 2, 2);
        let down = Candidate { up: false, ..agent("down", 2, 0) };
        let excluded = agent("excluded", 2, 0);
        let other_pool = Candidate { labels: vec!["gpu".into()], ..agent("other", 2, 0) };
        let capped = Candidate { slow_start_cap: Some(1), ..agent("capped", 4, 1) };
        let ok = agent("ok", 2, 1);
        let candidates = [full, down, excluded, other_pool, capped, ok];
        let exclude = HashSet::from(["excluded".to_string()]);
        for strategy in [PlacementStrategy::LeastLoaded, PlacementStrategy::RoundRobin] {
            assert_eq!(order(strategy, &candidates, "etl", &exclude, &mut 0), ["ok"], "{strategy}");
            assert!(order(strategy, &candidates, "nobody", &exclude, &mut 0).is_empty(), "{strategy}");
        }
    }

    #[test]
    fn round_robin_rotates_through_the_eligible_agents() {
        let candidates = [agent("a", 1, 0), agent("b", 5, 4), agent("c", 9, 0)];
        let mut cursor = 0;
        let mut firsts = Vec::new();
        for _ in 0..4 {
            let order = order(PlacementStrategy::RoundRobin, &candidates, "etl", &HashSet::new(), &mut cursor);
            assert_eq!(order.len(), 3);
            firsts.push(order[0].clone());
        }
        assert_eq!(firsts, ["a", "b", "c", "a"], "load does not matter, only turns");
    }

    #[test]
    fn round_robin_skips_an_ineligible_agent_and_keeps_turns() {
        let mut candidates = vec![agent("a", 1, 0), agent("b", 1, 0), agent("c", 1, 0)];
        let mut cursor = 0;
        let next = |candidates: &[Candidate], cursor: &mut usize| {
            order(PlacementStrategy::RoundRobin, candidates, "etl", &HashSet::new(), cursor)
        };
        assert_eq!(next(&candidates, &mut cursor), ["a", "b", "c"]);
        candidates[1].load = 1;
        assert_eq!(next(&candidates, &mut cursor), ["c", "a"], "b is full: its turn goes to c");
        candidates[1].load = 0;
        assert_eq!(next(&candidates, &mut cursor), ["a", "b", "c"], "after c comes a");
        assert!(next(&[], &mut cursor).is_empty());
    }

    #[test]
    fn slow_start_doubles_until_the_slots() {
        let step = Duration::from_millis(500);
        assert_eq!(slow_start_cap(8, Duration::ZERO, step), Some(1));
        assert_eq!(slow_start_cap(8, Duration::from_millis(600), step), Some(2));
        assert_eq!(slow_start_cap(8, Duration::from_millis(1000), step), Some(4));
        assert_eq!(slow_start_cap(8, Duration::from_millis(1500), step), None);
        assert_eq!(slow_start_cap(1, Duration::ZERO, step), None, "one slot: nothing to ramp");
        assert_eq!(slow_start_cap(8, Duration::from_secs(3600), step), None);
        assert_eq!(slow_start_cap(8, Duration::ZERO, Duration::ZERO), None);
    }

    #[test]
    fn strategy_names() {
        assert_eq!(PlacementStrategy::default(), PlacementStrategy::LeastLoaded);
        assert_eq!(PlacementStrategy::RoundRobin.to_string(), "round_robin");
    }
}
