//! The agent's configuration (`agent.toml`): built-in defaults, then the file, then
//! `SWITCHYARD_AGENT_*` environment variables, then command-line flags; then `validate()`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use switchyard_settings::{Address, Origins, Schema, Settings, TlsFiles, Transport, check_name};

/// The address the agent listens on when none is configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7601";

/// The prefix of the environment variables that configure the agent.
pub const ENV_PREFIX: &str = "SWITCHYARD_AGENT";

/// The environment variable that names the config file: it is not a setting, so it is skipped.
pub const CONFIG_FILE_ENV: &str = "SWITCHYARD_AGENT_CONFIG";

/// Every key of `agent.toml`.
pub const KEYS: &[&str] = &[
    "name",
    "listen",
    "insecure",
    "http",
    "data_dir",
    "labels",
    "slots",
    "packages_dir",
    "jobs_dir",
    "coordinator",
    "allow_fault_injection",
    "shutdown_grace",
    "kill_grace",
    "output_limit",
    "history_max_rows",
    "history_max_rows_per_job",
    "outbox_retention",
    "synchronous",
    "limits",
    "tls",
];

/// Why the configuration cannot be used; `origin` says where the value came from: the file, an
/// environment variable or a flag.
pub type ConfigError = switchyard_settings::Error;

/// The agent's settings. After [`AgentConfig::load`] the paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Required; how coordinators and reports name this agent.
    pub name: String,
    /// Where the Agent gRPC service listens.
    pub listen: SocketAddr,
    /// Allows a non-loopback `listen` without `[tls]` (the binary then logs a warning), and a
    /// non-loopback `http`.
    pub insecure: bool,
    /// Where `/metrics` and `/healthz` are served (plain HTTP); off unless set.
    pub http: Option<SocketAddr>,
    /// Required; the SQLite history and outbox live here.
    pub data_dir: PathBuf,
    /// An `agent_job` task's `pool` picks among agents with its label. In the environment:
    /// a comma-separated list.
    #[serde(deserialize_with = "switchyard_settings::comma_list::deserialize")]
    pub labels: Vec<String>,
    /// Jobs run at once.
    pub slots: u32,
    /// Packages that job steps name, and packages pushed by `deploy`.
    pub packages_dir: PathBuf,
    /// One job per `*.toml` file.
    pub jobs_dir: PathBuf,
    /// A coordinator to register with at start: `host:port` or `http://host:port`; with `[tls]`,
    /// `host:port` or `https://host:port`.
    pub coordinator: Option<String>,
    /// Accepts InjectFault (`switchyard chaos`).
    pub allow_fault_injection: bool,
    /// How long a shutdown waits for running runs before canceling them.
    #[serde(with = "switchyard_settings::duration")]
    pub shutdown_grace: Duration,
    /// From TERM to KILL when a job's process tree is stopped.
    #[serde(with = "switchyard_settings::duration")]
    pub kill_grace: Duration,
    /// Bytes of output kept per stream and step attempt; `[limits] output` (1 MiB) when unset,
    /// and never more than it. Use [`AgentConfig::output_cap`].
    pub output_limit: Option<usize>,
    /// History rows kept in all (SQL Server Agent's "maximum job history log size").
    pub history_max_rows: u32,
    /// History rows kept per job.
    pub history_max_rows_per_job: u32,
    /// Consumed outbox rows are pruned once older than this.
    #[serde(with = "switchyard_settings::duration")]
    pub outbox_retention: Duration,
    /// How hard SQLite commits are made durable.
    pub synchronous: Synchronous,
    /// Bounds on input (`[limits]`, DESIGN.md §11).
    pub limits: switchyard_settings::Limits,
    /// `[tls]`: mutual TLS on the Agent service and on registering (DESIGN.md §11).
    pub tls: Option<TlsFiles>,
}

/// SQLite's `synchronous` pragma for the agent's database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Survives a kill -9 of the process (WAL); the last commits may be lost on power loss.
    #[default]
    Normal,
    /// Survives power loss too, at the cost of an fsync per commit.
    Full,
}

impl Synchronous {
    /// The pragma value: `PRAGMA synchronous = NORMAL`.
    pub fn pragma(&self) -> &'static str {
        match self {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            listen: DEFAULT_LISTEN.parse().expect("the default listen address parses"),
            insecure: false,
            http: None,
            data_dir: PathBuf::new(),
            labels: Vec::new(),
            slots: 4,
            packages_dir: PathBuf::from("packages"),
            jobs_dir: PathBuf::from("jobs"),
            coordinator: None,
            allow_fault_injection: false,
            shutdown_grace: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            output_limit: None,
            history_max_rows: 1000,
            history_max_rows_per_job: 100,
            outbox_retention: Duration::from_secs(7 * 24 * 3600),
            synchronous: Synchronous::Normal,
            limits: switchyard_settings::Limits::default(),
            tls: None,
        }
    }
}

/// Settings given as command-line flags; they override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    /// `--name`.
    pub name: Option<String>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
    /// A relative path resolves against the current dir (it was typed in a shell).
    pub data_dir: Option<PathBuf>,
    /// `--coordinator`.
    pub coordinator: Option<String>,
    /// `--slots`.
    pub slots: Option<u32>,
    /// `--labels`.
    pub labels: Option<Vec<String>>,
    /// `--allow-fault-injection`.
    pub allow_fault_injection: Option<bool>,
}

