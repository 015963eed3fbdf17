//! What an `agent_job` task's result means on a real coordinator with real agents (DESIGN.md §3,
//! §4, §9): fire-and-forget succeeds at acceptance and the report still shows the child's real
//! outcome; constraints gate start times only; `wait = true` finishes with the child's outcome;
//! each loop iteration starts its own run.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::{DateTime, SubsecRound, Utc};
use switchyard_proto::RunStatus;
use switchyard_tests::Workspace;

use crate::agent::{gated_job, get_run, open_gate, quick_job, run_status, wait_for_end};
use crate::coordinator::{Cluster, children_of, only_child, text, utc};
use crate::run_cli::{rfc3339, task};

/// A job whose only step waits until the file `gate` exists, then fails.
fn gated_failing_job(name: &str, gate: &Path) -> String {
    format!(
        r#"name = "{name}"

[[steps]]
name = "refresh"
command = ["sh", "-c", "while [ ! -f '{gate}' ]; do sleep 0.05; done; echo 'refresh failed' >&2; exit 1"]
"#,
        gate = gate.display()
    )
}

/// A job whose only step fails at once.
fn failing_job(name: &str) -> String {
    format!("name = \"{name}\"\n\n[[steps]]\nname = \"fail\"\ncommand = [\"sh\", \"-c\", \"exit 7\"]\n")
}

const FIRE_AND_FORGET: &str = r#"[package]
name = "fire-and-forget"

[[tasks]]
name = "Refresh cache"
kind = "agent_job"
pool = "etl"
job = "refresh"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_fire_and_forget_task_succeeds_although_its_child_fails_and_the_report_shows_the_failure() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let cluster = Cluster::setup(ws).job("refresh.toml", &gated_failing_job("refresh", &gate)).start().await;
    let package = cluster.package("fire.toml", FIRE_AND_FORGET);

    let ran = cluster.run_expecting(&package, 0).await;

    assert_eq!(ran["status"], "succeeded", "{ran:#}");
    let refresh = task(&ran, "Refresh cache");
    assert_eq!(refresh["kind"], "agent_job", "{ran:#}");
    assert_eq!(refresh["result"], "success", "{ran:#}");
    let child = only_child(&ran, "Refresh cache");
    assert_eq!(child["status"], "running", "the gate is closed, so the child still runs: {ran:#}");
    assert_eq!(child["job"], "refresh", "{ran:#}");
    assert_eq!(child["agent"], refresh["agent"], "the task names the agent its child runs on: {ran:#}");
    let (agent, run_id) = (text(&child["agent"]).to_string(), text(&child["run_id"]).to_string());

    open_gate(&gate);
    let execution_id = text(&ran["execution_id"]);
    cluster.wait_for_child(execution_id, "Refresh cache", "failed").await;
    let reported = cluster.report_json(execution_id).await;

    assert_eq!(reported["status"], "succeeded", "the parent's outcome stays as it was: {reported:#}");
    assert_eq!(task(&reported, "Refresh cache")["result"], "success", "{reported:#}");
    let child = only_child(&reported, "Refresh cache");
    assert_eq!(child["status"], "failed", "{reported:#}");
    assert_eq!((text(&child["agent"]), text(&child["run_id"])), (agent.as_str(), run_id.as_str()), "{reported:#}");
    assert!(child["duration_ms"].is_u64(), "the child's duration arrives with its outcome: {reported:#}");
    let run = get_run(&mut cluster.agent_client(&agent).await, &run_id).await;
    assert_eq!(run_status(&run), RunStatus::Failed, "{run:?}");
    assert_eq!(run.execution_id, execution_id, "{run:?}");
}

const START_THEN_NEXT: &str = r#"[package]
name = "gate-start-times"

[[tasks]]
name = "Start"
kind = "agent_job"
pool = "etl"
job = "hold"

[[tasks]]
name = "Next"
kind = "process"
command = ["true"]
after = ["Start"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn constraints_only_gate_start_times() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let cluster = Cluster::setup(ws).job("hold.toml", &gated_job("hold", &gate, "")).start().await;
    let package = cluster.package("gate.toml", START_THEN_NEXT);

    // The whole package ends while the child waits for the gate.
    let ran = cluster.run_expecting(&package, 0).await;

    assert_eq!(ran["status"], "succeeded", "{ran:#}");
    assert_eq!(task(&ran, "Start")["result"], "success", "{ran:#}");
    assert_eq!(task(&ran, "Next")["result"], "success", "{ran:#}");
    let child = only_child(&ran, "Start");
    assert_eq!(child["status"], "running", "{ran:#}");
    let next_started = rfc3339(&task(&ran, "Next")["started_at"]).with_timezone(&Utc);
    let (agent, run_id) = (text(&child["agent"]).to_string(), text(&child["run_id"]).to_string());
    open_gate(&gate);
    let agent_client = cluster.agent_client(&agent).await;
    let run = wait_for_end(&agent_client, &run_id).await;
    cluster.wait_for_child(text(&ran["execution_id"]), "Start", "succeeded").await;

    assert_eq!(run_status(&run), RunStatus::Succeeded, "{run:?}");
    // The report shows milliseconds; the agent's times are finer.
    let accepted: DateTime<Utc> = utc(run.accepted_at.as_ref()).trunc_subsecs(3);
    let child_ended: DateTime<Utc> = utc(run.ended_at.as_ref());
    assert!(
        accepted <= next_started && next_started < child_ended,
        "the successor started at {next_started}, while the child was accepted at {accepted} and ended at \
         {child_ended}"
    );
    let package_ended = rfc3339(&ran["ended_at"]).with_timezone(&Utc);
    assert!(package_ended < child_ended, "the parent ended at {package_ended}, before its child ({child_ended})");
}

