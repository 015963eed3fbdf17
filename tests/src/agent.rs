//! A real `switchyard-agent` process for end-to-end tests: its folder (agent.toml, jobs/,
//! packages/, data/), a start that reads the bound address from stderr under a deadline, gRPC
//! clients, kill -9, SIGTERM, and a restart on the same data dir.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_proto::agent_client::AgentClient;
use tonic::transport::{Channel, Endpoint};

use crate::server::{ServerProcess, blocking};
use crate::{CommandOutput, POLL_INTERVAL, RunningProcess, Workspace, agent_bin};

/// How long an agent may take from being started to listening (building it is not counted).
pub const AGENT_START_DEADLINE: Duration = Duration::from_secs(30);

/// How long the harness waits to connect to a server that is listening.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound on each unary call (a stream's messages are not covered), so a hung agent fails the
/// test instead of hanging it.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The folder of the agent inside the test's [`Workspace`].
const AGENT_FOLDER: &str = "agent";

/// What the harness writes to agent.toml unless a test sets it: a port the OS picks, folders
/// beside agent.toml, and short grace periods so a stop or a shutdown does not slow the tests.
const DEFAULT_SETTINGS: &[(&str, &str)] = &[
    ("name", "\"e2e-agent\""),
    ("listen", "\"127.0.0.1:0\""),
    ("data_dir", "\"data\""),
    ("jobs_dir", "\"jobs\""),
    ("packages_dir", "\"packages\""),
    ("shutdown_grace", "\"2s\""),
    ("kill_grace", "\"1s\""),
];

/// An agent about to be started: its folder, settings, job files, package files and flags.
#[derive(Debug)]
pub struct AgentSetup<'w> {
    workspace: &'w Workspace,
    /// The agent's folder, relative to the workspace.
    folder: PathBuf,
    settings: Vec<(String, String)>,
    args: Vec<String>,
    tls: Option<String>,
}

impl AgentSetup<'_> {
    /// Adds a `[tls]` section: `dir/ca.pem`, `dir/STEM.pem` and `dir/STEM-key.pem`, as
    /// `switchyard certs init` writes them (STEM like `agent-server-a`).
    pub fn tls(mut self, dir: &Path, stem: &str) -> Self {
        self.tls = Some(crate::tls_section(dir, stem));
        self
    }

    /// Writes a job file into the agent's jobs_dir (read when the agent starts).
    pub fn job(self, file: &str, definition: &str) -> Self {
        self.workspace.write(self.folder.join("jobs").join(file), definition);
        self
    }

    /// Writes a package file into the agent's packages_dir.
    pub fn package(self, file: &str, text: &str) -> Self {
        self.workspace.write(self.folder.join("packages").join(file), text);
        self
    }

    /// Sets an agent.toml key to `toml_value` (TOML syntax: `"\"5s\""`, `"3"`), replacing the
    /// harness's default.
    pub fn setting(mut self, key: &str, toml_value: &str) -> Self {
        self.settings.retain(|(k, _)| k != key);
        self.settings.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Adds a command-line flag.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Writes agent.toml, starts the agent and waits until it listens.
    pub async fn start(self) -> AgentProcess {
        let folder = self.workspace.path(&self.folder);
        for sub in ["jobs", "packages"] {
            let dir = folder.join(sub);
            std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        }
        let mut text: String = self.settings.iter().map(|(key, value)| format!("{key} = {value}\n")).collect();
        text.push_str(self.tls.as_deref().unwrap_or_default());
        let config = self.workspace.write(self.folder.join("agent.toml"), &text);
        let (process, address) = launch(&folder, &config, &self.args).await;
        AgentProcess { folder, config, args: self.args, process: ServerProcess::new("agent", process), address }
    }
}

/// A running `switchyard-agent`. Dropping it sends SIGTERM, and SIGKILL when it has not ended
/// within a few seconds.
#[derive(Debug)]
pub struct AgentProcess {
    folder: PathBuf,
    config: PathBuf,
    args: Vec<String>,
    process: ServerProcess,
    address: SocketAddr,
}

