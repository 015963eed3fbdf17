//! Failures of real processes under a real coordinator (DESIGN.md §4: retries and failover,
//! fencing, nothing lost, liveness, failure simulation): the cluster the `failures_*` modules
//! start, where each agent has its own labels, slots and jobs and the coordinator its own
//! settings, and the helpers they share (agent states, drain, chaos, signals).

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use switchyard_proto::ListAgentsRequest;
use switchyard_tests::{
    AgentProcess, CommandOutput, CoordinatorProcess, Workspace, eventually_async, switchyard_async,
};

use crate::agent::{WAIT, quick_job, wait_for_status};
use crate::coordinator::Cluster;

/// One agent of a [`FailureClusterSetup`].
struct AgentSpec {
    name: String,
    settings: Vec<(String, String)>,
    jobs: Vec<(String, String)>,
}

/// A cluster about to be started: agents with their own settings and jobs, and coordinator
/// settings over the harness's defaults (heartbeat 200ms, down_after 1s).
pub(crate) struct FailureClusterSetup {
    ws: Workspace,
    agents: Vec<AgentSpec>,
    coordinator_settings: Vec<(String, String)>,
}

impl FailureClusterSetup {
    /// A cluster in `ws` with no agents yet.
    pub(crate) fn new(ws: Workspace) -> Self {
        Self { ws, agents: Vec::new(), coordinator_settings: Vec::new() }
    }

    /// Adds an agent named `name` with these labels and slots.
    pub(crate) fn agent(mut self, name: &str, labels: &[&str], slots: u32) -> Self {
        let settings = vec![
            ("labels".to_string(), format!("{labels:?}")),
            ("slots".to_string(), slots.to_string()),
            ("shutdown_grace".to_string(), "\"1s\"".to_string()),
        ];
        self.agents.push(AgentSpec { name: name.to_string(), settings, jobs: Vec::new() });
        self
    }

    /// Sets an agent.toml key of the agent `name` (TOML syntax).
    pub(crate) fn agent_setting(mut self, name: &str, key: &str, toml_value: &str) -> Self {
        let spec = self.spec(name);
        spec.settings.retain(|(k, _)| k != key);
        spec.settings.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Writes a job file into the jobs_dir of every agent added so far.
    pub(crate) fn job(mut self, file: &str, definition: &str) -> Self {
        for spec in &mut self.agents {
            spec.jobs.push((file.to_string(), definition.to_string()));
        }
        self
    }

    /// Writes a job file into the jobs_dir of the agent `name` only.
    pub(crate) fn agent_job(mut self, name: &str, file: &str, definition: &str) -> Self {
        self.spec(name).jobs.push((file.to_string(), definition.to_string()));
        self
    }

    /// Sets a coordinator.toml key (TOML syntax), replacing the harness's default.
    pub(crate) fn coordinator_setting(mut self, key: &str, toml_value: &str) -> Self {
        self.coordinator_settings.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Starts the agents, then a coordinator naming them, and waits until it sees them all up.
    pub(crate) async fn start(self) -> Cluster {
        let mut agents = BTreeMap::new();
        for spec in &self.agents {
            let mut setup = AgentProcess::setup_named(&self.ws, &spec.name);
            for (key, value) in &spec.settings {
                setup = setup.setting(key, value);
            }
            for (file, definition) in &spec.jobs {
                setup = setup.job(file, definition);
            }
            agents.insert(spec.name.clone(), setup.start().await);
        }
        let mut setup = CoordinatorProcess::setup(&self.ws);
        for (key, value) in &self.coordinator_settings {
            setup = setup.setting(key, value);
        }
        for (name, agent) in &agents {
            setup = setup.agent(name, agent);
        }
        let coordinator = setup.start().await;
        let client = coordinator.client().await;
        let cluster = Cluster { client, coordinator, agents, ws: self.ws };
        let names: Vec<String> = self.agents.iter().map(|spec| spec.name.clone()).collect();
        eventually_async(WAIT, "the coordinator to see every agent up", || async {
            let mut client = cluster.client.clone();
            let listed = client.list_agents(ListAgentsRequest {}).await.ok()?.into_inner().agents;
            let up = |name: &String| listed.iter().any(|a| &a.name == name && a.state == "up" && a.slots > 0);
            names.iter().all(up).then_some(())
        })
        .await;
        cluster
    }

    fn spec(&mut self, name: &str) -> &mut AgentSpec {
        self.agents
            .iter_mut()
            .find(|spec| spec.name == name)
            .unwrap_or_else(|| panic!("add the agent {name} before configuring it"))
    }
}

/// A job whose only step runs `script` with `sh -c`; up to 10 runs of it at once on one agent,
/// so only the agent's slots limit it.
pub(crate) fn script_job(name: &str, script: &str) -> String {
    format!(
        "name = \"{name}\"\nconcurrency = \"allow\"\nmax_running = 10\n\n[[steps]]\nname = \"run\"\n\
         command = [\"sh\", \"-c\", {script:?}]\n"
    )
}

/// Polls `switchyard agents --json` until the agent `name` is in `state`; returns its record.
pub(crate) async fn wait_for_agent_state(cluster: &Cluster, name: &str, state: &str) -> Value {
    wait_for_agent_state_within(cluster, name, state, WAIT).await
}

/// [`wait_for_agent_state`] with a deadline of its own.
pub(crate) async fn wait_for_agent_state_within(
    cluster: &Cluster,
    name: &str,
    state: &str,
    deadline: Duration,
) -> Value {
    let what = format!("`switchyard agents --json` to show {name} {state}");
    eventually_async(deadline, &what, || async {
        let mut agents = cluster.agents_json().await;
        let agent = agents.remove(name).unwrap_or_else(|| panic!("the coordinator does not list {name}"));
        (agent["state"] == state).then_some(agent)
    })
    .await
}

/// `switchyard drain NAME --coordinator ADDR`, or with `--undo` when `undo`.
pub(crate) async fn drain(cluster: &Cluster, name: &str, placements: Placements) -> CommandOutput {
    let address = cluster.address();
    let mut args = vec!["drain", name, "--coordinator", address.as_str()];
    if placements == Placements::Resume {
        args.push("--undo");
    }
    let out = switchyard_async(args).await;
    out.assert_exit(0);
    out
}

/// Whether [`drain`] stops placements on an agent or resumes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placements {
    Stop,
    Resume,
}

/// `switchyard chaos --coordinator ADDR --agent NAME ARGS`, expecting the agent to take it.
pub(crate) async fn chaos(cluster: &Cluster, name: &str, args: &[&str]) -> CommandOutput {
    let address = cluster.address();
    let mut all = vec!["chaos", "--coordinator", address.as_str(), "--agent", name];
    all.extend_from_slice(args);
    let out = switchyard_async(all).await;
    out.assert_exit(0);
    out
}

/// Sends `signal` to the agent process (SIGSTOP to hang it, SIGCONT to let it go on).
pub(crate) fn signal_agent(agent: &AgentProcess, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(agent.pid()).expect("process ids fit in i32"));
    kill(pid, signal).unwrap_or_else(|e| panic!("cannot send {signal} to the agent {pid}: {e}"));
}

