//! Where and how often a start happens when things go wrong (DESIGN.md §4 Fencing, Retries and
//! failover, Failure simulation; §5 drain): a StartJob reply held back past start_timeout is
//! asked again with the same key, so the job runs exactly once; a start held by an agent that
//! hangs is given up when the agent is declared down, runs elsewhere, and the held one is stopped
//! as superseded when the agent resumes; a drained agent gets no new placements until it is
//! undrained.

use std::collections::BTreeMap;

use switchyard_proto::{HistoryStatus, RunStatus};
use switchyard_tests::{Workspace, eventually_async};

use crate::agent::{WAIT, get_run, history, open_gate, quick_job, row_status, run_status};
use crate::coordinator::{Cluster, only_child, text};
use crate::failures::{FailureClusterSetup, Placements, chaos, drain, script_job, wait_for_agent_state};
use crate::run_cli::task;

const DELAYED: &str = r#"[package]
name = "delayed-start"

[[tasks]]
name = "Load"
kind = "agent_job"
agent = "server-a"
job = "load"
wait = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_start_delayed_past_its_deadline_runs_exactly_once() {
    let cluster = FailureClusterSetup::new(Workspace::new())
        .agent("server-a", &["etl"], 2)
        .agent_setting("server-a", "allow_fault_injection", "true")
        .job("load.toml", &quick_job("load", ""))
        .coordinator_setting("start_timeout", "\"1s\"")
        .start()
        .await;
    // Every StartJob reply is held back 2 s, past the 1 s deadline, for the next few seconds.
    chaos(&cluster, "server-a", &["delay", "--for", "4s", "--delay", "2s"]).await;
    let package = cluster.package("delayed.toml", DELAYED);

    let ran = cluster.run_expecting(&package, 0).await;

    assert_eq!(ran["status"], "succeeded", "{ran:#}");
    assert_eq!(task(&ran, "Load")["result"], "success", "{ran:#}");
    let child = only_child(&ran, "Load");
    assert_eq!((child["agent"].as_str(), child["status"].as_str()), (Some("server-a"), Some("succeeded")), "{ran:#}");
    let mut agent = cluster.agent_client("server-a").await;
    let rows = history(&mut agent, "load").await;
    let outcomes: Vec<_> = rows.iter().filter(|r| r.step_id == 0).collect();
    assert_eq!(outcomes.len(), 1, "the retried start with the same key ran nothing more: {rows:#?}");
    assert_eq!(row_status(outcomes[0]), HistoryStatus::Succeeded, "{rows:#?}");
    assert_eq!(outcomes[0].run_id, text(&child["run_id"]), "{rows:#?}\n{ran:#}");
    let steps = rows.iter().filter(|r| r.step_id == 1).count();
    assert_eq!(steps, 1, "one run, one step row: {rows:#?}");
    let run = get_run(&mut agent, text(&child["run_id"])).await;
    assert_eq!(run_status(&run), RunStatus::Succeeded, "{run:?}");
    assert_eq!((run.execution_id.as_str(), run.task_path.as_str()), (text(&ran["execution_id"]), "Load"), "{run:?}");
    let key_prefix = format!("{}/Load/", text(&ran["execution_id"]));
    assert!(run.idempotency_key.starts_with(&key_prefix), "the key names execution, task and attempt: {run:?}");
}

const HELD: &str = r#"[package]
name = "held-start"

