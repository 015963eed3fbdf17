//! A real coordinator (`switchyard serve`) over three real agents (DESIGN.md §4, §5, §6, §9):
//! the cluster the `coordinator_*` modules start, the helpers they share, and the idempotent
//! submission of an execution.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use prost_types::Timestamp;
use serde_json::Value;
use switchyard_proto::agent_client::AgentClient;
use switchyard_proto::coordinator_client::CoordinatorClient;
use switchyard_proto::{
    ChildRow, Execution, GetExecutionRequest, GetReportRequest, HistoryStatus, ListAgentsRequest,
    ListExecutionsRequest, PackageFile, StartExecutionRequest, TaskRow, report_part,
};
use switchyard_tests::{
    AgentProcess, CommandOutput, CoordinatorProcess, Workspace, eventually_async, switchyard_async, within,
};
use tonic::transport::Channel;

use crate::agent::{WAIT, history, quick_job, row_status};
use crate::run_cli::single_json_object;

/// The agents of every cluster, in the order they start; all labelled `etl`.
pub(crate) const AGENTS: [&str; 3] = ["server-a", "server-b", "server-c"];

/// Execution statuses after which nothing changes (DESIGN.md §3).
const ENDED: &[&str] = &["succeeded", "failed", "canceled", "ended_unexpectedly", "completed"];

/// A cluster about to be started: job files every agent gets, and settings per agent.
pub(crate) struct ClusterSetup {
    ws: Workspace,
    jobs: Vec<(String, String)>,
    agent_settings: Vec<(String, String, String)>,
    coordinator_settings: Vec<(String, String)>,
}

impl ClusterSetup {
    /// Writes a job file into every agent's jobs_dir.
    pub(crate) fn job(mut self, file: &str, definition: &str) -> Self {
        self.jobs.push((file.to_string(), definition.to_string()));
        self
    }

    /// Sets an agent.toml key of one agent (TOML syntax), over the cluster's defaults.
    pub(crate) fn agent_setting(mut self, agent: &str, key: &str, toml_value: &str) -> Self {
        self.agent_settings.push((agent.to_string(), key.to_string(), toml_value.to_string()));
        self
    }

    /// Sets a coordinator.toml key (TOML syntax).
    pub(crate) fn coordinator_setting(mut self, key: &str, toml_value: &str) -> Self {
        self.coordinator_settings.push((key.to_string(), toml_value.to_string()));
        self
    }

    /// Starts the agents, then a coordinator naming them, and waits until it sees them all up.
    pub(crate) async fn start(self) -> Cluster {
        let mut agents = BTreeMap::new();
        for name in AGENTS {
            let mut setup = AgentProcess::setup_named(&self.ws, name)
                .setting("labels", "[\"etl\"]")
                .setting("slots", "4")
                .setting("shutdown_grace", "\"1s\"");
            for (file, definition) in &self.jobs {
                setup = setup.job(file, definition);
            }
            for (_, key, value) in self.agent_settings.iter().filter(|(agent, _, _)| agent == name) {
                setup = setup.setting(key, value);
            }
            agents.insert(name.to_string(), setup.start().await);
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
        cluster.wait_until_every_agent_is_up().await;
        cluster
    }
}

/// A coordinator process and three agent processes; dropped in that order, then the folder.
pub(crate) struct Cluster {
    pub(crate) client: CoordinatorClient<Channel>,
    pub(crate) coordinator: CoordinatorProcess,
    pub(crate) agents: BTreeMap<String, AgentProcess>,
    pub(crate) ws: Workspace,
}

impl Cluster {
    /// A cluster in `ws`: agents server-a, server-b and server-c, labelled `etl`, 4 slots each.
    pub(crate) fn setup(ws: Workspace) -> ClusterSetup {
        ClusterSetup { ws, jobs: Vec::new(), agent_settings: Vec::new(), coordinator_settings: Vec::new() }
    }

    /// The agent named `name`.
    pub(crate) fn agent(&self, name: &str) -> &AgentProcess {
        self.agents.get(name).unwrap_or_else(|| panic!("no agent named {name} in the cluster"))
    }

    /// The agent named `name`, to kill or restart it.
    pub(crate) fn agent_mut(&mut self, name: &str) -> &mut AgentProcess {
        self.agents.get_mut(name).unwrap_or_else(|| panic!("no agent named {name} in the cluster"))
    }

    /// A gRPC client of the agent named `name`.
    pub(crate) async fn agent_client(&self, name: &str) -> AgentClient<Channel> {
        self.agent(name).client().await
    }

    /// The coordinator's address as the CLI takes it.
    pub(crate) fn address(&self) -> String {
        self.coordinator.address().to_string()
    }

    /// Writes a package file into the workspace; returns its path.
    pub(crate) fn package(&self, relative: &str, text: &str) -> PathBuf {
        self.ws.write(relative, text)
    }

