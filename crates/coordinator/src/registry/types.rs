//! The registry's public types: agent states and snapshots, run outcomes, settings and errors.

use std::time::{Duration, Instant};

use switchyard_package::engine::ChildStatus;
use switchyard_proto::RunStatus;

use crate::config::CoordinatorConfig;
use crate::placement::PlacementStrategy;

/// An agent's state as users see it (`switchyard agents`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Answers and takes work.
    Up,
    /// In doubt (its stream broke or a call failed to connect) while a probe decides.
    Suspect,
    /// Declared down: refused a connection, or silent for `down_after`.
    Down,
    /// Up and monitored, but takes no new placements.
    Draining,
}

impl AgentState {
    /// The name users see.
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentState::Up => "up",
            AgentState::Suspect => "suspect",
            AgentState::Down => "down",
            AgentState::Draining => "draining",
        }
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the registry learned of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentSource {
    /// `[[agents]]` in coordinator.toml.
    Config,
    /// RegisterAgent.
    Registered,
}

impl AgentSource {
    /// "config" or "registered".
    pub fn as_str(&self) -> &'static str {
        match self {
            AgentSource::Config => "config",
            AgentSource::Registered => "registered",
        }
    }
}

/// One agent as the registry sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSnapshot {
    pub name: String,
    pub address: String,
    pub state: AgentState,
    /// The override from coordinator.toml when given, otherwise what the agent reports.
    pub labels: Vec<String>,
    /// As of its last GetLoad.
    pub running: u32,
    pub queued: u32,
    pub slots: u32,
    /// Starts reserved here and not yet confirmed.
    pub inflight: u32,
    pub incarnation: String,
    /// The fencing epoch to start runs with.
    pub epoch: u64,
    pub source: AgentSource,
    pub version: String,
    /// When its last GetLoad answered.
    pub last_seen: Option<Instant>,
    pub last_error: Option<String>,
    /// Outbox events the agent reported at its last GetLoad that are not consumed yet.
    pub outbox_lag: u64,
}

/// How a run ended, from its agent's FINISHED event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    pub agent: String,
    pub run_id: String,
    pub job: String,
    /// Succeeded, failed or canceled.
    pub status: RunStatus,
    pub message: String,
    /// Measured on the agent.
    pub duration_ms: u64,
    pub execution_id: String,
    pub task_path: String,
    pub attempt: u32,
    pub idempotency_key: String,
    /// The agent's incarnation and the outbox sequence of the FINISHED event: storing them with
    /// the outcome lets a restarted coordinator resume the agent's stream after it.
    pub incarnation: String,
    pub sequence: u64,
}

impl RunOutcome {
    /// The status of the child this outcome ends: the one mapping from an agent's run status.
    pub fn child_status(&self) -> ChildStatus {
        match self.status {
            RunStatus::Succeeded => ChildStatus::Succeeded,
            RunStatus::Canceled => ChildStatus::Canceled,
            _ => ChildStatus::Failed,
        }
    }
}

/// What [`Registry::wait_for_outcome`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitOutcome {
    Finished(RunOutcome),
    /// The agent was declared down (or removed) while the run was active.
    Lost {
        agent: String,
        reason: String,
    },
    /// The caller's token (or the registry's shutdown) fired.
    Canceled,
}

/// Liveness and placement settings (from coordinator.toml).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    pub heartbeat_interval: Duration,
    pub down_after: Duration,
    pub strategy: PlacementStrategy,
    /// The deadline callers give one StartJob call.
    pub start_timeout: Duration,
}

impl RegistrySettings {
    /// The settings coordinator.toml gives: the one place they are built.
    pub fn from_config(config: &CoordinatorConfig) -> Self {
        Self {
            heartbeat_interval: config.heartbeat_interval,
            down_after: config.down_after,
            strategy: config.placement,
            start_timeout: config.start_timeout,
        }
    }
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self::from_config(&CoordinatorConfig::default())
    }
}

/// Why an agent cannot be added or changed.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    #[error("no agent named \"{0}\" is known to the coordinator")]
    UnknownAgent(String),
    #[error(
        "`{0}` is not a valid agent name: use 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    )]
    InvalidName(String),
    #[error(
        "agent \"{agent}\": `{label}` is not a valid label: use 1 to 128 letters, digits, '_', '.' or '-', \
         not starting with '.' or '-'"
    )]
    InvalidLabel { agent: String, label: String },
    #[error("agent \"{agent}\": {message}")]
    InvalidAddress { agent: String, message: String },
    #[error("agent \"{agent}\" is configured at {configured} in coordinator.toml; it cannot register from {address}")]
    Conflict { agent: String, configured: String, address: String },
}

/// Why a start cannot be reserved on a fixed agent.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum PlaceError {
    #[error("no agent named \"{agent}\" is known to the coordinator")]
    Unknown { agent: String },
    #[error("agent \"{agent}\" is {state}: {reason}")]
    Down { agent: String, state: AgentState, reason: String },
    #[error("agent \"{agent}\" is draining: it takes no new starts")]
    Draining { agent: String },
    #[error("agent \"{agent}\" is full: {load} of its {slots} slots are in use")]
    Full { agent: String, load: u32, slots: u32 },
}
