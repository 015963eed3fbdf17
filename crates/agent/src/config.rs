//! The agent's configuration (`agent.toml`): built-in defaults, then the file, then
//! `SWITCHYARD_AGENT_*` environment variables, then command-line flags; then `validate()`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::jobs::is_safe_name;

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
];

/// The agent's settings. After [`AgentConfig::load`] the paths are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Required; how coordinators and reports name this agent.
    pub name: String,
    pub listen: SocketAddr,
    /// Allows a non-loopback `listen` while there is no TLS (the binary then logs a warning).
    pub insecure: bool,
    /// Required; the SQLite history and outbox live here.
    pub data_dir: PathBuf,
    /// An `agent_job` task's `pool` picks among agents with its label. In the environment:
    /// a comma-separated list.
    #[serde(deserialize_with = "labels_from_list_or_text")]
    pub labels: Vec<String>,
    /// Jobs run at once.
    pub slots: u32,
    pub packages_dir: PathBuf,
    /// One job per `*.toml` file.
    pub jobs_dir: PathBuf,
    /// A coordinator to register with at start: `host:port` or `http(s)://host:port`.
    pub coordinator: Option<String>,
    pub allow_fault_injection: bool,
    /// How long a shutdown waits for running runs before canceling them.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// From TERM to KILL when a job's process tree is stopped.
    #[serde(with = "humantime_serde")]
    pub kill_grace: Duration,
    /// Bytes of output kept per stream and step attempt.
    pub output_limit: usize,
    /// History rows kept in all (SQL Server Agent's "maximum job history log size").
    pub history_max_rows: u32,
    /// History rows kept per job.
    pub history_max_rows_per_job: u32,
    /// Consumed outbox rows are pruned once older than this.
    #[serde(with = "humantime_serde")]
    pub outbox_retention: Duration,
    pub synchronous: Synchronous,
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
            data_dir: PathBuf::new(),
            labels: Vec::new(),
            slots: 4,
            packages_dir: PathBuf::from("packages"),
            jobs_dir: PathBuf::from("jobs"),
            coordinator: None,
            allow_fault_injection: false,
            shutdown_grace: Duration::from_secs(30),
            kill_grace: Duration::from_secs(5),
            output_limit: 64 * 1024,
            history_max_rows: 1000,
            history_max_rows_per_job: 100,
            outbox_retention: Duration::from_secs(7 * 24 * 3600),
            synchronous: Synchronous::Normal,
        }
    }
}

/// Settings given as command-line flags; they override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    pub name: Option<String>,
    pub listen: Option<SocketAddr>,
    /// A relative path resolves against the current dir (it was typed in a shell).
    pub data_dir: Option<PathBuf>,
    pub coordinator: Option<String>,
    pub slots: Option<u32>,
    pub labels: Option<Vec<String>>,
    pub allow_fault_injection: Option<bool>,
}

/// Why the configuration cannot be used. `origin` says where the value came from: the file,
/// an environment variable or a flag.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("cannot read agent config {}: {source}; check the path given with --config", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent config {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key `{key}` in {origin}; remove it or fix its spelling (known keys: {})", KEYS.join(", "))]
    UnknownKey { key: String, origin: String },
    #[error("`{key}` in {origin}: {message}")]
    Invalid { key: String, origin: String, message: String },
    #[error("agent config: {0}")]
    Other(String),
}