impl AgentConfig {
    /// Bytes of output kept per stream and step attempt: `output_limit` when set, never more than
    /// `[limits] output`.
    pub fn output_cap(&self) -> usize {
        self.output_limit.map_or(self.limits.output, |limit| limit.min(self.limits.output))
    }

    /// Trims labels and drops empty ones (an empty variable clears them); an empty coordinator
    /// is none.
    fn normalize(&mut self) {
        self.labels = self.labels.iter().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
        if let Some(c) = &self.coordinator {
            let c = c.trim();
            self.coordinator = if c.is_empty() { None } else { Some(c.to_string()) };
        }
    }
}

/// `AgentConfig::load(file, env, flags)` (the [`Settings`] trait) layers built-in defaults, the
/// file (optional), environment `SWITCHYARD_AGENT_*` (`__` separates nested keys;
/// `SWITCHYARD_AGENT_LABELS` is a comma-separated list) and the flags, resolves relative paths
/// against the file's folder, then checks the rules across fields: a valid name, a data dir, at
/// least one slot, a loopback `listen` unless `[tls]` or `insecure`, a valid coordinator address
/// and labels, history limits.
impl Settings for AgentConfig {
    type Flags = ConfigOverrides;

    const SCHEMA: Schema =
        Schema { what: "agent config", env_prefix: ENV_PREFIX, config_file_env: CONFIG_FILE_ENV, keys: KEYS, example };

    fn apply_flags(&mut self, flags: ConfigOverrides, origins: &mut Origins) {
        let ConfigOverrides { name, listen, data_dir, coordinator, slots, labels, allow_fault_injection } = flags;
        origins.flag("name", name, &mut self.name);
        origins.flag("listen", listen, &mut self.listen);
        // A relative --data-dir was typed in a shell: it means the current dir.
        origins.flag("data_dir", data_dir.map(|dir| std::path::absolute(&dir).unwrap_or(dir)), &mut self.data_dir);
        origins.flag("coordinator", coordinator.map(Some), &mut self.coordinator);
        origins.flag("slots", slots, &mut self.slots);
        origins.flag("labels", labels, &mut self.labels);
        origins.flag("allow_fault_injection", allow_fault_injection, &mut self.allow_fault_injection);
        self.normalize();
    }

    fn relative_paths(&mut self) -> Vec<&mut PathBuf> {
        let mut paths = vec![&mut self.data_dir, &mut self.packages_dir, &mut self.jobs_dir];
        if let Some(tls) = &mut self.tls {
            paths.extend(tls.paths_mut());
        }
        paths
    }

    fn check(&self, origins: &Origins) -> Result<(), ConfigError> {
        if let Err((key, message)) = self.limits.check() {
            return Err(origins.invalid(&format!("limits.{key}"), message));
        }
        if self.name.is_empty() {
            return Err(origins.invalid(
                "name",
                "the agent needs a name: set `name = \"server-a\"` in agent.toml, SWITCHYARD_AGENT_NAME or --name",
            ));
        }
        check_name(&self.name, "agent name").map_err(|e| origins.invalid("name", e.to_string()))?;
        if self.data_dir.as_os_str().is_empty() {
            return Err(origins.invalid(
                "data_dir",
                "the agent needs a data dir for its history: set `data_dir = \"/var/lib/switchyard/agent\"` in \
                 agent.toml, SWITCHYARD_AGENT_DATA_DIR or --data-dir",
            ));
        }
        if self.slots == 0 {
            return Err(origins.invalid("slots", "must be at least 1 (it is how many jobs run at once)"));
        }
        if self.output_limit == Some(0) {
            return Err(origins.invalid("output_limit", "must be at least 1 (or unset: `[limits] output`, 1 MiB)"));
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
        if let Some(coordinator) = &self.coordinator {
            Address::parse_for(coordinator, Transport::of(&self.tls))
                .map_err(|e| origins.invalid("coordinator", e.to_string()))?;
        }
        for label in &self.labels {
            check_name(label, "label").map_err(|e| origins.invalid("labels", e.to_string()))?;
        }
        if self.history_max_rows == 0 {
            return Err(origins.invalid("history_max_rows", "must be at least 1"));
        }
        if self.history_max_rows_per_job == 0 || self.history_max_rows_per_job > self.history_max_rows {
            return Err(origins.invalid(
                "history_max_rows_per_job",
                format!(
                    "must be from 1 to history_max_rows ({}), found {}",
                    self.history_max_rows, self.history_max_rows_per_job
                ),
            ));
        }
        Ok(())
    }
}

/// How to write a key's value, for a message about a value of the wrong type (serde's own words
/// for an enum or a duration do not say).
fn example(key: &str) -> Option<&'static str> {
    let example = match key {
        "shutdown_grace" | "kill_grace" | "outbox_retention" => "a duration like \"30s\", \"500ms\" or \"7d\"",
        "synchronous" => "\"normal\" or \"full\"",
        "listen" => "an ip:port like \"127.0.0.1:7601\"",
        "http" => "an ip:port like \"127.0.0.1:7681\"",
        "labels" => "a list of names like [\"etl\"] (in the environment: etl,gpu)",
        "slots" | "output_limit" | "history_max_rows" | "history_max_rows_per_job" => "a positive whole number",
        "insecure" | "allow_fault_injection" => "true or false",
        _ => return None,
    };
    Some(example)
}

#[cfg(test)]
mod tests;
