//! The coordinator's configuration (`coordinator.toml`): built-in defaults, then the file, then
//! `SWITCHYARD_COORDINATOR_*` environment variables, then command-line flags; then `validate()`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::placement::PlacementStrategy;

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
    "agents",
];

/// The coordinator's settings. After [`CoordinatorConfig::load`] `data_dir` is absolute.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CoordinatorConfig {
    pub listen: SocketAddr,
    /// Allows a non-loopback `listen` (or `http`) while there is no TLS.
    pub insecure: bool,
    /// The dashboard and `/metrics`; off unless set.
    pub http: Option<SocketAddr>,
    /// Required; the coordinator's store lives here.
    pub data_dir: PathBuf,
    /// How often each agent is asked for its load.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// An agent that has not answered for this long is down (a hang or a partition).
    #[serde(with = "humantime_serde")]
    pub down_after: Duration,
    /// How a `pool` picks its agent.
    pub placement: PlacementStrategy,
    /// The deadline of one StartJob call.
    #[serde(with = "humantime_serde")]
    pub start_timeout: Duration,
    /// Static agents; others may register themselves.
    pub agents: Vec<StaticAgent>,
}

/// An agent named in coordinator.toml (`[[agents]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticAgent {
    pub name: String,
    /// `host:port` or `http://host:port`.
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
            agents: Vec::new(),
        }
    }
}

/// Settings given as command-line flags; they override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct ConfigOverrides {
    pub listen: Option<SocketAddr>,
    /// A relative path resolves against the current dir (it was typed in a shell).
    pub data_dir: Option<PathBuf>,
    pub http: Option<SocketAddr>,
    pub insecure: Option<bool>,
    pub placement: Option<PlacementStrategy>,
}

/// Why the configuration cannot be used. `origin` says where the value came from: the file,
/// an environment variable or a flag.
#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    #[error("cannot read coordinator config {}: {source}; check the path given with --config", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("coordinator config {} is not valid TOML: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error("unknown key `{key}` in {origin}; remove it or fix its spelling (known keys: {})", KEYS.join(", "))]
    UnknownKey { key: String, origin: String },
    #[error("`{key}` in {origin}: {message}")]
    Invalid { key: String, origin: String, message: String },
    #[error("coordinator config: {0}")]
    Other(String),
}