impl AgentConfig {
    /// Layers built-in defaults, the file (optional), environment `SWITCHYARD_AGENT_*` (`__`
    /// separates nested keys; `SWITCHYARD_AGENT_LABELS` is a comma-separated list) and the flags;
    /// resolves relative paths against the file's folder (the current dir without a file), then
    /// validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: ConfigOverrides,
    ) -> Result<AgentConfig, ConfigError> {
        let prefix = format!("{ENV_PREFIX}_");
        let env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.to_uppercase().starts_with(&prefix) && !k.eq_ignore_ascii_case(CONFIG_FILE_ENV))
            .collect();
        let origins = Origins { file, env: &env, overrides: &overrides };

        let mut builder = config::Config::builder();
        if let Some(path) = file {
            // The config crate's own message for a missing file does not say which flag to fix.
            if let Err(source) = std::fs::File::open(path) {
                return Err(ConfigError::Read { path: path.to_path_buf(), source });
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml).required(true));
        }
        // No `try_parsing`: it would turn a name like "1e5" or "nan" into a number. Every typed
        // field parses its own text, and `labels` splits a comma-separated string itself.
        let environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("_")
            .separator("__")
            .source(Some(env.iter().cloned().collect()));
        let layered = builder.add_source(environment).build().map_err(|e| from_config_error(e, file, &origins))?;

        let table = layered.cache.clone().into_table().map_err(|e| ConfigError::Other(e.to_string()))?;
        let mut unknown: Vec<&String> = table.keys().filter(|k| !KEYS.contains(&k.as_str())).collect();
        unknown.sort();
        if let Some(key) = unknown.first() {
            return Err(ConfigError::UnknownKey { key: key.to_string(), origin: origins.of(key) });
        }
        let mut config: AgentConfig = layered.try_deserialize().map_err(|e| from_config_error(e, file, &origins))?;

        config.apply(overrides.clone());
        config.normalize();
        let base = match file.and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base)
            .map_err(|e| ConfigError::Other(format!("cannot resolve {}: {e}", base.display())))?;
        for path in [&mut config.data_dir, &mut config.packages_dir, &mut config.jobs_dir] {
            if !path.as_os_str().is_empty() && path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config.check(&|key| origins.of(key))?;
        Ok(config)
    }

    /// Rules across fields: a safe name, a data dir, at least one slot, a loopback `listen`
    /// unless `insecure`, a well-formed coordinator address and labels, history limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&|_| "the agent config".to_string())
    }

    fn check(&self, origin_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, message: String| ConfigError::Invalid { key: key.to_string(), origin: origin_of(key), message };
        if self.name.is_empty() {
            return Err(invalid(
                "name",
                "the agent needs a name: set `name = \"server-a\"` in agent.toml, SWITCHYARD_AGENT_NAME or --name"
                    .to_string(),
            ));
        }
        if !is_safe_name(&self.name) {
            return Err(invalid(
                "name",
                format!(
                    "`{}` is not a valid agent name: use 1 to 128 letters, digits, '_', '.' or '-', \
                     not starting with '.' or '-'",
                    self.name
                ),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "data_dir",
                "the agent needs a data dir for its history: set `data_dir = \"/var/lib/switchyard/agent\"` in \
                 agent.toml, SWITCHYARD_AGENT_DATA_DIR or --data-dir"
                    .to_string(),
            ));
        }
        if self.slots == 0 {
            return Err(invalid("slots", "must be at least 1 (it is how many jobs run at once)".to_string()));
        }
        if !self.listen.ip().is_loopback() && !self.insecure {
            return Err(invalid(
                "listen",
                format!(
                    "{} is not a loopback address and there is no TLS yet, so anyone who can reach it could run \
                     jobs: listen on 127.0.0.1, or set `insecure = true` to accept that",
                    self.listen
                ),
            ));
        }
        if let Some(coordinator) = &self.coordinator
            && let Err(problem) = check_address(coordinator)
        {
            return Err(invalid("coordinator", problem));
        }
        if let Some(label) = self.labels.iter().find(|l| !is_safe_name(l)) {
            return Err(invalid(
                "labels",
                format!(
                    "`{label}` is not a valid label: use 1 to 128 letters, digits, '_', '.' or '-', \
                     not starting with '.' or '-'"
                ),
            ));
        }
        if self.history_max_rows == 0 {
            return Err(invalid("history_max_rows", "must be at least 1".to_string()));
        }
        if self.history_max_rows_per_job == 0 || self.history_max_rows_per_job > self.history_max_rows {
            return Err(invalid(
                "history_max_rows_per_job",
                format!(
                    "must be from 1 to history_max_rows ({}), found {}",
                    self.history_max_rows, self.history_max_rows_per_job
                ),
            ));
        }
        Ok(())
    }

    fn apply(&mut self, overrides: ConfigOverrides) {
        let ConfigOverrides { name, listen, data_dir, coordinator, slots, labels, allow_fault_injection } = overrides;
        if let Some(name) = name {
            self.name = name;
        }
        if let Some(listen) = listen {
            self.listen = listen;
        }
        if let Some(dir) = data_dir {
            self.data_dir = std::path::absolute(&dir).unwrap_or(dir);
        }
        if let Some(coordinator) = coordinator {
            self.coordinator = Some(coordinator);
        }
        if let Some(slots) = slots {
            self.slots = slots;
        }
        if let Some(labels) = labels {
            self.labels = labels;
        }
        if let Some(allow) = allow_fault_injection {
            self.allow_fault_injection = allow;
        }
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

/// Checks `host:port` or `http(s)://host:port` (a trailing `/` allowed).
fn check_address(address: &str) -> Result<(), String> {
    let expected = "expected host:port or http(s)://host:port, like \"127.0.0.1:7600\"";
    let rest = address.strip_prefix("http://").or_else(|| address.strip_prefix("https://")).unwrap_or(address);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(format!("`{address}` has no port; {expected}"));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("`{address}` has no valid port (1 to 65535); {expected}"));
    }
    let host_ok = if let Some(inner) = host.strip_prefix('[') {
        inner.strip_suffix(']').is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
    } else {
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    };
    if !host_ok {
        return Err(format!("`{address}` has no valid host; {expected}"));
    }
    Ok(())
}