/// A job that succeeds after a moment, so the other task's failure comes first: reaching
/// max_errors must not stop a task already running (DESIGN.md §3).
const SLOW_JOB: &str = "name = \"slow\"\n\n[[steps]]\nname = \"sleep\"\ncommand = [\"sleep\", \"0.5\"]\n";

const WAITED: &str = r#"[package]
name = "waited"

[[tasks]]
name = "Succeeds"
kind = "agent_job"
pool = "etl"
job = "slow"
wait = true

[[tasks]]
name = "Fails"
kind = "agent_job"
pool = "etl"
job = "fails"
wait = true
retries = 0

[[tasks]]
name = "After success"
kind = "process"
command = ["true"]
after = ["Succeeds"]

[[tasks]]
name = "After failure"
kind = "process"
command = ["true"]
after = [{ task = "Fails", on = "failure" }]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn wait_true_propagates_success_and_failure() {
    let cluster = Cluster::setup(Workspace::new())
        .job("slow.toml", SLOW_JOB)
        .job("fails.toml", &failing_job("fails"))
        .start()
        .await;
    let package = cluster.package("waited.toml", WAITED);

    let ran = cluster.run_expecting(&package, 1).await;

    assert_eq!(ran["status"], "failed", "{ran:#}");
    let succeeds = task(&ran, "Succeeds");
    assert_eq!(succeeds["result"], "success", "{ran:#}");
    assert_eq!(only_child(&ran, "Succeeds")["status"], "succeeded", "{ran:#}");
    let fails = task(&ran, "Fails");
    assert_eq!(fails["result"], "failure", "{ran:#}");
    let message = text(&fails["message"]);
    assert!(message.contains("fails") && message.contains("failed"), "the message names the child's outcome: {ran:#}");
    let child = only_child(&ran, "Fails");
    assert_eq!(child["status"], "failed", "retries = 0: one attempt, {ran:#}");
    assert_eq!(child["agent"], fails["agent"], "{ran:#}");
    assert_eq!(task(&ran, "After success")["result"], "success", "{ran:#}");
    assert_eq!(task(&ran, "After failure")["result"], "success", "the failure constraint runs: {ran:#}");
    let run = get_run(&mut cluster.agent_client(text(&child["agent"])).await, text(&child["run_id"])).await;
    assert_eq!(run_status(&run), RunStatus::Failed, "{run:?}");
}

const PER_ITEM: &str = r#"[package]
name = "per-item"

[[tasks]]
name = "Loop"
kind = "foreach"
items = ["x", "y", "z"]
var = "item"
parallel = 3

  [[tasks.tasks]]
  name = "Load"
  kind = "agent_job"
  pool = "etl"
  job = "load"
  params = { item = "{{ vars.item }}" }
  wait = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn each_iteration_of_a_foreach_starts_its_own_run() {
    let cluster = Cluster::setup(Workspace::new())
        .job("load.toml", &quick_job("load", "concurrency = \"allow\"\nmax_running = 10"))
        .start()
        .await;
    let package = cluster.package("per-item.toml", PER_ITEM);

    let ran = cluster.run_expecting(&package, 0).await;

    let execution_id = text(&ran["execution_id"]);
    let mut run_ids = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for (i, item) in ["x", "y", "z"].iter().enumerate() {
        let path = format!("Loop[{i}]/Load");
        assert_eq!(task(&ran, &path)["result"], "success", "{ran:#}");
        let child = only_child(&ran, &path);
        assert_eq!(child["status"], "succeeded", "{ran:#}");
        let run_id = text(&child["run_id"]);
        let run = get_run(&mut cluster.agent_client(text(&child["agent"])).await, run_id).await;
        assert_eq!((run.execution_id.as_str(), run.task_path.as_str()), (execution_id, path.as_str()), "{run:?}");
        let params = run.params.as_ref().expect("the start carried params");
        let sent = params.fields.get("item").and_then(|v| match &v.kind {
            Some(prost_types::value::Kind::StringValue(s)) => Some(s.as_str()),
            _ => None,
        });
        assert_eq!(sent, Some(*item), "iteration {i} passes its own item: {run:?}");
        assert!(run.idempotency_key.contains(&path), "the key names the iteration: {run:?}");
        run_ids.insert(run_id.to_string());
        keys.insert(run.idempotency_key.clone());
    }
    assert_eq!(run_ids.len(), 3, "three iterations, three runs: {ran:#}");
    assert_eq!(keys.len(), 3, "each iteration has its own idempotency key: {keys:?}");
    let children = ran["children"].as_array().expect("children");
    assert_eq!(children.len(), 3, "{ran:#}");
    assert!(children_of(&ran, "Loop/Load").is_empty(), "{ran:#}");
}
