//! Fencing survives a coordinator restart (issue 11, a finding from a fault test outside the
//! project: tasks ended with two `succeeded` children). An agent holding a waited run is
//! SIGSTOPped and declared down, the task succeeds elsewhere, the execution ends, the
//! coordinator is killed (kill -9) and restarted, and only then does the agent resume: the
//! restarted coordinator must still stop the held run and record it `superseded`
//! (DESIGN.md §4 Fencing). Checked from both sides' own records: the agent's history and run,
//! the coordinator's report.

use std::collections::BTreeMap;

use nix::sys::signal::Signal;
use serde_json::Value;
use switchyard_proto::{HistoryStatus, RunStatus};
use switchyard_tests::eventually_async;

use crate::agent::{WAIT, history, row_status, wait_for_status};
use crate::coordinator::{children_of, text};
use crate::failures::{ContinueOnDrop, first_attempt_on_server_b, signal_agent, wait_for_agent_state};
use crate::run_cli::task;

#[tokio::test(flavor = "multi_thread")]
async fn a_run_superseded_before_a_coordinator_restart_is_stopped_when_its_agent_resumes_after_it() {
    let (mut cluster, execution_id, held, b_client) = first_attempt_on_server_b().await;

    signal_agent(cluster.agent("server-b"), Signal::SIGSTOP);
    let stopped_agent = ContinueOnDrop(cluster.agent("server-b").pid());
    wait_for_agent_state(&cluster, "server-b", "down").await;
    let ended = cluster.wait_for_end(&execution_id).await;
    cluster.wait_for_child(&execution_id, "Work", "lost").await;
    let before_restart = cluster.report_json(&execution_id).await;

    let killed = cluster.coordinator.kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    cluster.coordinator.restart().await;
    cluster.client = cluster.coordinator.client().await;
    drop(stopped_agent);

    // The agent's own record: the held run was stopped, not left to succeed.
    let canceled = wait_for_status(&b_client, &held.run_id, RunStatus::Canceled).await;
    let rows = history(&mut b_client.clone(), "work").await;
    // The coordinator's record: the held attempt is superseded, and the agent's late outcome
    // (canceled) is kept beside it without changing its status.
    let cluster_ref = &cluster;
    let report = eventually_async(WAIT, "the held child to be superseded with the agent's outcome", || async {
        let report = cluster_ref.report_json(&execution_id).await;
        let children = children_of(&report, "Work");
        let on_b = children.iter().find(|c| c["agent"] == "server-b")?;
        (on_b["status"] == "superseded" && on_b["agent_status"] == "canceled").then_some(report.clone())
    })
    .await;

    assert_eq!(ended.status, "succeeded", "the retry on server-a decides the task: {ended:?}\n{before_restart:#}");
    let statuses = |report: &Value| -> BTreeMap<String, String> {
        children_of(report, "Work")
            .iter()
            .map(|c| (text(&c["agent"]).to_string(), text(&c["status"]).to_string()))
            .collect()
    };
    let expected_before = BTreeMap::from([("server-a".into(), "succeeded".into()), ("server-b".into(), "lost".into())]);
    assert_eq!(statuses(&before_restart), expected_before, "{before_restart:#}");
    assert_eq!(canceled.execution_id, execution_id, "{canceled:?}");
    let outcome = rows.iter().find(|r| r.step_id == 0 && r.run_id == held.run_id);
    assert_eq!(outcome.map(row_status), Some(HistoryStatus::Canceled), "server-b's job outcome row: {rows:#?}");
    assert!(
        !rows.iter().any(|r| r.step_id == 0 && row_status(r) == HistoryStatus::Succeeded),
        "the superseded run never succeeded on server-b: {rows:#?}"
    );
    assert_eq!(report["status"], "succeeded", "a superseded run never changes the outcome: {report:#}");
    assert_eq!(task(&report, "Work")["result"], "success", "{report:#}");
    let expected = BTreeMap::from([("server-a".into(), "succeeded".into()), ("server-b".into(), "superseded".into())]);
    assert_eq!(statuses(&report), expected, "one succeeded and one superseded child: {report:#}");
    let superseded = children_of(&report, "Work").into_iter().find(|c| c["agent"] == "server-b").cloned();
    assert_eq!(superseded.map(|c| c["run_id"].clone()), Some(Value::from(held.run_id.as_str())), "{report:#}");
}