impl AgentProcess {
    /// An agent whose folder lives in `workspace`, with the harness's default settings.
    pub fn setup(workspace: &Workspace) -> AgentSetup<'_> {
        let settings = DEFAULT_SETTINGS.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AgentSetup { workspace, folder: PathBuf::from(AGENT_FOLDER), settings, args: Vec::new(), tls: None }
    }

    /// An agent named `name` (in agent.toml) whose folder is `WORKSPACE/NAME`, so several agents
    /// can share one workspace; otherwise the harness's default settings.
    pub fn setup_named<'w>(workspace: &'w Workspace, name: &str) -> AgentSetup<'w> {
        let setup = Self::setup(workspace).setting("name", &format!("{name:?}"));
        AgentSetup { folder: PathBuf::from(name), ..setup }
    }

    /// The address it listens on (a new one after each restart).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://ADDRESS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Where its `http` listener (`/metrics`, `/healthz`) listens, as it printed it; panics when
    /// it has none (set `http = "127.0.0.1:0"`).
    pub async fn http_address(&self) -> SocketAddr {
        crate::eventually_async(AGENT_START_DEADLINE, "the agent to print its http address", || async {
            crate::http::printed_http_address(&self.stderr_so_far(), "/healthz on ")
        })
        .await
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The folder holding agent.toml, jobs/, packages/ and data/.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The agent's data dir (history, outbox, pushed packages).
    pub fn data_dir(&self) -> PathBuf {
        self.folder.join("data")
    }

    /// What the agent printed on stderr since it was last started.
    pub fn stderr_so_far(&self) -> String {
        self.process.stderr_so_far()
    }

    /// A new HTTP/2 channel to the agent; each unary call on it is bounded.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url())
            .expect("a socket address makes a valid URL")
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the agent at {}: {e}\n{}", self.url(), self.stderr_so_far()))
    }

    /// A client of the `switchyard.v1.Agent` service on a new channel.
    pub async fn client(&self) -> AgentClient<Channel> {
        AgentClient::new(self.channel().await)
    }

    /// Sends SIGTERM (a graceful shutdown) without waiting.
    pub fn send_sigterm(&self) {
        self.process.send_sigterm();
    }

    /// Waits for the agent to exit, at most `deadline` (then kills it and panics).
    pub async fn wait_for_exit(&mut self, deadline: Duration) -> CommandOutput {
        self.process.wait_for_exit(deadline).await
    }

    /// SIGTERM, then waits for the agent to exit, at most `deadline`.
    pub async fn terminate(&mut self, deadline: Duration) -> CommandOutput {
        self.send_sigterm();
        self.wait_for_exit(deadline).await
    }

    /// SIGKILL (a crash), and waits for the process to be gone.
    pub async fn kill9(&mut self) -> CommandOutput {
        self.process.kill9().await
    }

    /// Starts the agent again with the same agent.toml and data dir, after it exited.
    pub async fn restart(&mut self) {
        self.process.assert_stopped();
        let (process, address) = launch(&self.folder, &self.config, &self.args).await;
        self.process.replace(process);
        self.address = address;
    }
}

/// Starts the agent binary with `--config CONFIG ARGS` and waits for its "listening on" line.
async fn launch(folder: &Path, config: &Path, args: &[String]) -> (RunningProcess, SocketAddr) {
    let bin = blocking(agent_bin).await;
    let mut command = Command::new(bin);
    command.arg("--config").arg(config).args(args).current_dir(folder);
    // The test's own environment must not reconfigure the agent.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().to_uppercase().starts_with("SWITCHYARD_AGENT_") {
            command.env_remove(key);
        }
    }
    let mut process = RunningProcess::spawn(&mut command);
    let started = Instant::now();
    loop {
        let stderr = process.stderr_so_far();
        if let Some(address) = bound_address(&stderr) {
            return (process, address);
        }
        if let Some(status) = process.exit_status() {
            panic!("the agent exited ({status}) before listening\n--- stderr ---\n{}", process.stderr_so_far());
        }
        if started.elapsed() >= AGENT_START_DEADLINE {
            panic!("the agent did not print its address within {AGENT_START_DEADLINE:?}\n--- stderr ---\n{stderr}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The address of `switchyard-agent "NAME" listening on 127.0.0.1:PORT`, once printed.
fn bound_address(stderr: &str) -> Option<SocketAddr> {
    stderr.lines().find_map(|line| {
        let (_, rest) = line.split_once("listening on ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bound_address_is_read_from_the_listening_line() {
        let stderr = "2026-01-01 INFO starting\nswitchyard-agent \"a-1\" listening on 127.0.0.1:40123\n";
        assert_eq!(bound_address(stderr), Some("127.0.0.1:40123".parse().expect("address")));
        assert_eq!(bound_address("switchyard-agent \"a\" listening on 127.0.0."), None);
    }
}