/// Where each layer's values came from, for messages.
struct Origins<'a> {
    file: Option<&'a Path>,
    env: &'a [(String, String)],
    overrides: &'a ConfigOverrides,
}

impl Origins<'_> {
    /// The layer that set `key` last (a field path like `labels[0]` is looked up by its key).
    fn of(&self, key: &str) -> String {
        let key = key.split(['.', '[']).next().unwrap_or(key);
        let o = self.overrides;
        let flagged = match key {
            "name" => o.name.is_some(),
            "listen" => o.listen.is_some(),
            "data_dir" => o.data_dir.is_some(),
            "coordinator" => o.coordinator.is_some(),
            "slots" => o.slots.is_some(),
            "labels" => o.labels.is_some(),
            "allow_fault_injection" => o.allow_fault_injection.is_some(),
            _ => false,
        };
        if flagged {
            return format!("the flag --{}", key.replace('_', "-"));
        }
        let env_key = format!("{ENV_PREFIX}_{key}");
        let from_env = self.env.iter().rev().find(|(k, _)| {
            let k = k.to_uppercase();
            k == env_key.to_uppercase() || k.starts_with(&format!("{}__", env_key.to_uppercase()))
        });
        if let Some((var, _)) = from_env {
            return format!("environment variable {var}");
        }
        match self.file {
            Some(path) => format!("agent config {}", path.display()),
            None => "the built-in defaults".to_string(),
        }
    }
}

fn from_config_error(error: config::ConfigError, file: Option<&Path>, origins: &Origins<'_>) -> ConfigError {
    match error {
        config::ConfigError::FileParse { cause, .. } => ConfigError::Syntax {
            path: file.map(Path::to_path_buf).unwrap_or_default(),
            message: cause.to_string().trim_end().to_string(),
        },
        config::ConfigError::Type { unexpected, expected, key: Some(key), .. } => {
            let message = with_example(&key, format!("found {unexpected}, expected {expected}"));
            ConfigError::Invalid { origin: origins.of(&key), key, message }
        }
        config::ConfigError::At { error, key: Some(key), .. } => {
            let message = with_example(&key, error.to_string());
            ConfigError::Invalid { origin: origins.of(&key), key, message }
        }
        other => ConfigError::Other(other.to_string()),
    }
}

/// A serde message, followed by how to write the key's value (serde's own words for an enum or
/// a duration do not say).
fn with_example(key: &str, message: String) -> String {
    let example = match key.split(['.', '[']).next().unwrap_or(key) {
        "shutdown_grace" | "kill_grace" | "outbox_retention" => "a duration like \"30s\", \"500ms\" or \"7d\"",
        "synchronous" => "\"normal\" or \"full\"",
        "listen" => "an ip:port like \"127.0.0.1:7601\"",
        "labels" => "a list of names like [\"etl\"] (in the environment: etl,gpu)",
        "slots" | "output_limit" | "history_max_rows" | "history_max_rows_per_job" => "a positive whole number",
        "insecure" | "allow_fault_injection" => "true or false",
        _ => return message,
    };
    format!("{message}; write {example}")
}

