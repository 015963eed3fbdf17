//! When things go wrong on a real coordinator with real agents (DESIGN.md §3, §4): a fixed agent
//! that is down fails its task as in SSIS (and the failure path runs), and a cancel reaches the
//! agents and ends the child's processes.

use switchyard_proto::{CancelExecutionRequest, HistoryStatus, RunStatus};
use switchyard_tests::{Workspace, eventually_async, process_is_gone};

use crate::agent::{WAIT, history, quick_job, read_pids, row_status, wait_for_status};
use crate::coordinator::{Cluster, children_of, only_child, text};
use crate::run_cli::task;

const FIXED_AGENT: &str = r#"[package]
name = "fixed-agent"

[[tasks]]
name = "Load"
kind = "agent_job"
agent = "server-b"
job = "quick"
wait = true

[[tasks]]
name = "Alert"
kind = "process"
command = ["true"]
after = [{ task = "Load", on = "failure" }]

[[tasks]]
name = "Publish"
kind = "process"
command = ["true"]
after = ["Load"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_agent_that_is_down_fails_its_task_and_the_failure_constraint_runs() {
    let mut cluster = Cluster::setup(Workspace::new()).job("quick.toml", &quick_job("quick", "")).start().await;
    let killed = cluster.agent_mut("server-b").kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    let cluster = &cluster;
    let agents = eventually_async(WAIT, "`switchyard agents --json` to show server-b down", || async move {
        let agents = cluster.agents_json().await;
        (agents["server-b"]["state"] == "down").then_some(agents)
    })
    .await;
    for name in ["server-a", "server-c"] {
        assert_eq!(agents[name]["state"], "up", "{agents:#?}");
    }
    let package = cluster.package("fixed.toml", FIXED_AGENT);

    let ran = cluster.run_expecting(&package, 1).await;

    assert_eq!(ran["status"], "failed", "{ran:#}");
    let load = task(&ran, "Load");
    assert_eq!(load["result"], "failure", "{ran:#}");
    assert!(text(&load["message"]).contains("server-b"), "the message names the agent: {ran:#}");
    assert!(children_of(&ran, "Load").is_empty(), "nothing started on a down agent: {ran:#}");
    assert_eq!(task(&ran, "Alert")["result"], "success", "the failure constraint runs: {ran:#}");
    assert_eq!(task(&ran, "Publish")["result"], "not_run", "{ran:#}");
}

const CANCEL_ME: &str = r#"[package]
name = "cancel-me"

[[tasks]]
name = "Wait"
kind = "agent_job"
pool = "etl"
job = "sleeper"
wait = true

[[tasks]]
name = "After"
kind = "process"
command = ["true"]
after = ["Wait"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn cancel_reaches_the_agents() {
    let ws = Workspace::new();
    let pids_file = ws.path("pids");
    // The step's shell starts a grandchild and writes both pids, atomically, then waits.
    let sleeper = format!(
        r#"name = "sleeper"

[[steps]]
name = "sleep"
command = ["sh", "-c", "sleep 300 & echo $$ $! > '{pids}.tmp' && mv '{pids}.tmp' '{pids}'; wait"]
"#,
        pids = pids_file.display()
    );
    let cluster = Cluster::setup(ws).job("sleeper.toml", &sleeper).start().await;
    let package = cluster.package("cancel.toml", CANCEL_ME);
    let execution_id = cluster.detach(&package).await;
    let child = cluster.wait_for_child(&execution_id, "Wait", "running").await;
    let pids = read_pids(&pids_file).await;

    let request = CancelExecutionRequest { execution_id: execution_id.clone() };
    let answer = cluster.client.clone().cancel_execution(request).await.expect("CancelExecution").into_inner();

    assert!(matches!(answer.status.as_str(), "stopping" | "canceled"), "{answer:?}");
    let agent = cluster.agent_client(&child.agent).await;
    let run = wait_for_status(&agent, &child.run_id, RunStatus::Canceled).await;
    assert_eq!(run.execution_id, execution_id, "{run:?}");
    let rows = history(&mut agent.clone(), "sleeper").await;
    let outcome = rows.iter().find(|r| r.step_id == 0 && r.run_id == child.run_id);
    assert_eq!(outcome.map(row_status), Some(HistoryStatus::Canceled), "the job outcome row: {rows:#?}");
    let ended = cluster.wait_for_end(&execution_id).await;
    assert_eq!(ended.status, "canceled", "{ended:?}");
    cluster.wait_for_child(&execution_id, "Wait", "canceled").await;
    let report = cluster.report_json(&execution_id).await;
    assert_eq!(report["status"], "canceled", "{report:#}");
    assert_eq!(task(&report, "Wait")["result"], "canceled", "{report:#}");
    assert_eq!(task(&report, "After")["result"], "not_run", "{report:#}");
    assert_eq!(only_child(&report, "Wait")["status"], "canceled", "{report:#}");
    eventually_async(WAIT, "the child's shell and its grandchild to end", || async {
        pids.iter().all(|pid| process_is_gone(*pid)).then_some(())
    })
    .await;
}
