//! The nemesis's fault schedule: drawn up front from a seed, so a run can be replayed with
//! `--seed` and the same faults hit the same processes in the same order.

use std::time::Duration;

/// A small deterministic generator (SplitMix64): the schedule must not change when a dependency's
/// generator does, or a recorded seed would replay different faults.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `low..=high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next_u64() % (high - low + 1)
    }

    /// A duration of `low_ms..=high_ms` milliseconds.
    pub fn millis(&mut self, low_ms: u64, high_ms: u64) -> Duration {
        Duration::from_millis(self.between(low_ms, high_ms))
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    /// kill -9 an agent, then start it again on the same data dir after `down`.
    AgentKill,
    /// SIGSTOP an agent, then SIGCONT after `down`.
    AgentStop,
    /// kill -9 the coordinator, then start it again on the same config and data dir after `down`.
    CoordinatorKill,
}

impl FaultKind {
    /// Every kind, in the order figures list them.
    pub const ALL: [FaultKind; 3] = [FaultKind::AgentKill, FaultKind::AgentStop, FaultKind::CoordinatorKill];

    /// The name in the figures and the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::AgentKill => "agent_kill",
            FaultKind::AgentStop => "agent_stop",
            FaultKind::CoordinatorKill => "coordinator_kill",
        }
    }
}

/// One fault: when (from the start of the workload), what, to which agent, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// From the start of the workload.
    pub at: Duration,
    /// What it does.
    pub kind: FaultKind,
    /// The agent's index; unused for the coordinator.
    pub agent: usize,
    /// How long the process stays killed or stopped.
    pub down: Duration,
}

/// No fault before this: the workload gets going first.
const WARM_UP: Duration = Duration::from_secs(2);
/// Gaps between faults, in ms.
const GAP_MS: (u64, u64) = (800, 3000);
/// A killed agent stays dead this long, in ms, before it is started again.
const AGENT_DEAD_MS: (u64, u64) = (200, 2000);
/// A stopped agent stays stopped this long, in ms: around `down_after` (2 s by default), so
/// some hangs are declared down and some are not.
const AGENT_STOPPED_MS: (u64, u64) = (500, 4000);
/// A killed coordinator stays dead this long, in ms.
const COORDINATOR_DEAD_MS: (u64, u64) = (0, 1000);
/// A process is not faulted again within this long of coming back: a restart takes a moment.
const RECOVERY: Duration = Duration::from_millis(1500);

/// The faults of a run of `duration` over `agents` agents, in time order. At most half the
/// agents are faulted at once, so the pool keeps room for retries; each draw takes its weights
/// from the schedule itself, never from what happened, so a seed always gives the same faults.
pub fn schedule(seed: u64, duration: Duration, agents: usize) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut faults = Vec::new();
    // When each agent, and the coordinator, is free again.
    let mut agent_free = vec![Duration::ZERO; agents];
    let mut coordinator_free = Duration::ZERO;
    let mut at = WARM_UP;
    loop {
        at += rng.millis(GAP_MS.0, GAP_MS.1);
        if at >= duration {
            return faults;
        }
        let roll = rng.between(0, 4);
        let free: Vec<usize> = (0..agents).filter(|&i| agent_free[i] <= at).collect();
        let busy = agents - free.len();
        let agent_allowed = !free.is_empty() && busy < agents.div_ceil(2);
        let kind = match roll {
            0 | 1 if agent_allowed => FaultKind::AgentKill,
            2 | 3 if agent_allowed => FaultKind::AgentStop,
            _ if coordinator_free <= at => FaultKind::CoordinatorKill,
            _ => continue,
        };
        let agent =
            if kind == FaultKind::CoordinatorKill { 0 } else { free[rng.between(0, free.len() as u64 - 1) as usize] };
        let down = match kind {
            FaultKind::AgentKill => rng.millis(AGENT_DEAD_MS.0, AGENT_DEAD_MS.1),
            FaultKind::AgentStop => rng.millis(AGENT_STOPPED_MS.0, AGENT_STOPPED_MS.1),
            FaultKind::CoordinatorKill => rng.millis(COORDINATOR_DEAD_MS.0, COORDINATOR_DEAD_MS.1),
        };
        match kind {
            FaultKind::CoordinatorKill => coordinator_free = at + down + RECOVERY,
            _ => agent_free[agent] = at + down + RECOVERY,
        }
        faults.push(Fault { at, kind, agent, down });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_gives_the_same_schedule() {
        let a = schedule(7, Duration::from_secs(60), 4);
        assert_eq!(a, schedule(7, Duration::from_secs(60), 4));
        assert_ne!(a, schedule(8, Duration::from_secs(60), 4));
    }

    #[test]
    fn at_most_half_the_agents_are_down_at_once_and_every_kind_occurs() {
        let faults = schedule(3, Duration::from_secs(300), 4);
        for kind in FaultKind::ALL {
            assert!(faults.iter().any(|f| f.kind == kind), "{kind:?} never drawn");
        }
        for fault in &faults {
            let down = faults
                .iter()
                .filter(|f| f.kind != FaultKind::CoordinatorKill && f.at <= fault.at && fault.at < f.at + f.down)
                .count();
            assert!(down <= 2, "{down} agents down at {:?}", fault.at);
        }
    }
}