/// `labels` as a list (TOML) or comma-separated text (an environment variable).
fn labels_from_list_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Labels;
    impl<'de> serde::de::Visitor<'de> for Labels {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a list of labels or a comma-separated string")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
            Ok(text.split(',').map(str::to_string).collect())
        }

        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(vec![n.to_string()])
        }

        fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(vec![n.to_string()])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut labels = Vec::new();
            while let Some(label) = seq.next_element::<String>()? {
                labels.push(label);
            }
            Ok(labels)
        }
    }
    deserializer.deserialize_any(Labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Writes `text` as agent.toml in a fresh dir.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    const MINIMAL: &str = "name = \"server-a\"\ndata_dir = \"/var/lib/switchyard/agent\"\n";

    fn load(text: &str, vars: &[(&str, &str)], overrides: ConfigOverrides) -> Result<AgentConfig, ConfigError> {
        let (_dir, path) = file(text);
        AgentConfig::load(Some(&path), env(vars), overrides)
    }

    #[test]
    fn defaults() {
        let (dir, path) = file(MINIMAL);
        let config =
            AgentConfig::load(Some(&path), env(&[("PATH", "/bin")]), ConfigOverrides::default()).expect("valid");
        let base = std::path::absolute(dir.path()).expect("absolute");
        let expected = AgentConfig {
            name: "server-a".into(),
            data_dir: "/var/lib/switchyard/agent".into(),
            packages_dir: base.join("packages"),
            jobs_dir: base.join("jobs"),
            ..AgentConfig::default()
        };
        assert_eq!(config, expected);
        assert_eq!(config.listen, "127.0.0.1:7601".parse().expect("addr"));
        assert_eq!((config.slots, config.output_limit), (4, 65536));
        assert_eq!((config.history_max_rows, config.history_max_rows_per_job), (1000, 100));
        assert_eq!(config.outbox_retention, Duration::from_secs(7 * 86400));
        assert_eq!(config.synchronous.pragma(), "NORMAL");
    }

    #[test]
    fn file_values() {
        let text = r#"name = "server-b"
listen = "127.0.0.1:9000"
data_dir = "/data"
labels = ["etl", "gpu"]
slots = 8
packages_dir = "/srv/packages"
jobs_dir = "/srv/jobs"
coordinator = "http://coord:7600"
allow_fault_injection = true
shutdown_grace = "1m"
kill_grace = "500ms"
output_limit = 1024
history_max_rows = 50
history_max_rows_per_job = 10
outbox_retention = "1d"
synchronous = "full"
"#;
        let config = load(text, &[], ConfigOverrides::default()).expect("valid");
        assert_eq!(config.name, "server-b");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.labels, ["etl", "gpu"]);
        assert_eq!(config.slots, 8);
        assert_eq!(config.packages_dir, PathBuf::from("/srv/packages"));
        assert_eq!(config.coordinator.as_deref(), Some("http://coord:7600"));
        assert!(config.allow_fault_injection);
        assert_eq!((config.shutdown_grace, config.kill_grace), (Duration::from_secs(60), Duration::from_millis(500)));
        assert_eq!((config.output_limit, config.history_max_rows, config.history_max_rows_per_job), (1024, 50, 10));
        assert_eq!(config.outbox_retention, Duration::from_secs(86400));
        assert_eq!(config.synchronous, Synchronous::Full);
    }

    #[test]
    fn env_overrides_file() {
        let vars = [
            ("SWITCHYARD_AGENT_SLOTS", "8"),
            ("SWITCHYARD_AGENT_NAME", "1e5"),
            ("SWITCHYARD_AGENT_KILL_GRACE", "2s"),
            ("SWITCHYARD_AGENT_ALLOW_FAULT_INJECTION", "true"),
            ("SWITCHYARD_AGENT_CONFIG", "/elsewhere/agent.toml"),
            ("OTHER_SLOTS", "1"),
        ];
        let config = load(&format!("{MINIMAL}slots = 2\n"), &vars, ConfigOverrides::default()).expect("valid");
        assert_eq!(config.slots, 8);
        assert_eq!(config.name, "1e5", "names stay text");
        assert_eq!(config.kill_grace, Duration::from_secs(2));
        assert!(config.allow_fault_injection);
    }

    #[test]
    fn flags_override_env() {
        let vars = [("SWITCHYARD_AGENT_SLOTS", "8"), ("SWITCHYARD_AGENT_NAME", "from-env")];
        let overrides = ConfigOverrides {
            name: Some("from-flag".into()),
            slots: Some(3),
            labels: Some(vec!["x".into()]),
            data_dir: Some("/flag/data".into()),
            ..ConfigOverrides::default()
        };
        let config = load(MINIMAL, &vars, overrides).expect("valid");
        assert_eq!((config.name.as_str(), config.slots), ("from-flag", 3));
        assert_eq!(config.labels, ["x"]);
        assert_eq!(config.data_dir, PathBuf::from("/flag/data"));
    }

    #[test]
    fn unknown_key_in_file_is_named() {
        let e = load(&format!("{MINIMAL}slot = 3\n"), &[], ConfigOverrides::default()).expect_err("unknown key");
        let ConfigError::UnknownKey { key, origin } = &e else { panic!("{e}") };
        assert_eq!(key, "slot");
        assert!(origin.ends_with("agent.toml"), "{e}");
        assert!(e.to_string().contains("unknown key `slot`"), "{e}");
    }

    #[test]
    fn unknown_env_variable_is_named() {
        let e = load(MINIMAL, &[("SWITCHYARD_AGENT_SLOTZ", "3")], ConfigOverrides::default()).expect_err("unknown");
        assert!(e.to_string().contains("environment variable SWITCHYARD_AGENT_SLOTZ"), "{e}");
    }

    #[test]
    fn non_loopback_listen_needs_insecure() {
        let text = format!("{MINIMAL}listen = \"0.0.0.0:7601\"\n");
        let e = load(&text, &[], ConfigOverrides::default()).expect_err("refused");
        let ConfigError::Invalid { key, message, .. } = &e else { panic!("{e}") };
        assert_eq!(key, "listen");
        assert!(message.contains("insecure = true"), "{e}");
        let config = load(&format!("{text}insecure = true\n"), &[], ConfigOverrides::default()).expect("accepted");
        assert!(config.insecure);
    }

    #[test]
    fn relative_paths_resolve_against_the_files_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        let path = dir.path().join("etc").join("agent.toml");
        std::fs::write(&path, "name = \"a\"\ndata_dir = \"data\"\npackages_dir = \"../pkgs\"\n").expect("write");
        let vars = env(&[("SWITCHYARD_AGENT_JOBS_DIR", "my-jobs")]);
        let config = AgentConfig::load(Some(&path), vars, ConfigOverrides::default()).expect("valid");
        let base = std::path::absolute(dir.path().join("etc")).expect("absolute");
        assert_eq!(config.data_dir, base.join("data"));
        assert_eq!(config.packages_dir, base.join("../pkgs"));
        assert_eq!(config.jobs_dir, base.join("my-jobs"));
    }

    #[test]
    fn without_a_file_env_and_flags_suffice() {
        let vars = env(&[("SWITCHYARD_AGENT_NAME", "a"), ("SWITCHYARD_AGENT_DATA_DIR", "/d")]);
        let config = AgentConfig::load(None, vars, ConfigOverrides::default()).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        assert!(config.jobs_dir.is_absolute());
    }

    #[test]
    fn labels_from_env_list() {
        let config = load(MINIMAL, &[("SWITCHYARD_AGENT_LABELS", "etl, gpu")], ConfigOverrides::default()).expect("ok");
        assert_eq!(config.labels, ["etl", "gpu"]);
        let config = load(MINIMAL, &[("SWITCHYARD_AGENT_LABELS", "7")], ConfigOverrides::default()).expect("ok");
        assert_eq!(config.labels, ["7"]);
        let text = format!("{MINIMAL}labels = [\"etl\"]\n");
        let config = load(&text, &[("SWITCHYARD_AGENT_LABELS", "")], ConfigOverrides::default()).expect("ok");
        assert!(config.labels.is_empty(), "an empty variable clears the labels");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = load(&format!("{MINIMAL}shutdown_grace = \"soon\"\n"), &[], ConfigOverrides::default())
            .expect_err("bad duration");
        let ConfigError::Invalid { key, origin, .. } = &e else { panic!("{e}") };
        assert_eq!(key, "shutdown_grace");
        assert!(origin.ends_with("agent.toml"), "{e}");
        let e =
            load(MINIMAL, &[("SWITCHYARD_AGENT_KILL_GRACE", "5")], ConfigOverrides::default()).expect_err("no unit");
        assert!(e.to_string().contains("`kill_grace` in environment variable SWITCHYARD_AGENT_KILL_GRACE"), "{e}");
    }

    #[test]
    fn bad_types_name_the_key() {
        let e = load(&format!("{MINIMAL}slots = -1\n"), &[], ConfigOverrides::default()).expect_err("negative");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "slots"), "{e}");
        let e = load(MINIMAL, &[("SWITCHYARD_AGENT_LISTEN", "nowhere")], ConfigOverrides::default()).expect_err("addr");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "listen"), "{e}");
        let e = load(&format!("{MINIMAL}synchronous = \"off\"\n"), &[], ConfigOverrides::default()).expect_err("enum");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "synchronous"), "{e}");
        assert!(e.to_string().contains("\"normal\" or \"full\""), "the message says what to write: {e}");
    }

    #[test]
    fn required_and_cross_field_rules() {
        let e = load("data_dir = \"/d\"\n", &[], ConfigOverrides::default()).expect_err("no name");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "name"), "{e}");
        assert!(e.to_string().contains("SWITCHYARD_AGENT_NAME"), "{e}");
        let e = load("name = \"a\"\n", &[], ConfigOverrides::default()).expect_err("no data dir");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "data_dir"), "{e}");
        let e = load(&format!("{MINIMAL}slots = 0\n"), &[], ConfigOverrides::default()).expect_err("no slots");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "slots"), "{e}");
        let e =
            load(MINIMAL, &[], ConfigOverrides { name: Some("a b".into()), ..Default::default() }).expect_err("name");
        assert!(e.to_string().contains("the flag --name"), "{e}");
        let text = format!("{MINIMAL}history_max_rows = 10\nhistory_max_rows_per_job = 20\n");
        let e = load(&text, &[], ConfigOverrides::default()).expect_err("per job above total");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "history_max_rows_per_job"), "{e}");
        let e =
            load(&format!("{MINIMAL}coordinator = \"coord\"\n"), &[], ConfigOverrides::default()).expect_err("port");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "coordinator"), "{e}");
    }

    #[test]
    fn file_problems() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.toml");
        let e = AgentConfig::load(Some(&missing), env(&[]), ConfigOverrides::default()).expect_err("missing");
        assert!(matches!(&e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("nope.toml"), "{e}");
        let e = load("name = \n", &[], ConfigOverrides::default()).expect_err("syntax");
        assert!(matches!(&e, ConfigError::Syntax { .. }), "{e}");
    }

    #[test]
    fn coordinator_addresses() {
        for good in ["127.0.0.1:7600", "coord.example:7600", "http://coord:7600", "https://coord:7600/", "[::1]:7600"] {
            assert_eq!(check_address(good), Ok(()), "{good}");
        }
        for bad in ["coord", ":7600", "coord:0", "coord:x", "ftp://coord:7600", "http://coord:7600/path", "[::1:7600"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_checks_a_config_built_in_code() {
        let config = AgentConfig { name: "a".into(), data_dir: "/d".into(), ..AgentConfig::default() };
        assert!(config.validate().is_ok());
        let config = AgentConfig { slots: 0, ..config };
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "slots"));
    }
}

#[cfg(test)]
mod deploy_example {
    use super::*;

    /// deploy/agent.toml is what operators copy: it must stay valid.
    #[test]
    fn the_deployed_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/agent.toml");
        let config = AgentConfig::load(Some(&path), Vec::<(String, String)>::new(), ConfigOverrides::default())
            .unwrap_or_else(|e| panic!("deploy/agent.toml: {e}"));
        assert_eq!(config.name, "server-a");
        assert_eq!(config.labels, ["etl"]);
        assert_eq!(config.slots, 4);
    }
}