    /// `switchyard run PKG --coordinator ADDR --json`: the whole output.
    pub(crate) async fn run(&self, package: &Path) -> CommandOutput {
        let package = package.to_string_lossy().into_owned();
        switchyard_async(["run", package.as_str(), "--coordinator", &self.address(), "--json"]).await
    }

    /// `switchyard run PKG --coordinator ADDR --json`, expecting `exit_code`; returns the report.
    pub(crate) async fn run_expecting(&self, package: &Path, exit_code: i32) -> Value {
        let out = self.run(package).await;
        out.assert_exit(exit_code);
        let report = single_json_object(&out.stdout);
        assert!(report["execution_id"].as_str().is_some_and(|id| !id.is_empty()), "{out}");
        report
    }

    /// `switchyard run PKG --coordinator ADDR --detach`: the execution id it prints.
    pub(crate) async fn detach(&self, package: &Path) -> String {
        let package = package.to_string_lossy().into_owned();
        let out = switchyard_async(["run", package.as_str(), "--coordinator", &self.address(), "--detach"]).await;
        out.assert_exit(0);
        let id = out.stdout.trim().to_string();
        assert!(!id.is_empty() && !id.contains(char::is_whitespace), "--detach prints the execution id alone\n{out}");
        id
    }

    /// `switchyard report ID --coordinator ADDR --json`: the report of DESIGN.md §9.
    pub(crate) async fn report_json(&self, execution_id: &str) -> Value {
        let out = switchyard_async(["report", execution_id, "--coordinator", &self.address(), "--json"]).await;
        out.assert_exit(0);
        single_json_object(&out.stdout)
    }

    /// `switchyard agents --coordinator ADDR --json`: the agents by name.
    pub(crate) async fn agents_json(&self) -> BTreeMap<String, Value> {
        let out = switchyard_async(["agents", "--coordinator", &self.address(), "--json"]).await;
        out.assert_exit(0);
        let listed = single_json_object(&out.stdout);
        let agents = listed["agents"].as_array().unwrap_or_else(|| panic!("no agents list\n{out}"));
        agents.iter().map(|a| (a["name"].as_str().expect("an agent has a name").to_string(), a.clone())).collect()
    }

    /// The report as GetReport streams it, gathered.
    pub(crate) async fn report(&self, execution_id: &str) -> GrpcReport {
        let request = GetReportRequest { execution_id: execution_id.to_string(), page_size: 0 };
        let mut client = self.client.clone();
        let mut parts =
            client.get_report(request).await.unwrap_or_else(|e| panic!("GetReport {execution_id}: {e:?}")).into_inner();
        let mut report = GrpcReport::default();
        while let Some(part) = within(WAIT, "the next report part", parts.message())
            .await
            .unwrap_or_else(|e| panic!("GetReport {execution_id}: {e:?}"))
        {
            match part.part {
                Some(report_part::Part::Execution(execution)) => report.execution = Some(execution),
                Some(report_part::Part::Tasks(tasks)) => report.tasks.extend(tasks.rows),
                Some(report_part::Part::Children(children)) => report.children.extend(children.rows),
                None => {}
            }
        }
        report
    }

    /// Polls GetReport until the child of `task` has `status`; returns it.
    pub(crate) async fn wait_for_child(&self, execution_id: &str, task: &str, status: &str) -> ChildRow {
        let what = format!("the child of {task} in execution {execution_id} to be {status}");
        eventually_async(WAIT, &what, || async {
            let report = self.report(execution_id).await;
            report.children.into_iter().find(|c| c.task == task && c.status == status)
        })
        .await
    }

    /// The execution as GetExecution shows it now.
    pub(crate) async fn execution(&self, execution_id: &str) -> Execution {
        let request = GetExecutionRequest { execution_id: execution_id.to_string() };
        let mut client = self.client.clone();
        client
            .get_execution(request)
            .await
            .unwrap_or_else(|e| panic!("GetExecution {execution_id}: {e:?}"))
            .into_inner()
    }

    /// Polls GetExecution until the execution has ended; returns it.
    pub(crate) async fn wait_for_end(&self, execution_id: &str) -> Execution {
        eventually_async(WAIT, &format!("execution {execution_id} to end"), || async {
            let execution = self.execution(execution_id).await;
            ENDED.contains(&execution.status.as_str()).then_some(execution)
        })
        .await
    }

    /// Kills the coordinator with SIGKILL, starts it again on the same data dir (on a new port),
    /// and connects [`Cluster::client`] to it.
    pub(crate) async fn kill9_and_restart_coordinator(&mut self) {
        let killed = self.coordinator.kill9().await;
        assert_eq!(killed.code, None, "killed by a signal\n{killed}");
        self.coordinator.restart().await;
        self.client = self.coordinator.client().await;
    }