impl CoordinatorConfig {
    /// Layers built-in defaults, the file (optional), environment `SWITCHYARD_COORDINATOR_*`
    /// (`__` separates nested keys) and the flags; resolves a relative `data_dir` against the
    /// file's folder (the current dir without a file), then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: ConfigOverrides,
    ) -> Result<CoordinatorConfig, ConfigError> {
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
        // No `try_parsing`: every typed field parses its own text.
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
        let mut config: CoordinatorConfig =
            layered.try_deserialize().map_err(|e| from_config_error(e, file, &origins))?;

        config.apply(overrides.clone());
        let base = match file.and_then(Path::parent) {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = std::path::absolute(&base)
            .map_err(|e| ConfigError::Other(format!("cannot resolve {}: {e}", base.display())))?;
        if !config.data_dir.as_os_str().is_empty() && config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        config.check(&|key| origins.of(key))?;
        Ok(config)
    }

    /// Rules across fields: a data dir, loopback addresses unless `insecure`, positive
    /// durations with `heartbeat_interval` below `down_after`, and agents with unique valid
    /// names, reachable addresses and valid labels.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check(&|_| "the coordinator config".to_string())
    }

    fn check(&self, origin_of: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
        let invalid =
            |key: &str, message: String| ConfigError::Invalid { key: key.to_string(), origin: origin_of(key), message };
        if self.data_dir.as_os_str().is_empty() {
            return Err(invalid(
                "data_dir",
                "the coordinator needs a data dir for its store: set `data_dir = \"/var/lib/switchyard/coordinator\"` \
                 in coordinator.toml, SWITCHYARD_COORDINATOR_DATA_DIR or --data-dir"
                    .to_string(),
            ));
        }
        for (key, address) in [("listen", Some(self.listen)), ("http", self.http)] {
            if let Some(address) = address
                && !address.ip().is_loopback()
                && !self.insecure
            {
                return Err(invalid(
                    key,
                    format!(
                        "{address} is not a loopback address and there is no TLS yet, so anyone who can reach it \
                         could run packages: listen on 127.0.0.1, or set `insecure = true` to accept that"
                    ),
                ));
            }
        }
        for (key, value) in [
            ("heartbeat_interval", self.heartbeat_interval),
            ("down_after", self.down_after),
            ("start_timeout", self.start_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0, like \"500ms\"".to_string()));
            }
        }
        if self.heartbeat_interval >= self.down_after {
            return Err(invalid(
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
            if !is_valid_name(&agent.name) {
                return Err(invalid(
                    &key("name"),
                    format!(
                        "`{}` is not a valid agent name: use 1 to 128 letters, digits, '_', '.' or '-', \
                         not starting with '.' or '-'",
                        agent.name
                    ),
                ));
            }
            if !names.insert(agent.name.as_str()) {
                return Err(invalid(&key("name"), format!("agent \"{}\" is listed twice", agent.name)));
            }
            if let Err(problem) = agent_url(&agent.address) {
                return Err(invalid(&key("address"), format!("agent \"{}\": {problem}", agent.name)));
            }
            if let Some(label) = agent.labels.iter().flatten().find(|l| !is_valid_name(l)) {
                return Err(invalid(
                    &key("labels"),
                    format!(
                        "`{label}` is not a valid label: use 1 to 128 letters, digits, '_', '.' or '-', \
                         not starting with '.' or '-'"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn apply(&mut self, overrides: ConfigOverrides) {
        let ConfigOverrides { listen, data_dir, http, insecure, placement } = overrides;
        if let Some(listen) = listen {
            self.listen = listen;
        }
        if let Some(dir) = data_dir {
            self.data_dir = std::path::absolute(&dir).unwrap_or(dir);
        }
        if let Some(http) = http {
            self.http = Some(http);
        }
        if let Some(insecure) = insecure {
            self.insecure = insecure;
        }
        if let Some(placement) = placement {
            self.placement = placement;
        }
    }
}

/// The URL of an agent's address: `host:port` or `http://host:port` (a trailing `/` allowed)
/// becomes `http://host:port`. `https://` is refused until TLS exists.
pub fn agent_url(address: &str) -> Result<String, String> {
    let expected = "expected host:port or http://host:port, like \"127.0.0.1:7601\"";
    if address.starts_with("https://") {
        return Err(format!("`{address}`: https (TLS to agents) is not supported yet; use http://host:port"));
    }
    let rest = address.strip_prefix("http://").unwrap_or(address);
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
    Ok(format!("http://{host}:{port}"))
}

/// An agent name or a label: 1 to 128 letters, digits, '_', '.' or '-', not starting with '.'
/// or '-' (the agent's own rule).
pub fn is_valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Where each layer's values came from, for messages.
struct Origins<'a> {
    file: Option<&'a Path>,
    env: &'a [(String, String)],
    overrides: &'a ConfigOverrides,
}

impl Origins<'_> {
    /// The layer that set `key` last (a field path like `agents[0].name` is looked up by its key).
    fn of(&self, key: &str) -> String {
        let key = key.split(['.', '[']).next().unwrap_or(key);
        let o = self.overrides;
        let flagged = match key {
            "listen" => o.listen.is_some(),
            "data_dir" => o.data_dir.is_some(),
            "http" => o.http.is_some(),
            "insecure" => o.insecure.is_some(),
            "placement" => o.placement.is_some(),
            _ => false,
        };
        if flagged {
            return format!("the flag --{}", key.replace('_', "-"));
        }
        let env_key = format!("{ENV_PREFIX}_{key}").to_uppercase();
        let from_env = self.env.iter().rev().find(|(k, _)| {
            let k = k.to_uppercase();
            k == env_key || k.starts_with(&format!("{env_key}__"))
        });
        if let Some((var, _)) = from_env {
            return format!("environment variable {var}");
        }
        match self.file {
            Some(path) => format!("coordinator config {}", path.display()),
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
        "heartbeat_interval" | "down_after" | "start_timeout" => "a duration like \"500ms\", \"2s\" or \"1m\"",
        "placement" => "\"least_loaded\" or \"round_robin\"",
        "listen" | "http" => "an ip:port like \"127.0.0.1:7600\"",
        "insecure" => "true or false",
        "agents" => {
            "a list of tables like [[agents]] name = \"server-a\" address = \"127.0.0.1:7601\" labels = [\"etl\"]"
        }
        _ => return message,
    };
    format!("{message}; write {example}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Writes `text` as coordinator.toml in a fresh dir.
    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("coordinator.toml");
        std::fs::write(&path, text).expect("write");
        (dir, path)
    }

    const MINIMAL: &str = "data_dir = \"/var/lib/switchyard/coordinator\"\n";

    fn load(text: &str, vars: &[(&str, &str)], overrides: ConfigOverrides) -> Result<CoordinatorConfig, ConfigError> {
        let (_dir, path) = file(text);
        CoordinatorConfig::load(Some(&path), env(vars), overrides)
    }

    #[test]
    fn defaults() {
        let config = load(MINIMAL, &[("PATH", "/bin")], ConfigOverrides::default()).expect("valid");
        let expected =
            CoordinatorConfig { data_dir: "/var/lib/switchyard/coordinator".into(), ..CoordinatorConfig::default() };
        assert_eq!(config, expected);
        assert_eq!(config.listen, "127.0.0.1:7600".parse().expect("addr"));
        assert_eq!(
            (config.heartbeat_interval, config.down_after),
            (Duration::from_millis(500), Duration::from_secs(2))
        );
        assert_eq!(config.start_timeout, Duration::from_secs(5));
        assert_eq!(config.placement, PlacementStrategy::LeastLoaded);
        assert!(config.http.is_none() && config.agents.is_empty() && !config.insecure);
    }

    #[test]
    fn file_values() {
        let text = r#"listen = "127.0.0.1:9000"
http = "127.0.0.1:9080"
data_dir = "/data"
heartbeat_interval = "100ms"
down_after = "1s"
placement = "round_robin"
start_timeout = "10s"

[[agents]]
name = "server-a"
address = "http://127.0.0.1:7601"
labels = ["etl"]

[[agents]]
name = "server-b"
address = "localhost:7602"
"#;
        let config = load(text, &[], ConfigOverrides::default()).expect("valid");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.http, Some("127.0.0.1:9080".parse().expect("addr")));
        assert_eq!(
            (config.heartbeat_interval, config.down_after),
            (Duration::from_millis(100), Duration::from_secs(1))
        );
        assert_eq!(config.placement, PlacementStrategy::RoundRobin);
        assert_eq!(config.start_timeout, Duration::from_secs(10));
        let expected = [
            StaticAgent {
                name: "server-a".into(),
                address: "http://127.0.0.1:7601".into(),
                labels: Some(vec!["etl".into()]),
            },
            StaticAgent { name: "server-b".into(), address: "localhost:7602".into(), labels: None },
        ];
        assert_eq!(config.agents, expected);
    }

    #[test]
    fn env_overrides_file() {
        let vars = [
            ("SWITCHYARD_COORDINATOR_DOWN_AFTER", "3s"),
            ("SWITCHYARD_COORDINATOR_PLACEMENT", "round_robin"),
            ("SWITCHYARD_COORDINATOR_INSECURE", "true"),
            ("SWITCHYARD_COORDINATOR_LISTEN", "0.0.0.0:7600"),
            ("SWITCHYARD_COORDINATOR_CONFIG", "/elsewhere/coordinator.toml"),
            ("OTHER_DOWN_AFTER", "1s"),
        ];
        let config = load(&format!("{MINIMAL}down_after = \"4s\"\n"), &vars, ConfigOverrides::default()).expect("ok");
        assert_eq!(config.down_after, Duration::from_secs(3));
        assert_eq!(config.placement, PlacementStrategy::RoundRobin);
        assert!(config.insecure);
        assert_eq!(config.listen, "0.0.0.0:7600".parse().expect("addr"));
    }

    #[test]
    fn flags_override_env() {
        let vars = [("SWITCHYARD_COORDINATOR_LISTEN", "127.0.0.1:8000")];
        let overrides = ConfigOverrides {
            listen: Some("127.0.0.1:9000".parse().expect("addr")),
            data_dir: Some("/flag/data".into()),
            placement: Some(PlacementStrategy::RoundRobin),
            ..ConfigOverrides::default()
        };
        let config = load(MINIMAL, &vars, overrides).expect("valid");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.data_dir, PathBuf::from("/flag/data"));
        assert_eq!(config.placement, PlacementStrategy::RoundRobin);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = load(&format!("{MINIMAL}heartbeat = \"1s\"\n"), &[], ConfigOverrides::default()).expect_err("unknown");
        let ConfigError::UnknownKey { key, origin } = &e else { panic!("{e}") };
        assert_eq!(key, "heartbeat");
        assert!(origin.ends_with("coordinator.toml"), "{e}");
        let e = load(MINIMAL, &[("SWITCHYARD_COORDINATOR_PLACMENT", "x")], ConfigOverrides::default())
            .expect_err("unknown");
        assert!(e.to_string().contains("environment variable SWITCHYARD_COORDINATOR_PLACMENT"), "{e}");
        let text = format!("{MINIMAL}[[agents]]\nname = \"a\"\naddress = \"127.0.0.1:7601\"\nlabel = [\"etl\"]\n");
        let e = load(&text, &[], ConfigOverrides::default()).expect_err("unknown agent field");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key.starts_with("agents")), "{e}");
        assert!(e.to_string().contains("label"), "{e}");
    }

    #[test]
    fn non_loopback_addresses_need_insecure() {
        let text = format!("{MINIMAL}listen = \"0.0.0.0:7600\"\n");
        let e = load(&text, &[], ConfigOverrides::default()).expect_err("refused");
        let ConfigError::Invalid { key, message, .. } = &e else { panic!("{e}") };
        assert_eq!(key, "listen");
        assert!(message.contains("insecure = true"), "{e}");
        let config = load(&format!("{text}insecure = true\n"), &[], ConfigOverrides::default()).expect("accepted");
        assert!(config.insecure);
        let e =
            load(&format!("{MINIMAL}http = \"0.0.0.0:7680\"\n"), &[], ConfigOverrides::default()).expect_err("refused");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "http"), "{e}");
    }

    #[test]
    fn relative_data_dir_resolves_against_the_files_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("etc")).expect("mkdir");
        let path = dir.path().join("etc").join("coordinator.toml");
        std::fs::write(&path, "data_dir = \"data\"\n").expect("write");
        let config = CoordinatorConfig::load(Some(&path), env(&[]), ConfigOverrides::default()).expect("valid");
        let base = std::path::absolute(dir.path().join("etc")).expect("absolute");
        assert_eq!(config.data_dir, base.join("data"));
    }

    #[test]
    fn without_a_file_env_and_flags_suffice() {
        let vars = env(&[("SWITCHYARD_COORDINATOR_DATA_DIR", "/d")]);
        let config = CoordinatorConfig::load(None, vars, ConfigOverrides::default()).expect("valid");
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        let config = CoordinatorConfig::load(
            None,
            env(&[]),
            ConfigOverrides { data_dir: Some("rel".into()), ..ConfigOverrides::default() },
        )
        .expect("valid");
        assert!(config.data_dir.is_absolute());
    }

    #[test]
    fn bad_values_name_the_key_and_origin() {
        let e = load(&format!("{MINIMAL}down_after = \"soon\"\n"), &[], ConfigOverrides::default())
            .expect_err("bad duration");
        let ConfigError::Invalid { key, origin, .. } = &e else { panic!("{e}") };
        assert_eq!(key, "down_after");
        assert!(origin.ends_with("coordinator.toml"), "{e}");
        let e = load(MINIMAL, &[("SWITCHYARD_COORDINATOR_START_TIMEOUT", "5")], ConfigOverrides::default())
            .expect_err("no unit");
        assert!(e.to_string().contains("`start_timeout` in environment variable SWITCHYARD_COORDINATOR_START_TIMEOUT"));
        let e = load(&format!("{MINIMAL}placement = \"random\"\n"), &[], ConfigOverrides::default()).expect_err("enum");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "placement"), "{e}");
        assert!(e.to_string().contains("\"least_loaded\" or \"round_robin\""), "{e}");
        let e = load(MINIMAL, &[("SWITCHYARD_COORDINATOR_LISTEN", "nowhere")], ConfigOverrides::default())
            .expect_err("addr");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "listen"), "{e}");
    }

    #[test]
    fn required_and_cross_field_rules() {
        let e = load("", &[], ConfigOverrides::default()).expect_err("no data dir");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "data_dir"), "{e}");
        assert!(e.to_string().contains("SWITCHYARD_COORDINATOR_DATA_DIR"), "{e}");
        let e = load(&format!("{MINIMAL}heartbeat_interval = \"0s\"\n"), &[], ConfigOverrides::default())
            .expect_err("zero");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "heartbeat_interval"), "{e}");
        let text = format!("{MINIMAL}heartbeat_interval = \"2s\"\ndown_after = \"1s\"\n");
        let e = load(&text, &[], ConfigOverrides::default()).expect_err("down before a heartbeat");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "down_after"), "{e}");
    }

    #[test]
    fn agents_need_unique_names_and_valid_addresses() {
        let agent = |name: &str, address: &str| format!("[[agents]]\nname = \"{name}\"\naddress = \"{address}\"\n");
        let text = format!("{MINIMAL}{}{}", agent("a", "127.0.0.1:7601"), agent("a", "127.0.0.1:7602"));
        let e = load(&text, &[], ConfigOverrides::default()).expect_err("duplicate");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "agents[1].name"), "{e}");
        assert!(e.to_string().contains("listed twice"), "{e}");
        let e = load(&format!("{MINIMAL}{}", agent("a", "coord")), &[], ConfigOverrides::default()).expect_err("port");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "agents[0].address"), "{e}");
        let e =
            load(&format!("{MINIMAL}{}", agent("a", "https://h:1")), &[], ConfigOverrides::default()).expect_err("tls");
        assert!(e.to_string().contains("not supported yet"), "{e}");
        let e = load(&format!("{MINIMAL}{}", agent("a b", "h:1")), &[], ConfigOverrides::default()).expect_err("name");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "agents[0].name"), "{e}");
        let text = format!("{MINIMAL}{}labels = [\"-x\"]\n", agent("a", "h:1"));
        let e = load(&text, &[], ConfigOverrides::default()).expect_err("label");
        assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "agents[0].labels"), "{e}");
    }

    #[test]
    fn file_problems() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.toml");
        let e = CoordinatorConfig::load(Some(&missing), env(&[]), ConfigOverrides::default()).expect_err("missing");
        assert!(matches!(&e, ConfigError::Read { .. }), "{e}");
        assert!(e.to_string().contains("nope.toml"), "{e}");
        let e = load("data_dir = \n", &[], ConfigOverrides::default()).expect_err("syntax");
        assert!(matches!(&e, ConfigError::Syntax { .. }), "{e}");
    }

    #[test]
    fn agent_addresses() {
        for (given, url) in [
            ("127.0.0.1:7601", "http://127.0.0.1:7601"),
            ("agent.example:7601", "http://agent.example:7601"),
            ("http://agent:7601/", "http://agent:7601"),
            ("[::1]:7601", "http://[::1]:7601"),
        ] {
            assert_eq!(agent_url(given).as_deref(), Ok(url), "{given}");
        }
        for bad in ["agent", ":7601", "agent:0", "agent:x", "ftp://agent:7601", "http://agent:7601/path", "[::1:7601"] {
            assert!(agent_url(bad).is_err(), "{bad}");
        }
        assert!(agent_url("https://agent:7601").expect_err("tls").contains("not supported yet"));
    }

    #[test]
    fn validate_checks_a_config_built_in_code() {
        let config = CoordinatorConfig { data_dir: "/d".into(), ..CoordinatorConfig::default() };
        assert!(config.validate().is_ok());
        let config = CoordinatorConfig { down_after: Duration::from_millis(100), ..config };
        assert!(matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "down_after"));
    }
}

#[cfg(test)]
mod deploy_example {
    use super::*;

    /// deploy/coordinator.toml is what operators copy: it must stay valid.
    #[test]
    fn the_deployed_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/coordinator.toml");
        let config = CoordinatorConfig::load(Some(&path), Vec::<(String, String)>::new(), ConfigOverrides::default())
            .unwrap_or_else(|e| panic!("deploy/coordinator.toml: {e}"));
        assert_eq!(config.listen, DEFAULT_LISTEN.parse().expect("addr"));
        assert_eq!(config.placement, PlacementStrategy::LeastLoaded);
        assert_eq!(config.agents.len(), 3);
        assert_eq!(config.agents[0].name, "server-a");
        assert_eq!(config.agents[0].labels.as_deref(), Some(&["etl".to_string()][..]));
    }
}
