//! The coordinator's configuration (`coordinator.toml`): built-in defaults, then the file, then
//! `SWITCHYARD_COORDINATOR_*` environment variables, then command-line flags; then `validate()`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use switchyard_settings::{Address, Origins, Schema, Settings, TlsFiles, Transport, check_name};

pub use crate::executions::Retention;
pub use crate::placement::PlacementStrategy;
/// An agent name or a label: the one name rule of switchyard-settings.
pub use switchyard_settings::is_valid_name;

/// The address the coordinator listens on when none is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7600";

/// The prefix of the environment variables that configure the coordinator.
pub const ENV_PREFIX: &str = "SWITCHYARD_COORDINATOR";

/// The environment variable that names the config file: it is not a setting, so it is skipped.
pub const CONFIG_FILE_ENV: &str = "SWITCHYARD_COORDINATOR_CONFIG";

/// Every top-level key of `coordinator.toml`.
pub const KEYS: &[&str] = &[
    "listen",
    "insecure",
    "http",
    "data_dir",
    "heartbeat_interval",
    "down_after",
    "placement",
    "start_timeout",
    "execution_retention",
    "executions_max",
    "agents",
    "limits",
    "tls",
];

/// Why the configuration cannot be used; `origin` says where the value came from: the file, an
/// environment variable or a flag.
pub type ConfigError = switchyard_settings::Error;

/// The coordinator's settings. After [`CoordinatorConfig::load`] `data_dir` is absolute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    /// Where the Coordinator gRPC service listens.
    pub listen: SocketAddr,
    /// Allows a non-loopback `listen` without `[tls]` (and a non-loopback `http`).
    pub insecure: bool,
    /// The dashboard and `/metrics`; off unless set.
    pub http: Option<SocketAddr>,
    /// Required; the coordinator's store lives here.
    pub data_dir: PathBuf,
    /// How often each agent is asked for its load.
    #[serde(with = "switchyard_settings::duration")]
    pub heartbeat_interval: Duration,
    /// An agent that has not answered for this long is down (a hang or a partition).
    #[serde(with = "switchyard_settings::duration")]
    pub down_after: Duration,
    /// How a `pool` picks its agent.
    pub placement: PlacementStrategy,
    /// The deadline of one StartJob call.
    #[serde(with = "switchyard_settings::duration")]
    pub start_timeout: Duration,
    /// Finished executions started longer ago are pruned with their events and files
    /// (SSISDB's retention window); `"0s"` keeps them whatever their age.
    #[serde(with = "switchyard_settings::duration")]
    pub execution_retention: Duration,
    /// Finished executions beyond the newest this many are pruned (SQL Server Agent keeps
    /// 1,000 history rows); 0 keeps any number.
    pub executions_max: u64,
    /// Static agents; others may register themselves.
    pub agents: Vec<StaticAgent>,
    /// Bounds on input (`[limits]`, DESIGN.md §11).
    pub limits: switchyard_settings::Limits,
    /// `[tls]`: mutual TLS on the Coordinator service and on the channels to agents (DESIGN.md §11).
    pub tls: Option<TlsFiles>,
}

/// An agent named in coordinator.toml (`[[agents]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAgent {
    /// The agent's own name (agent.toml `name`).
    pub name: String,
    /// `host:port` or `http://host:port`; with `[tls]`, `host:port` or `https://host:port`.
    pub address: String,
    /// When given, replaces the labels the agent reports.
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("the default listen address parses"),
            insecure: false,
            http: None,
            data_dir: PathBuf::new(),
            heartbeat_interval: Duration::from_millis(500),
            down_after: Duration::from_secs(2),
            placement: PlacementStrategy::LeastLoaded,
            start_timeout: Duration::from_secs(5),
            execution_retention: Retention::default().max_age.unwrap_or_default(),
            executions_max: Retention::default().max_count.unwrap_or_default() as u64,
            agents: Vec::new(),
            limits: switchyard_settings::Limits::default(),
            tls: None,
        }
    }
}

impl CoordinatorConfig {
    /// What `execution_retention` and `executions_max` keep (0 meaning no bound).
    pub fn retention(&self) -> Retention {
        Retention {
            max_age: (!self.execution_retention.is_zero()).then_some(self.execution_retention),
            max_count: (self.executions_max > 0).then(|| usize::try_from(self.executions_max).unwrap_or(usize::MAX)),
        }
    }
}

/// Settings given as command-line flags; they override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// A relative path resolves against the current dir (it was typed in a shell).
    pub data_dir: Option<PathBuf>,
    /// `--http`.
    pub http: Option<SocketAddr>,
    /// `--insecure`.
    pub insecure: Option<bool>,
    /// `--placement`.
    pub placement: Option<PlacementStrategy>,
}