[[tasks]]
name = "Work"
kind = "agent_job"
pool = "etl"
job = "work"
wait = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_start_held_by_a_hung_agent_runs_elsewhere_and_the_held_one_is_superseded() {
    let cluster = FailureClusterSetup::new(Workspace::new())
        .agent("server-a", &["etl"], 2)
        .agent("server-b", &["etl"], 2)
        .agent_setting("server-b", "allow_fault_injection", "true")
        // server-b's run would outlive the test unless stopped; server-a's succeeds at once.
        .agent_job("server-a", "work.toml", &quick_job("work", ""))
        .agent_job("server-b", "work.toml", &script_job("work", "sleep 120"))
        .coordinator_setting("down_after", "\"1s\"")
        .coordinator_setting("start_timeout", "\"30s\"")
        .start()
        .await;
    // server-b hangs (its handlers wait, its connections stay open) while it is the only agent
    // placements may use, so the start goes to it and is held there.
    drain(&cluster, "server-a", Placements::Stop).await;
    wait_for_agent_state(&cluster, "server-a", "draining").await;
    chaos(&cluster, "server-b", &["hang", "--for", "4s"]).await;
    let package = cluster.package("held.toml", HELD);
    let execution_id = cluster.detach(&package).await;
    drain(&cluster, "server-a", Placements::Resume).await;

    let ended = cluster.wait_for_end(&execution_id).await;
    let superseded = cluster.wait_for_child(&execution_id, "Work", "superseded").await;
    let report = cluster.report_json(&execution_id).await;

    assert_eq!(ended.status, "succeeded", "the start given up on server-b ran on server-a: {ended:?}\n{report:#}");
    assert_eq!(superseded.agent, "server-b", "{superseded:?}");
    let statuses: BTreeMap<&str, &str> = report["children"]
        .as_array()
        .expect("children")
        .iter()
        .map(|c| (text(&c["agent"]), text(&c["status"])))
        .collect();
    assert_eq!(statuses, BTreeMap::from([("server-a", "succeeded"), ("server-b", "superseded")]), "{report:#}");
    let mut b = cluster.agent_client("server-b").await;
    let stopped = eventually_async(WAIT, "server-b's held run to end", || {
        let mut b = b.clone();
        let run_id = superseded.run_id.clone();
        async move { Some(get_run(&mut b, &run_id).await).filter(|r| run_status(r) != RunStatus::Running) }
    })
    .await;
    assert_eq!(run_status(&stopped), RunStatus::Canceled, "the held start was stopped, not run: {stopped:?}");
    let rows = history(&mut b, "work").await;
    let outcomes: Vec<_> = rows.iter().filter(|r| r.step_id == 0).collect();
    assert_eq!(outcomes.len(), 1, "server-b ran only the held start: {rows:#?}");
    assert_eq!(row_status(outcomes[0]), HistoryStatus::Canceled, "and it was stopped: {rows:#?}");
}

/// A package of `count` waited tasks on the `etl` pool, all started at once.
fn pool_package(name: &str, count: usize, job: &str) -> String {
    let mut text = format!("[package]\nname = \"{name}\"\nmax_concurrent = {}\n", count + 2);
    for n in 0..count {
        text.push_str(&format!(
            "\n[[tasks]]\nname = \"Task {n}\"\nkind = \"agent_job\"\npool = \"etl\"\njob = \"{job}\"\nwait = true\n"
        ));
    }
    text
}

/// How many children of the §9 report ran on each agent.
fn placed(report: &serde_json::Value) -> BTreeMap<String, usize> {
    let mut placed = BTreeMap::new();
    for child in report["children"].as_array().expect("children") {
        *placed.entry(text(&child["agent"]).to_string()).or_default() += 1;
    }
    placed
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_stops_placements() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let gated = format!("while [ ! -f '{}' ]; do sleep 0.05; done", gate.display());
    let cluster = FailureClusterSetup::new(ws)
        .agent("server-a", &["etl"], 4)
        .agent("server-b", &["etl"], 4)
        .agent("server-c", &["etl"], 4)
        .job("quick.toml", &quick_job("quick", "concurrency = \"allow\"\nmax_running = 10"))
        .job("hold.toml", &script_job("hold", &gated))
        .start()
        .await;

    drain(&cluster, "server-a", Placements::Stop).await;
    wait_for_agent_state(&cluster, "server-a", "draining").await;
    let drained =
        cluster.run_expecting(&cluster.package("drained.toml", &pool_package("drained", 4, "quick")), 0).await;

    assert_eq!(drained["status"], "succeeded", "{drained:#}");
    let on = placed(&drained);
    assert_eq!(on.values().sum::<usize>(), 4, "{drained:#}");
    assert!(!on.contains_key("server-a"), "a drained agent got placements: {on:?}\n{drained:#}");

    // Undrained, server-a takes work again: nine held tasks do not fit in the 8 slots of the
    // others, so at least one runs on server-a.
    drain(&cluster, "server-a", Placements::Resume).await;
    wait_for_agent_state(&cluster, "server-a", "up").await;
    let held = cluster.detach(&cluster.package("undrained.toml", &pool_package("undrained", 9, "hold"))).await;
    wait_for_a_child_on(&cluster, &held, "server-a").await;
    open_gate(&gate);
    let ended = cluster.wait_for_end(&held).await;
    let undrained = cluster.report_json(&held).await;

    assert_eq!(ended.status, "succeeded", "{ended:?}\n{undrained:#}");
    let on = placed(&undrained);
    assert_eq!(on.values().sum::<usize>(), 9, "{undrained:#}");
    assert!(on.get("server-a").is_some_and(|n| *n > 0), "{on:?}\n{undrained:#}");
}

/// Polls GetReport until a child of the execution runs on `agent`.
async fn wait_for_a_child_on(cluster: &Cluster, execution_id: &str, agent: &str) {
    eventually_async(WAIT, &format!("a child of {execution_id} to run on {agent}"), || async {
        let report = cluster.report(execution_id).await;
        report.children.iter().any(|c| c.agent == agent).then_some(())
    })
    .await;
}