/// The value of an integer JSON field.
#[track_caller]
pub(crate) fn number(value: &Value) -> u64 {
    value.as_u64().unwrap_or_else(|| panic!("{value} is not a non-negative integer"))
}

/// Polls `switchyard report ID --json` of an ended execution until no child shows `running`
/// (child rows are written behind the execution); returns that report.
pub(crate) async fn settled_report(cluster: &Cluster, execution_id: &str) -> Value {
    let what = format!("the report of execution {execution_id} to show every child's outcome");
    let last = std::sync::Mutex::new(Value::Null);
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let report = cluster.report_json(execution_id).await;
            let children = report["children"].as_array().unwrap_or_else(|| panic!("no children list:\n{report:#}"));
            if children.iter().all(|c| c["status"] != "running") {
                return report;
            }
            *last.lock().unwrap_or_else(|p| p.into_inner()) = report;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        let last = last.lock().unwrap_or_else(|p| p.into_inner());
        panic!("timed out after {WAIT:?} waiting for {what}; the last report:\n{last:#}")
    })
}

/// One waited `work` job with one retry: the package of the superseded-attempt scenarios.
const SUPERSEDED_WORK: &str = r#"[package]
name = "superseded"

[[tasks]]
name = "Work"
kind = "agent_job"
pool = "etl"
job = "work"
wait = true
retries = 1
retry_backoff = "100ms"
"#;

/// Sends SIGCONT to the process with this pid when dropped, so a test that stopped an agent
/// never leaves it stopped, even when it panics.
pub(crate) struct ContinueOnDrop(pub(crate) u32);

impl Drop for ContinueOnDrop {
    fn drop(&mut self) {
        let pid = Pid::from_raw(i32::try_from(self.0).expect("process ids fit in i32"));
        let _ = kill(pid, Signal::SIGCONT);
    }
}

/// The start of the superseded-attempt scenarios: server-a (whose `work` job succeeds at once)
/// is drained while the first attempt of [`SUPERSEDED_WORK`]'s task `Work` goes to server-b (whose
/// `work` outlives the test unless stopped), then takes work again. Returns the cluster
/// (down_after 1 s), the execution id, the first child (running on server-b) and a client of
/// server-b.
pub(crate) async fn first_attempt_on_server_b()
-> (Cluster, String, switchyard_proto::ChildRow, switchyard_proto::agent_client::AgentClient<tonic::transport::Channel>)
{
    let cluster = FailureClusterSetup::new(Workspace::new())
        .agent("server-a", &["etl"], 2)
        .agent("server-b", &["etl"], 2)
        .agent_job("server-a", "work.toml", &quick_job("work", ""))
        .agent_job("server-b", "work.toml", &script_job("work", "sleep 120"))
        .coordinator_setting("down_after", "\"1s\"")
        .start()
        .await;
    drain(&cluster, "server-a", Placements::Stop).await;
    wait_for_agent_state(&cluster, "server-a", "draining").await;
    let package = cluster.package("superseded.toml", SUPERSEDED_WORK);
    let execution_id = cluster.detach(&package).await;
    let first = cluster.wait_for_child(&execution_id, "Work", "running").await;
    assert_eq!(first.agent, "server-b", "{first:?}");
    let b_client = cluster.agent_client("server-b").await;
    wait_for_status(&b_client, &first.run_id, switchyard_proto::RunStatus::Running).await;
    drain(&cluster, "server-a", Placements::Resume).await;
    wait_for_agent_state(&cluster, "server-a", "up").await;
    (cluster, execution_id, first, b_client)
}
