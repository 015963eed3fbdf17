//! A real `switchyard serve` process for end-to-end tests: its folder (coordinator.toml naming
//! the agents, data/), a start on a port the OS picks that reads the bound address from stderr
//! under a deadline, a gRPC client, kill -9, SIGTERM, and a restart on the same data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_proto::coordinator_client::CoordinatorClient;
use tonic::transport::{Channel, Endpoint};

use crate::server::{ServerProcess, blocking};
use crate::{AgentProcess, CommandOutput, POLL_INTERVAL, RunningProcess, Workspace, switchyard_bin};

/// How long a coordinator may take from being started to listening (building it is not counted).
pub const COORDINATOR_START_DEADLINE: Duration = Duration::from_secs(30);

/// How long the harness waits to connect to a server that is listening.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound on each unary call (a stream's messages are not covered), so a hung coordinator fails
/// the test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The folder of the coordinator inside the test's [`Workspace`].
const COORDINATOR_FOLDER: &str = "coordinator";

/// The line `switchyard serve` prints once it listens; the address follows it.
const LISTENING: &str = "switchyard coordinator listening on ";

/// What the harness writes to coordinator.toml unless a test sets it: a heartbeat fast enough
/// that agents come up (and are seen down) within a fraction of a second.
const DEFAULT_SETTINGS: &[(&str, &str)] =
    &[("data_dir", "\"data\""), ("heartbeat_interval", "\"200ms\""), ("down_after", "\"1s\"")];

/// An agent as coordinator.toml names it.
#[derive(Debug, Clone)]
struct StaticAgent {
    name: String,
    address: String,
    labels: Option<Vec<String>>,
}

/// A coordinator about to be started: its settings and the agents its coordinator.toml names.
#[derive(Debug)]
pub struct CoordinatorSetup<'w> {
    workspace: &'w Workspace,
    settings: Vec<(String, String)>,
    agents: Vec<StaticAgent>,
    tls: Option<String>,
    args: Vec<String>,
}

impl CoordinatorSetup<'_> {
    /// Names `agent` in coordinator.toml as `name` (it should match the agent's own name), with
    /// the labels the agent reports.
    pub fn agent(self, name: &str, agent: &AgentProcess) -> Self {
        self.agent_at(name, &agent.url(), None)
    }

    /// Names an agent at `address` (`host:port` or `http://host:port`); `labels`, when given,
    /// override what the agent reports.
    pub fn agent_at(mut self, name: &str, address: &str, labels: Option<&[&str]>) -> Self {
        let labels = labels.map(|labels| labels.iter().map(|l| l.to_string()).collect());
        self.agents.push(StaticAgent { name: name.to_string(), address: address.to_string(), labels });
        self
    }

    /// Sets a top-level coordinator.toml key to `toml_value` (TOML syntax: `"\"5s\""`,
    /// `"\"round_robin\""`), replacing the harness's default.
    pub fn setting(mut self, key: &str, toml_value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Adds a command-line flag of `switchyard serve` (or a global one, such as `--log-format`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Adds a `[tls]` section: `dir/ca.pem`, `dir/coordinator.pem` and `dir/coordinator-key.pem`,
    /// as `switchyard certs init` writes them.
    pub fn tls(mut self, dir: &Path) -> Self {
        self.tls = Some(crate::tls_section(dir, "coordinator"));
        self
    }

    /// Writes coordinator.toml, starts `switchyard serve` and waits until it listens.
    pub async fn start(self) -> CoordinatorProcess {
        let folder = self.workspace.path(COORDINATOR_FOLDER);
        let data_dir = folder.join("data");
        std::fs::create_dir_all(&data_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", data_dir.display()));
        let config = self.workspace.write(Path::new(COORDINATOR_FOLDER).join("coordinator.toml"), &self.toml());
        let (process, address) = launch(&folder, &config, &data_dir, &self.args).await;
        let process = ServerProcess::new("coordinator", process);
        CoordinatorProcess { folder, config, data_dir, args: self.args, process, address }
    }

    fn toml(&self) -> String {
        let mut text: String = self.settings.iter().map(|(key, value)| format!("{key} = {value}\n")).collect();
        for agent in &self.agents {
            text.push_str(&format!("\n[[agents]]\nname = {:?}\naddress = {:?}\n", agent.name, agent.address));
            if let Some(labels) = &agent.labels {
                text.push_str(&format!("labels = {labels:?}\n"));
            }
        }
        text.push_str(self.tls.as_deref().unwrap_or_default());
        text
    }
}

/// A running `switchyard serve`. Dropping it sends SIGTERM, and SIGKILL when it has not ended
/// within a few seconds.
#[derive(Debug)]
pub struct CoordinatorProcess {
    folder: PathBuf,
    config: PathBuf,
    data_dir: PathBuf,
    args: Vec<String>,
    process: ServerProcess,
    address: SocketAddr,
}

impl CoordinatorProcess {
    /// A coordinator whose folder lives in `workspace`, with the harness's default settings and
    /// no agents yet.
    pub fn setup(workspace: &Workspace) -> CoordinatorSetup<'_> {
        let settings = DEFAULT_SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CoordinatorSetup { workspace, settings, agents: Vec::new(), tls: None, args: Vec::new() }
    }

    /// The address it listens on (a new one after each restart).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where its `http` listener (the dashboard, `/metrics`) listens, as it printed it; panics
    /// when it has none (set `http = "127.0.0.1:0"`).
    pub async fn http_address(&self) -> SocketAddr {
        crate::eventually_async(
            COORDINATOR_START_DEADLINE,
            "the coordinator to print its dashboard address",
            || async { crate::http::printed_http_address(&self.stderr_so_far(), "dashboard on ") },
        )
        .await
    }

    /// `http://ADDRESS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The coordinator's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The folder holding coordinator.toml and data/.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The coordinator's data dir (its store and the packages of executions).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What the coordinator printed on stderr since it was last started.
    pub fn stderr_so_far(&self) -> String {
        self.process.stderr_so_far()
    }

    /// A new HTTP/2 channel to the coordinator; each unary call on it is bounded.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("a socket address makes a valid URL")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .unwrap_or_else(|e| {
                panic!("cannot connect to the coordinator at {}: {e}\n{}", self.url(), self.stderr_so_far())
            })
    }

    /// A client of the `switchyard.v1.Coordinator` service on a new channel.
    pub async fn client(&self) -> CoordinatorClient<Channel> {
        CoordinatorClient::new(self.channel().await)
    }

    /// Sends SIGTERM (a graceful shutdown) without waiting.
    pub fn send_sigterm(&self) {
        self.process.send_sigterm();
    }

    /// Waits for the coordinator to exit, at most `deadline` (then kills it and panics).
    pub async fn wait_for_exit(&mut self, deadline: Duration) -> CommandOutput {
        self.process.wait_for_exit(deadline).await
    }

    /// SIGTERM, then waits for the coordinator to exit, at most `deadline`.
    pub async fn terminate(&mut self, deadline: Duration) -> CommandOutput {
        self.send_sigterm();
        self.wait_for_exit(deadline).await
    }

    /// SIGKILL (a crash), and waits for the process to be gone.
    pub async fn kill9(&mut self) -> CommandOutput {
        self.process.kill9().await
    }

    /// Starts the coordinator again with the same coordinator.toml and data dir, after it
    /// exited. It listens on a new port the OS picks.
    pub async fn restart(&mut self) {
        self.process.assert_stopped();
        let (process, address) = launch(&self.folder, &self.config, &self.data_dir, &self.args).await;
        self.process.replace(process);
        self.address = address;
    }
}

