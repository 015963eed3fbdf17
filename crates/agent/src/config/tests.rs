//! Tests of agent.toml loading: layers, origins in messages, paths and rules.

use std::path::{Path, PathBuf};
use std::time::Duration;

use switchyard_settings::testing::{assert_file_problems_are_named, config_file, env, load_text};

use super::*;

/// Writes `text` as agent.toml in a fresh dir.
fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
    config_file("agent.toml", text)
}

const MINIMAL: &str = "name = \"server-a\"\ndata_dir = \"/var/lib/switchyard/agent\"\n";

fn load(text: &str, vars: &[(&str, &str)], overrides: ConfigOverrides) -> Result<AgentConfig, ConfigError> {
    load_text("agent.toml", text, vars, overrides)
}

#[test]
fn defaults() {
    let (dir, path) = file(MINIMAL);
    let config = AgentConfig::load(Some(&path), env(&[("PATH", "/bin")]), ConfigOverrides::default()).expect("valid");
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
    assert_eq!((config.slots, config.output_limit, config.output_cap()), (4, None, 1 << 20));
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
    assert_eq!((config.output_cap(), config.history_max_rows, config.history_max_rows_per_job), (1024, 50, 10));
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
    let ConfigError::UnknownKey { key, origin, .. } = &e else { panic!("{e}") };
    assert_eq!(key, "slot");
    assert!(origin.ends_with("agent.toml:3:8"), "the file, line and column: {e}");
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
    assert!(message.contains("insecure = true") && message.contains("[tls]"), "{e}");
    let config = load(&format!("{text}insecure = true\n"), &[], ConfigOverrides::default()).expect("accepted");
    assert!(config.insecure);
}

#[test]
fn tls_paths_resolve_against_the_files_folder_and_allow_any_listen_address() {
    let text = format!(
        "{MINIMAL}listen = \"0.0.0.0:7601\"\ncoordinator = \"coord:7600\"\n[tls]\nca = \"certs/ca.pem\"\n\
         cert = \"certs/agent.pem\"\nkey = \"/etc/agent-key.pem\"\n"
    );
    let (dir, path) = file(&text);
    let config = AgentConfig::load(Some(&path), env(&[]), ConfigOverrides::default()).expect("valid");
    let base = std::path::absolute(dir.path()).expect("absolute");
    let tls = config.tls.expect("tls");
    assert_eq!(tls.ca, base.join("certs/ca.pem"));
    assert_eq!(tls.cert, base.join("certs/agent.pem"));
    assert_eq!(tls.key, PathBuf::from("/etc/agent-key.pem"));
    let e = load(
        &format!("{text}\n"),
        &[],
        ConfigOverrides { coordinator: Some("http://coord:7600".into()), ..Default::default() },
    )
    .expect_err("plain http with tls");
    assert!(e.to_string().contains("TLS is configured"), "{e}");
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
    assert!(origin.ends_with("agent.toml:3:18"), "the file, line and column: {e}");
    let e = load(MINIMAL, &[("SWITCHYARD_AGENT_KILL_GRACE", "5")], ConfigOverrides::default()).expect_err("no unit");
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
    let e = load(MINIMAL, &[], ConfigOverrides { name: Some("a b".into()), ..Default::default() }).expect_err("name");
    assert!(e.to_string().contains("the flag --name"), "{e}");
    let text = format!("{MINIMAL}history_max_rows = 10\nhistory_max_rows_per_job = 20\n");
    let e = load(&text, &[], ConfigOverrides::default()).expect_err("per job above total");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "history_max_rows_per_job"), "{e}");
    let e = load(&format!("{MINIMAL}coordinator = \"coord\"\n"), &[], ConfigOverrides::default()).expect_err("port");
    assert!(matches!(&e, ConfigError::Invalid { key, .. } if key == "coordinator"), "{e}");
}

#[test]
fn file_problems_name_the_agent_config() {
    assert_file_problems_are_named::<AgentConfig>(ConfigOverrides::default);
}

#[test]
fn coordinator_addresses_follow_the_one_address_rule() {
    for good in ["127.0.0.1:7600", "coord.example:7600", "http://coord:7600/", " [::1]:7600 "] {
        let config = load(MINIMAL, &[], ConfigOverrides { coordinator: Some(good.into()), ..Default::default() });
        assert!(config.is_ok(), "{good}: {config:?}");
    }
    for bad in ["coord", ":7600", "coord:0", "ftp://coord:7600", "http://coord:7600/path", "[::1:7600"] {
        let e =
            load(MINIMAL, &[], ConfigOverrides { coordinator: Some(bad.into()), ..Default::default() }).expect_err(bad);
        assert!(e.to_string().starts_with("`coordinator` in the flag --coordinator: "), "{e}");
    }
    let e = load(&format!("{MINIMAL}coordinator = \"https://coord:7600\"\n"), &[], ConfigOverrides::default())
        .expect_err("no TLS configured");
    assert!(e.to_string().contains("no TLS is configured") && e.to_string().contains("`[tls]`"), "{e}");
}

#[test]
fn validate_checks_a_config_built_in_code() {
    let config = AgentConfig { name: "a".into(), data_dir: "/d".into(), ..AgentConfig::default() };
    assert!(config.validate().is_ok());
    let config = AgentConfig { slots: 0, ..config };
    assert!(matches!(config.validate(), Err(ConfigError::Invalid { key, .. }) if key == "slots"));
}

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