    /// Polls ListAgents until every agent is up with its slots known.
    async fn wait_until_every_agent_is_up(&self) {
        eventually_async(WAIT, "the coordinator to see every agent up", || async {
            let mut client = self.client.clone();
            let agents = client.list_agents(ListAgentsRequest {}).await.ok()?.into_inner().agents;
            let up = agents.iter().filter(|a| a.state == "up" && a.slots > 0).count();
            (up == AGENTS.len()).then_some(())
        })
        .await;
    }
}

/// An execution's report as GetReport streams it.
#[derive(Debug, Default)]
pub(crate) struct GrpcReport {
    pub(crate) execution: Option<Execution>,
    pub(crate) tasks: Vec<TaskRow>,
    pub(crate) children: Vec<ChildRow>,
}

/// The children of the §9 report whose task is `task`.
pub(crate) fn children_of<'a>(report: &'a Value, task: &str) -> Vec<&'a Value> {
    let children = report["children"].as_array().unwrap_or_else(|| panic!("no children list:\n{report:#}"));
    children.iter().filter(|c| c["task"] == task).collect()
}

/// The one child of the §9 report whose task is `task`.
#[track_caller]
pub(crate) fn only_child<'a>(report: &'a Value, task: &str) -> &'a Value {
    match children_of(report, task)[..] {
        [child] => child,
        ref other => panic!("expected one child of {task}, found {}:\n{report:#}", other.len()),
    }
}

/// A protobuf timestamp as a UTC time.
#[track_caller]
pub(crate) fn utc(at: Option<&Timestamp>) -> DateTime<Utc> {
    let at = at.expect("the timestamp is set");
    DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).expect("nanos are positive"))
        .expect("a timestamp in range")
}

/// A string field of a JSON value.
#[track_caller]
pub(crate) fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_else(|| panic!("{value} is not a string"))
}

/// A package with one `agent_job` task, sent as the only file of a submission.
const ONE_AGENT_JOB: &str = r#"[package]
name = "submitted-once"

[[tasks]]
name = "Quick"
kind = "agent_job"
pool = "etl"
job = "quick"
wait = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_start_execution_with_the_same_request_id_is_one_execution() {
    let mut cluster = Cluster::setup(Workspace::new()).job("quick.toml", &quick_job("quick", "")).start().await;
    let request = StartExecutionRequest {
        request_id: "e2e-submission-1".to_string(),
        package: "once.toml".to_string(),
        files: vec![PackageFile { path: "once.toml".to_string(), content: ONE_AGENT_JOB.to_string() }],
        caller: "e2e".to_string(),
        ..StartExecutionRequest::default()
    };

    // A client that lost the reply sends again, possibly while the first is still in flight.
    let (mut first, mut second) = (cluster.client.clone(), cluster.client.clone());
    let (first, second) = tokio::join!(first.start_execution(request.clone()), second.start_execution(request.clone()));
    let (first, second) = (first.expect("StartExecution").into_inner(), second.expect("StartExecution").into_inner());
    let ended = cluster.wait_for_end(&first.execution_id).await;
    let after_the_end =
        cluster.client.clone().start_execution(request.clone()).await.expect("StartExecution").into_inner();

    assert_eq!(first.execution_id, second.execution_id, "{first:?} {second:?}");
    assert_eq!(
        [first.existing, second.existing].iter().filter(|existing| **existing).count(),
        1,
        "exactly one of two concurrent submissions started it: {first:?} {second:?}"
    );
    assert_eq!(after_the_end.execution_id, first.execution_id, "{after_the_end:?}");
    assert!(after_the_end.existing, "{after_the_end:?}");
    assert_eq!(ended.status, "succeeded", "{ended:?}");
    let listed = cluster
        .client
        .clone()
        .list_executions(ListExecutionsRequest { limit: 0 })
        .await
        .expect("ListExecutions")
        .into_inner()
        .executions;
    let ids: Vec<&str> = listed.iter().map(|e| e.execution_id.as_str()).collect();
    assert_eq!(ids, [first.execution_id.as_str()], "one execution for three submissions");
    let mut runs = 0;
    for name in AGENTS {
        let rows = history(&mut cluster.agent_client(name).await, "quick").await;
        let outcomes: Vec<HistoryStatus> = rows.iter().filter(|r| r.step_id == 0).map(row_status).collect();
        assert!(outcomes.iter().all(|s| *s == HistoryStatus::Succeeded), "{name}: {rows:#?}");
        runs += outcomes.len();
    }
    assert_eq!(runs, 1, "the job ran once in the whole cluster");

    // The request id is durable: a submission retried across a coordinator crash is still one.
    cluster.kill9_and_restart_coordinator().await;
    let after_a_crash = cluster.client.clone().start_execution(request).await.expect("StartExecution").into_inner();
    assert_eq!(after_a_crash.execution_id, first.execution_id, "{after_a_crash:?}");
    assert!(after_a_crash.existing, "{after_a_crash:?}");
    let listed = cluster.client.clone().list_executions(ListExecutionsRequest { limit: 0 }).await;
    let listed = listed.expect("ListExecutions").into_inner().executions;
    assert_eq!(listed.len(), 1, "{listed:#?}");
    assert_eq!(listed[0].status, "succeeded", "{listed:#?}");
}
