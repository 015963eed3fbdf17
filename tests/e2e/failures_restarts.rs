//! Restarts after a crash (DESIGN.md §4 Nothing lost, Agents; §3 execution statuses): a
//! coordinator killed mid-execution resumes it (issue 11), keeps its history and records the
//! outcome its child reported meanwhile; one whose package cannot be read any more ends
//! unexpectedly, saying why, and its children are stopped; an agent restarted with a wiped data
//! dir is picked up under its new incarnation and runs new work.

use std::net::SocketAddr;

use switchyard_proto::{GetRunRequest, RunStatus, WatchExecutionRequest};
use switchyard_tests::{AgentProcess, Workspace, eventually_async, within};
use tonic::Code;

use crate::agent::{WAIT, gated_job, get_run, open_gate, quick_job, run_status, wait_for_end};
use crate::coordinator::{only_child, text};
use crate::failures::{FailureClusterSetup, number, wait_for_agent_state};
use crate::run_cli::task;

/// A package with a fire-and-forget child and a process task that keeps the execution running
/// until `hold_gate` exists.
fn crash_package(hold_gate: &std::path::Path) -> String {
    format!(
        r#"[package]
name = "coordinator-crash"

[[tasks]]
name = "Refresh"
kind = "agent_job"
pool = "etl"
job = "refresh"

[[tasks]]
name = "Hold"
kind = "process"
command = ["sh", "-c", "while [ ! -f '{gate}' ]; do sleep 0.05; done"]
"#,
        gate = hold_gate.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_the_coordinator_mid_execution_resumes_it_after_a_restart() {
    let ws = Workspace::new();
    let (child_gate, hold_gate) = (ws.path("CHILD_GO"), ws.path("HOLD_GO"));
    let mut cluster = FailureClusterSetup::new(ws)
        .agent("server-a", &["etl"], 2)
        .job("refresh.toml", &gated_job("refresh", &child_gate, ""))
        .start()
        .await;
    let package = cluster.package("crash.toml", &crash_package(&hold_gate));
    let execution_id = cluster.detach(&package).await;
    let child = cluster.wait_for_child(&execution_id, "Refresh", "running").await;
    // Refresh's result is stored before the crash (WatchExecution replays stored events), so the
    // report must still hold it after.
    let request = WatchExecutionRequest { execution_id: execution_id.clone(), after_sequence: 0 };
    let mut events = cluster.client.clone().watch_execution(request).await.expect("WatchExecution").into_inner();
    let finished = within(WAIT, "Refresh's task_finished event", async {
        loop {
            match events.message().await {
                Ok(Some(event)) if event.path == "Refresh" && event.kind == "task_finished" => break event,
                Ok(Some(_)) => {}
                other => panic!("the WatchExecution stream ended before Refresh finished: {other:?}"),
            }
        }
    })
    .await;
    drop(events);
    assert_eq!(finished.result, "success", "{finished:?}");
    assert_eq!(cluster.execution(&execution_id).await.status, "running", "Hold keeps the execution running");

    let killed = cluster.coordinator.kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    open_gate(&hold_gate);
    open_gate(&child_gate);
    let agent = cluster.agent_client("server-a").await;
    let run = wait_for_end(&agent, &child.run_id).await;
    assert_eq!(run_status(&run), RunStatus::Succeeded, "the child ended while the coordinator was down: {run:?}");
    cluster.coordinator.restart().await;
    cluster.client = cluster.coordinator.client().await;
    let execution = cluster.wait_for_end(&execution_id).await;
    let reconciled = cluster.wait_for_child(&execution_id, "Refresh", "succeeded").await;
    let report = cluster.report_json(&execution_id).await;

    assert_eq!(execution.status, "succeeded", "the execution resumed and Hold ran again: {execution:?}");
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert_eq!(text(&report["execution_id"]), execution_id, "one execution, resumed under its id: {report:#}");
    assert_eq!(report["package"], "coordinator-crash", "{report:#}");
    let paths: Vec<&str> = report["tasks"].as_array().expect("tasks").iter().map(|t| text(&t["path"])).collect();
    assert_eq!(paths.len(), 2, "every task is listed: {report:#}");
    assert!(paths.contains(&"Refresh") && paths.contains(&"Hold"), "{report:#}");
    let refresh = task(&report, "Refresh");
    assert_eq!(refresh["result"], "success", "the history from before the crash is intact: {report:#}");
    assert_eq!(refresh["agent"], "server-a", "{report:#}");
    assert_eq!((reconciled.agent.as_str(), reconciled.run_id.as_str()), ("server-a", child.run_id.as_str()));
    let row = only_child(&report, "Refresh");
    assert_eq!((text(&row["run_id"]), text(&row["status"])), (child.run_id.as_str(), "succeeded"), "{report:#}");
    let kinds = event_kinds(&cluster, &execution_id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "resumed").count(), 1, "one `resumed` event: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "package_started").count(), 1, "one run, not two: {kinds:?}");
}

/// The kinds of an execution's stored events, in order.
async fn event_kinds(cluster: &crate::coordinator::Cluster, execution_id: &str) -> Vec<String> {
    let request = WatchExecutionRequest { execution_id: execution_id.to_string(), after_sequence: 0 };
    let mut events = cluster.client.clone().watch_execution(request).await.expect("WatchExecution").into_inner();
    within(WAIT, "the execution's events", async {
        let mut kinds = Vec::new();
        while let Some(event) = events.message().await.expect("the event stream") {
            kinds.push(event.kind);
        }
        kinds
    })
    .await
}

const ON_SERVER_B: &str = r#"[package]
name = "on-server-b"

[[tasks]]
name = "Quick"
kind = "agent_job"
agent = "server-b"
job = "quick"
wait = true
"#;

/// Rewrites the agent's agent.toml so that its next start listens on `address` again (its first
/// start let the OS choose the port).
fn keep_listen_address(agent: &AgentProcess, address: SocketAddr) {
    let path = agent.folder().join("agent.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let rewritten: String = text
        .lines()
        .map(|line| if line.starts_with("listen =") { format!("listen = \"{address}\"") } else { line.to_string() })
        .map(|line| line + "\n")
        .collect();
    assert_ne!(text, rewritten, "agent.toml has a listen line:\n{text}");
    std::fs::write(&path, rewritten).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_restarted_with_a_wiped_data_dir_is_picked_up_under_its_new_incarnation() {
    let mut cluster = FailureClusterSetup::new(Workspace::new())
        .agent("server-a", &["etl"], 2)
        .agent("server-b", &["etl"], 2)
        .job("quick.toml", &quick_job("quick", ""))
        .start()
        .await;
    let package = cluster.package("on-b.toml", ON_SERVER_B);
    let first = cluster.run_expecting(&package, 0).await;
    let before = wait_for_agent_state(&cluster, "server-b", "up").await;
    let address = cluster.agent("server-b").address();
    keep_listen_address(cluster.agent("server-b"), address);

    let killed = cluster.agent_mut("server-b").kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    wait_for_agent_state(&cluster, "server-b", "down").await;
    let data_dir = cluster.agent("server-b").data_dir();
    std::fs::remove_dir_all(&data_dir).unwrap_or_else(|e| panic!("cannot delete {}: {e}", data_dir.display()));
    cluster.agent_mut("server-b").restart().await;
    assert_eq!(cluster.agent("server-b").address(), address, "the agent listens where coordinator.toml says");
    let old_incarnation = text(&before["incarnation"]).to_string();
    let cluster_ref = &cluster;
    let after = eventually_async(WAIT, "server-b to be up under a new incarnation", || async {
        let agents = cluster_ref.agents_json().await;
        let b = &agents["server-b"];
        (b["state"] == "up" && b["incarnation"] != old_incarnation.as_str()).then(|| b.clone())
    })
    .await;
    let second = cluster.run_expecting(&package, 0).await;

    assert!(!old_incarnation.is_empty(), "{before:#}");
    assert!(!text(&after["incarnation"]).is_empty(), "{after:#}");
    assert!(number(&after["epoch"]) > number(&before["epoch"]), "a returning agent gets a new epoch: {after:#}");
    assert_eq!(only_child(&first, "Quick")["status"], "succeeded", "{first:#}");
    assert_eq!(second["status"], "succeeded", "{second:#}");
    assert_eq!(task(&second, "Quick")["result"], "success", "{second:#}");
    let child = only_child(&second, "Quick");
    assert_eq!((child["agent"].as_str(), child["status"].as_str()), (Some("server-b"), Some("succeeded")));
    let run = get_run(&mut cluster.agent_client("server-b").await, text(&child["run_id"])).await;
    assert_eq!(run_status(&run), RunStatus::Succeeded, "the new incarnation ran it: {run:?}");
    assert_eq!(run.execution_id, text(&second["execution_id"]), "{run:?}");
    let earlier = text(&only_child(&first, "Quick")["run_id"]);
    let mut b = cluster.agent_client("server-b").await;
    let wiped = b.get_run(GetRunRequest { run_id: earlier.to_string(), ..Default::default() }).await;
    let code = wiped.as_ref().map_err(tonic::Status::code).err();
    assert_eq!(code, Some(Code::NotFound), "the wiped data dir held the earlier run: {wiped:?}");
}

/// Two waited children on the same agent, one with on_parent_end = "abandon".
fn orphan_package() -> String {
    r#"[package]
name = "orphans"

[[tasks]]
name = "Canceled with its parent"
kind = "agent_job"
agent = "server-a"
job = "cancel_me"
wait = true

[[tasks]]
name = "Left alone"
kind = "agent_job"
agent = "server-a"
job = "leave_me"
wait = true
on_parent_end = "abandon"
"#
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_whose_package_is_gone_ends_unexpectedly_and_its_children_are_stopped() {
    let ws = Workspace::new();
    let (cancel_gate, leave_gate) = (ws.path("CANCEL_GO"), ws.path("LEAVE_GO"));
    let mut cluster = FailureClusterSetup::new(ws)
        .agent("server-a", &["etl"], 4)
        .job("cancel_me.toml", &gated_job("cancel_me", &cancel_gate, ""))
        .job("leave_me.toml", &gated_job("leave_me", &leave_gate, ""))
        .start()
        .await;
    let package = cluster.package("orphans.toml", &orphan_package());
    let execution_id = cluster.detach(&package).await;
    let canceled = cluster.wait_for_child(&execution_id, "Canceled with its parent", "running").await;
    let abandoned = cluster.wait_for_child(&execution_id, "Left alone", "running").await;

    let killed = cluster.coordinator.kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    let files = cluster.coordinator.data_dir().join("executions").join(&execution_id);
    std::fs::remove_dir_all(&files).unwrap_or_else(|e| panic!("cannot delete {}: {e}", files.display()));
    cluster.coordinator.restart().await;
    cluster.client = cluster.coordinator.client().await;
    let execution = cluster.wait_for_end(&execution_id).await;
    assert_eq!(execution.status, "ended_unexpectedly", "{execution:?}");
    let request = WatchExecutionRequest { execution_id: execution_id.clone(), after_sequence: 0 };
    let mut events = cluster.client.clone().watch_execution(request).await.expect("WatchExecution").into_inner();
    let said = within(WAIT, "the not_resumed event", async {
        loop {
            match events.message().await.expect("the event stream") {
                Some(event) if event.kind == "not_resumed" => break event.message,
                Some(_) => {}
                None => panic!("no not_resumed event"),
            }
        }
    })
    .await;
    assert!(said.contains("cannot be read"), "the reason names the package: {said}");

    // Its package, which says on_parent_end, is gone: every running child is stopped.
    let agent = cluster.agent_client("server-a").await;
    for child in [&canceled, &abandoned] {
        let run = wait_for_end(&agent, &child.run_id).await;
        assert_eq!(run_status(&run), RunStatus::Canceled, "{run:?}");
    }
    cluster.wait_for_child(&execution_id, "Canceled with its parent", "canceled").await;
    cluster.wait_for_child(&execution_id, "Left alone", "canceled").await;
}
