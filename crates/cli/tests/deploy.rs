//! deploy/ cannot rot (DESIGN.md §12): its example configs load with the real loaders, the
//! compose cluster's files agree with each other (names, pinned addresses, mounted folders), the
//! jobs and packages it mounts and the cluster example load, and the systemd units start the
//! binaries with flags they take. (The compose cluster itself runs in tests/compose/.)

use std::collections::BTreeMap;
use std::path::PathBuf;

use switchyard_agent::config::{AgentConfig, ConfigOverrides as AgentOverrides};
use switchyard_coordinator::config::{ConfigOverrides as CoordinatorOverrides, CoordinatorConfig};
use switchyard_settings::Settings;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn agent_config(relative: &str, env: Vec<(String, String)>) -> AgentConfig {
    AgentConfig::load(Some(&root().join(relative)), env, AgentOverrides::default())
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn coordinator_config(relative: &str) -> CoordinatorConfig {
    CoordinatorConfig::load(
        Some(&root().join(relative)),
        Vec::<(String, String)>::new(),
        CoordinatorOverrides::default(),
    )
    .unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// `name: value` of every line of the compose file whose key is `key`, in order.
fn values<'a>(compose: &'a str, key: &str) -> Vec<&'a str> {
    compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix(key)?.strip_prefix(':'))
        .map(|value| value.trim().trim_matches('"'))
        .collect()
}

#[test]
fn the_compose_configs_load_and_name_the_agents_at_their_pinned_addresses() {
    let coordinator = coordinator_config("deploy/compose/coordinator.toml");
    assert!(coordinator.insecure && !coordinator.listen.ip().is_loopback(), "it listens for the other containers");
    assert_eq!(coordinator.executions_max, 1000);

    let compose = read("deploy/docker-compose.yml");
    let names = values(&compose, "SWITCHYARD_AGENT_NAME");
    let addresses = values(&compose, "ipv4_address");
    assert_eq!(names, ["server-a", "server-b", "server-c"], "one agent service per name");
    assert_eq!(addresses.len(), 4, "the coordinator and three agents have pinned addresses");
    let pinned: BTreeMap<&str, &str> = names.iter().copied().zip(addresses[1..].iter().copied()).collect();
    assert_eq!(coordinator.agents.len(), 3);
    for agent in &coordinator.agents {
        let ip = pinned.get(agent.name.as_str()).unwrap_or_else(|| panic!("no service for agent {}", agent.name));
        assert_eq!(
            agent.address,
            format!("http://{ip}:7601"),
            "coordinator.toml reaches {} at its pinned address",
            agent.name
        );
    }
    let coordinator_ip = addresses[0];
    assert_eq!(coordinator.listen.port(), 7600);
    assert!(compose.contains(&format!("ipv4_address: {coordinator_ip}")));

    for name in names {
        let env = vec![("SWITCHYARD_AGENT_NAME".to_string(), name.to_string())];
        let agent = agent_config("deploy/compose/agent.toml", env);
        assert_eq!(agent.name, name);
        assert!(agent.insecure && !agent.listen.ip().is_loopback());
        assert_eq!(agent.listen.port(), 7601);
        assert_eq!(agent.labels, ["etl"], "the example jobs run on pool etl");
    }
}

#[test]
fn what_the_compose_file_mounts_exists_and_the_mounted_jobs_load_with_their_packages() {
    let compose = read("deploy/docker-compose.yml");
    let mounts: Vec<(&str, &str)> = compose
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .filter(|mount| mount.starts_with("./") || mount.starts_with("../"))
        .filter_map(|mount| mount.split_once(':'))
        .collect();
    assert!(mounts.len() >= 4, "the configs, jobs, packages and examples are mounted: {mounts:?}");
    for (host, container) in &mounts {
        let path = root().join("deploy").join(host);
        assert!(path.exists(), "{host} (mounted on {container}) does not exist");
    }
    let packages = root().join("examples/demo/packages");
    let jobs = switchyard_jobs::load_job_files(&root().join("examples/demo/jobs"), |p| packages.join(p))
        .unwrap_or_else(|e| panic!("the mounted jobs: {e}"));
    assert!(!jobs.is_empty());
}

#[test]
fn the_cluster_example_loads_with_the_job_it_deploys() {
    let parent = root().join("examples/cluster/parent.toml");
    switchyard_package::load_package(&parent).unwrap_or_else(|e| panic!("examples/cluster/parent.toml: {e}"));
    let packages = root().join("examples/cluster/packages");
    let jobs = switchyard_jobs::load_job_files(&root().join("examples/cluster/jobs"), |p| packages.join(p))
        .unwrap_or_else(|e| panic!("examples/cluster/jobs: {e}"));
    assert_eq!(jobs.iter().map(|j| j.name.as_str()).collect::<Vec<_>>(), ["crunch"]);
}

#[test]
fn the_dockerfile_pulls_nothing_and_copies_what_the_build_script_prepares() {
    let dockerfile = read("deploy/Dockerfile");
    let froms: Vec<&str> = dockerfile.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms, ["FROM scratch"], "no base image can be pulled");
    let script = read("tests/compose/build-image.sh");
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            let file = source.rsplit('/').next().unwrap_or(source);
            assert!(script.contains(file), "build-image.sh does not prepare {source} ({line})");
        }
    }
}

/// The `ExecStart=` command of a unit, split on spaces (the units quote nothing).
fn exec_start(unit: &str) -> Vec<String> {
    let text = read(&format!("deploy/systemd/{unit}"));
    let line =
        text.lines().find_map(|l| l.strip_prefix("ExecStart=")).unwrap_or_else(|| panic!("{unit}: no ExecStart"));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn the_systemd_units_start_each_binary_with_a_config_of_its_own_and_are_hardened() {
    let coordinator = exec_start("switchyard-coordinator.service");
    assert_eq!(coordinator[..3], ["/usr/local/bin/switchyard", "serve", "--config"]);
    let agent = exec_start("switchyard-agent.service");
    assert_eq!(agent[..2], ["/usr/local/bin/switchyard-agent", "--config"]);
    for unit in ["switchyard-coordinator.service", "switchyard-agent.service"] {
        let text = read(&format!("deploy/systemd/{unit}"));
        for setting in ["User=switchyard", "NoNewPrivileges=yes", "ProtectSystem=strict", "StateDirectory=switchyard"] {
            assert!(text.lines().any(|l| l == setting), "{unit} lacks {setting}");
        }
    }
    // `switchyard serve` takes what its unit passes: checked by running it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard")).args(["serve", "--help"]).output();
    let help = String::from_utf8_lossy(&out.expect("run switchyard serve --help").stdout).into_owned();
    assert!(help.contains("--config"), "switchyard serve takes --config:\n{help}");
    assert!(help.contains("--log-format"), "switchyard serve takes --log-format:\n{help}");
}