/// Starts `switchyard serve --config CONFIG --listen 127.0.0.1:0 --data-dir DATA ARGS...` and
/// waits for its "listening on" line.
async fn launch(folder: &Path, config: &Path, data_dir: &Path, args: &[String]) -> (RunningProcess, SocketAddr) {
    let bin = blocking(switchyard_bin).await;
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .current_dir(folder);
    // The test's own environment must not reconfigure the coordinator.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().to_uppercase().starts_with("SWITCHYARD_COORDINATOR_") {
            command.env_remove(key);
        }
    }
    let mut process = RunningProcess::spawn(&mut command);
    let started = Instant::now();
    loop {
        let stderr = process.stderr_so_far();
        if let Some(address) = listening_address(&stderr) {
            return (process, address);
        }
        if let Some(status) = process.exit_status() {
            panic!("the coordinator exited ({status}) before listening\n--- stderr ---\n{}", process.stderr_so_far());
        }
        if started.elapsed() >= COORDINATOR_START_DEADLINE {
            panic!(
                "the coordinator did not print its address within {COORDINATOR_START_DEADLINE:?}\n--- stderr ---\n{stderr}"
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The address of `switchyard coordinator listening on 127.0.0.1:PORT`, once printed.
fn listening_address(stderr: &str) -> Option<SocketAddr> {
    stderr.lines().find_map(|line| line.split_once(LISTENING)?.1.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_address_is_read_from_the_listening_line() {
        let stderr = "INFO agent added address=127.0.0.1:1\nswitchyard coordinator listening on 127.0.0.1:40123\n";
        assert_eq!(listening_address(stderr), Some("127.0.0.1:40123".parse().expect("address")));
        assert_eq!(listening_address("switchyard coordinator listening on 127.0."), None);
    }

    #[test]
    fn coordinator_toml_names_the_agents_with_their_labels() {
        let ws = Workspace::new();
        let setup = CoordinatorProcess::setup(&ws)
            .setting("placement", "\"round_robin\"")
            .agent_at("server-a", "http://127.0.0.1:7601", Some(&["etl", "solo"]))
            .agent_at("server-b", "127.0.0.1:7602", None);
        let text = setup.toml();
        let parsed: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed["placement"].as_str(), Some("round_robin"));
        assert_eq!(parsed["heartbeat_interval"].as_str(), Some("200ms"));
        let agents = parsed["agents"].as_array().expect("[[agents]]");
        assert_eq!(agents.len(), 2);
        assert_eq!(agents[0]["name"].as_str(), Some("server-a"));
        assert_eq!(agents[0]["labels"].as_array().map(Vec::len), Some(2));
        assert_eq!(agents[1]["address"].as_str(), Some("127.0.0.1:7602"));
        assert!(agents[1].get("labels").is_none(), "{text}");
    }
}