/// `CoordinatorConfig::load(file, env, flags)` (the [`Settings`] trait) layers built-in defaults,
/// the file (optional), environment `SWITCHYARD_COORDINATOR_*` (`__` separates nested keys) and
/// the flags, resolves a relative `data_dir` against the file's folder, then checks the rules
/// across fields: a data dir, a loopback `listen` unless `[tls]` or `insecure`, positive
/// durations with `heartbeat_interval` below `down_after`, and agents with unique valid names,
/// reachable addresses and valid labels.
impl Settings for CoordinatorConfig {
    type Flags = ConfigOverrides;

    const SCHEMA: Schema = Schema {
        what: "coordinator config",
        env_prefix: ENV_PREFIX,
        config_file_env: CONFIG_FILE_ENV,
        keys: KEYS,
        example,
    };

    fn apply_flags(&mut self, flags: ConfigOverrides, origins: &mut Origins) {
        let ConfigOverrides { listen, data_dir, http, insecure, placement } = flags;
        origins.flag("listen", listen, &mut self.listen);
        // A relative --data-dir was typed in a shell: it means the current dir.
        origins.flag("data_dir", data_dir.map(|dir| std::path::absolute(&dir).unwrap_or(dir)), &mut self.data_dir);
        origins.flag("http", http.map(Some), &mut self.http);
        origins.flag("insecure", insecure, &mut self.insecure);
        origins.flag("placement", placement, &mut self.placement);
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.data_dir];
        if let Some(tls) = &mut self.tls {
            paths.extend(tls.paths_mut());
        }
        paths
    }

    fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        if let Err((key, message)) = self.limits.check() {
            return Err(origins.invalid(&format!("limits.{key}"), message));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(origins.invalid(
                "data_dir",
                "the coordinator needs a data dir for its store: set `data_dir = \"/var/lib/switchyard/coordinator\"` \
                 in coordinator.toml, SWITCHYARD_COORDINATOR_DATA_DIR or --data-dir",
            ));
        }
        if !self.listen.ip().is_loopback() && !self.insecure && self.tls.is_none() {
            return Err(origins.invalid("listen", switchyard_settings::insecure_listen_message(&self.listen)));
        }
        if let Some(http) = self.http
            && !http.ip().is_loopback()
            && !self.insecure
        {
            return Err(origins.invalid("http", switchyard_settings::insecure_http_message(&http)));
        }
        for (key, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("down_after", self.down_after),
            ("start_timeout", self.start_timeout),
        ] {
            if value.is_zero() {
                return Err(origins.invalid(key, "must be longer than 0, like \"500ms\""));
            }
        }
        if self.heartbeat_interval >= self.down_after {
            return Err(origins.invalid(
                "down_after",
                format!(
                    "must be longer than heartbeat_interval ({}), or an agent is declared down between two \
                     heartbeats, found {}",
                    humantime::format_duration(self.heartbeat_interval),
                    humantime::format_duration(self.down_after)
                ),
            ));
        }
        let mut names = HashSet::new();
        for (index, agent) in self.agents.iter().enumerate() {
            let key = |field: &str| format!("agents[{index}].{field}");
            check_name(&agent.name, "agent name").map_err(|e| origins.invalid(&key("name"), e.to_string()))?;
            if !names.insert(agent.name.as_str()) {
                return Err(origins.invalid(&key("name"), format!("agent \"{}\" is listed twice", agent.name)));
            }
            if let Err(problem) = agent_url(&agent.address, Transport::of(&self.tls)) {
                return Err(origins.invalid(&key("address"), format!("agent \"{}\": {problem}", agent.name)));
            }
            for label in agent.labels.iter().flatten() {
                check_name(label, "label").map_err(|e| origins.invalid(&key("labels"), e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// The URL the coordinator dials for an agent's address, by the one address rule of
/// [`Address`]: without TLS `host:port` or `http://host:port` becomes `http://host:port`; with
/// it `host:port` or `https://host:port` becomes `https://host:port`.
pub fn agent_url(address: &str, transport: Transport) -> Result<String, String> {
    Address::parse_for(address, transport).map(|a| a.uri()).map_err(|e| e.to_string())
}

/// How to write a key's value, for a message about a value of the wrong type (serde's own words
/// for an enum or a duration do not say).
fn example(key: &str) -> Option<&'static str> {
    let example = match key {
        "heartbeat_interval" | "down_after" | "start_timeout" => "a duration like \"500ms\", \"2s\" or \"1m\"",
        "execution_retention" => "a duration like \"365d\" or \"12h\" (\"0s\": no age limit)",
        "executions_max" => "a whole number like 1000 (0: no limit)",
        "placement" => "\"least_loaded\" or \"round_robin\"",
        "listen" | "http" => "an ip:port like \"127.0.0.1:7600\"",
        "insecure" => "true or false",
        "agents" => {
            "a list of tables like [[agents]] name = \"server-a\" address = \"127.0.0.1:7601\" labels = [\"etl\"]"
        }
        _ => return None,
    };
    Some(example)
}

#[cfg(test)]
mod tests;
