//! Tests of coordinator.toml loading: layers, origins in messages, paths, agents and rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_settings::testing::{assert_file_problems_are_named, env, load_text};

use super::*;

const MINIMAL: &str = "data_dir = \"/var/lib/switchyard/coordinator\"\n";

fn load(text: &str, vars: &[(&str, &str)], overrides: ConfigOverrides) -> Result<CoordinatorConfig, ConfigError> {
    load_text("coordinator.toml", text, vars, overrides)
}

#[test]
fn defaults() {
    let config = load(MINIMAL, &[("PATH", "/bin")], ConfigOverrides::default()).expect("valid");
    let expected =
        CoordinatorConfig { data_dir: "/var/lib/switchyard/coordinator".into(), ..CoordinatorConfig::default() };
    assert_eq!(config, expected);
    assert_eq!(config.listen, "127.0.0.1:7600".parse().expect("addr"));
    assert_eq!((config.heartbeat_interval, config.down_after), (Duration::from_millis(500), Duration::from_secs(2)));
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
    assert_eq!((config.heartbeat_interval, config.down_after), (Duration::from_millis(100), Duration::from_secs(1)));
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
    let ConfigError::UnknownKey { key, origin, .. } = &e else { panic!("{e}") };
    assert_eq!(key, "heartbeat");
    assert!(origin.contains("coordinator.toml:"), "the file and line: {e}");
    let e =
        load(MINIMAL, &[("SWITCHYARD_COORDINATOR_PLACMENT", "x")], ConfigOverrides::default()).expect_err("unknown");
    assert!(e.to_string().contains("environment variable SWITCHYARD_COORDINATOR_PLACMENT"), "{e}");
    let text = format!("{MINIMAL}[[agents]]\nname = \"a\"\naddress = \"127.0.0.1:7601\"\nlabel = [\"etl\"]\n");
    let e = load(&text, &[], ConfigOverrides::default()).expect_err("unknown agent field");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key.starts_with("agents")), "{e}");
    assert!(e.to_string().contains("label"), "{e}");
}

#[test]
fn non_loopback_addresses_need_insecure() {
    for key in ["listen", "http"] {
        let text = format!("{MINIMAL}{key} = \"0.0.0.0:7600\"\n");
        let refused = load(&text, &[], ConfigOverrides::default()).expect_err("refused");
        assert!(
            matches!(&refused, ConfigError::Invalid { key: k, message, .. } if k == key && message.contains("insecure = true")),
            "{refused}"
        );
        let accepted = load(&format!("{text}insecure = true\n"), &[], ConfigOverrides::default()).expect("accepted");
        assert!(accepted.insecure, "{key}");
    }
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
    let e =
        load(&format!("{MINIMAL}down_after = \"soon\"\n"), &[], ConfigOverrides::default()).expect_err("bad duration");
    let ConfigError::Invalid { key, origin, .. } = &e else { panic!("{e}") };
    assert_eq!(key, "down_after");
    assert!(origin.contains("coordinator.toml:"), "the file and line: {e}");
    let e = load(MINIMAL, &[("SWITCHYARD_COORDINATOR_START_TIMEOUT", "5")], ConfigOverrides::default())
        .expect_err("no unit");
    assert!(e.to_string().contains("`start_timeout` in environment variable SWITCHYARD_COORDINATOR_START_TIMEOUT"));
    let e = load(&format!("{MINIMAL}placement = \"random\"\n"), &[], ConfigOverrides::default()).expect_err("enum");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "placement"), "{e}");
    assert!(e.to_string().contains("\"least_loaded\" or \"round_robin\""), "{e}");
    let e =
        load(MINIMAL, &[("SWITCHYARD_COORDINATOR_LISTEN", "nowhere")], ConfigOverrides::default()).expect_err("addr");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "listen"), "{e}");
}

#[test]
fn required_and_cross_field_rules() {
    let e = load("", &[], ConfigOverrides::default()).expect_err("no data dir");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "data_dir"), "{e}");
    assert!(e.to_string().contains("SWITCHYARD_COORDINATOR_DATA_DIR"), "{e}");
    let e =
        load(&format!("{MINIMAL}heartbeat_interval = \"0s\"\n"), &[], ConfigOverrides::default()).expect_err("zero");
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
    // The second agent's name is on the file's line after MINIMAL and the first agent (3 lines).
    let line = MINIMAL.lines().count() + 5;
    assert!(e.to_string().contains(&format!("coordinator.toml:{line}:8: ")), "the line of the second name: {e}");
    let e = load(&format!("{MINIMAL}{}", agent("a", "coord")), &[], ConfigOverrides::default()).expect_err("port");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "agents[0].address"), "{e}");
    let e = load(&format!("{MINIMAL}{}", agent("a", "https://h:1")), &[], ConfigOverrides::default()).expect_err("tls");
    assert!(e.to_string().contains("no TLS is configured"), "{e}");
    let e = load(&format!("{MINIMAL}{}", agent("a b", "h:1")), &[], ConfigOverrides::default()).expect_err("name");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "agents[0].name"), "{e}");
    let text = format!("{MINIMAL}{}labels = [\"-x\"]\n", agent("a", "h:1"));
    let e = load(&text, &[], ConfigOverrides::default()).expect_err("label");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "agents[0].labels"), "{e}");
}

#[test]
fn file_problems_name_the_coordinator_config() {
    assert_file_problems_are_named::<CoordinatorConfig>(ConfigOverrides::default);
}

#[test]
fn agent_addresses() {
    for (given, url) in [
        ("127.0.0.1:7601", "http://127.0.0.1:7601"),
        ("agent.example:7601", "http://agent.example:7601"),
        ("http://agent:7601/", "http://agent:7601"),
        ("[::1]:7601", "http://[::1]:7601"),
    ] {
        assert_eq!(agent_url(given, Transport::Plain).as_deref(), Ok(url), "{given}");
    }
    for bad in ["agent", ":7601", "agent:0", "agent:x", "ftp://agent:7601", "http://agent:7601/path", "[::1:7601"] {
        assert!(agent_url(bad, Transport::Plain).is_err(), "{bad}");
    }
    assert!(agent_url("https://agent:7601", Transport::Plain).expect_err("tls").contains("`[tls]`"));
    assert_eq!(agent_url("agent:7601", Transport::Tls).as_deref(), Ok("https://agent:7601"));
    assert!(agent_url("http://agent:7601", Transport::Tls).expect_err("plain").contains("TLS is configured"));
}

#[test]
fn validate_checks_a_config_built_in_code() {
    let config = CoordinatorConfig { data_dir: "/d".into(), ..CoordinatorConfig::default() };
    assert!(config.validate().is_ok());
    let config = CoordinatorConfig { down_after: Duration::from_millis(100), ..config };
    assert!(matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "down_after"));
}

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
