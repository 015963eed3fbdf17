//! The coordinator under test: a `switchyard serve` process whose coordinator.toml lists every
//! simulated agent as a static `[[agents]]` entry (default heartbeat_interval and down_after),
//! driven over gRPC from this process as `switchyard run --coordinator` would.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard_coordinator::report::Report;
use switchyard_proto as pb;
use switchyard_proto::coordinator_client::CoordinatorClient;
use tonic::transport::{Channel, Endpoint};

use crate::cluster::Process;

/// Execution statuses after which nothing more happens.
const ENDED: [&str; 5] = ["succeeded", "failed", "canceled", "completed", "ended_unexpectedly"];

/// Writes coordinator.toml in `dir` with `agents` (name, address) as static agents.
fn write_config(dir: &Path, agents: &[(String, SocketAddr)]) -> std::path::PathBuf {
    let mut text = String::from("heartbeat_interval = \"500ms\"\ndown_after = \"2s\"\n\n");
    for (name, address) in agents {
        let _ = write!(text, "[[agents]]\nname = \"{name}\"\naddress = \"http://{address}\"\n\n");
    }
    let path = dir.join("coordinator.toml");
    std::fs::write(&path, text).expect("write coordinator.toml");
    path
}

/// Starts `switchyard serve` on a free port with `agents` in its coordinator.toml and its store
/// in `dir`; call from the main thread (the child dies with the thread that spawned it).
pub fn spawn(binary: &Path, dir: &Path, agents: &[(String, SocketAddr)]) -> Process {
    let config = write_config(dir, agents);
    let mut command = Command::new(binary);
    command.arg("serve").arg("--config").arg(&config).args(["--listen", "127.0.0.1:0", "--data-dir"]);
    command.arg(dir.join("coordinator"));
    Process::spawn(command, "coordinator")
}

/// A gRPC client of the coordinator.
#[derive(Clone)]
pub struct Client(CoordinatorClient<Channel>);

impl Client {
    /// Connects to the coordinator at `address`.
    pub async fn connect(address: SocketAddr) -> Self {
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .expect("an endpoint")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect to the coordinator");
        Self(CoordinatorClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
    }

    /// Agents the coordinator lists, and how many of them are up with `slots` slots.
    pub async fn agents_up(&self, slots: u32) -> (usize, usize) {
        let agents = self.0.clone().list_agents(pb::ListAgentsRequest {}).await.expect("ListAgents").into_inner();
        let up = agents.agents.iter().filter(|a| a.state == "up" && a.slots == slots).count();
        (agents.agents.len(), up)
    }

    /// Waits (bounded) until `count` agents are up with `slots` slots; returns how long it took.
    pub async fn wait_all_up(&self, count: usize, slots: u32, deadline: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let (listed, up) = self.agents_up(slots).await;
            if listed == count && up == count {
                return started.elapsed();
            }
            assert!(started.elapsed() < deadline, "only {up} of {count} agents were up after {deadline:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Submits `package` (its TOML text) with `max_concurrent`; returns the execution id.
    pub async fn start_execution(&self, package: String, max_concurrent: i64, request_id: String) -> String {
        let request = pb::StartExecutionRequest {
            request_id,
            package: "scale.toml".into(),
            files: vec![pb::PackageFile { path: "scale.toml".into(), content: package }],
            parameters: Default::default(),
            caller: "bench".into(),
            max_concurrent,
            restart: String::new(),
        };
        self.0.clone().start_execution(request).await.expect("StartExecution").into_inner().execution_id
    }

    /// Polls GetExecution every 100 ms until the execution ends (bounded); returns it.
    pub async fn wait_ended(&self, id: &str, deadline: Duration) -> pb::Execution {
        let started = Instant::now();
        loop {
            let request = pb::GetExecutionRequest { execution_id: id.to_string() };
            let execution = self.0.clone().get_execution(request).await.expect("GetExecution").into_inner();
            if ENDED.contains(&execution.status.as_str()) {
                return execution;
            }
            assert!(started.elapsed() < deadline, "the execution did not end within {deadline:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The execution's Overview report, from GetReport's parts.
    pub async fn report(&self, id: &str) -> Report {
        let request = pb::GetReportRequest { execution_id: id.to_string(), page_size: 0 };
        let mut stream = self.0.clone().get_report(request).await.expect("GetReport").into_inner();
        let mut parts = Vec::new();
        while let Some(part) = stream.message().await.expect("a report part") {
            parts.push(part);
        }
        Report::from_proto_parts(parts).expect("a well-formed report")
    }

    /// Polls the report every 250 ms until it holds `children` child runs none of which still
    /// runs (bounded); returns the last one.
    pub async fn wait_for_outcomes(&self, id: &str, children: usize, deadline: Duration) -> Report {
        let started = Instant::now();
        loop {
            let report = self.report(id).await;
            let running = report.children.iter().any(|c| c.status == switchyard_package::engine::ChildStatus::Running);
            if (report.children.len() >= children && !running) || started.elapsed() > deadline {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
