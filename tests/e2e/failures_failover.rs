//! Agents that crash or hang under a running execution (DESIGN.md §4 Retries and failover,
//! Fencing, Liveness, Deadlines): a crashed agent is down in milliseconds, its waited children
//! are lost and retried elsewhere, and its job processes do not outlive it; a hung agent is down
//! after down_after and, when it comes back, the run of the superseded attempt is canceled; a
//! fixed agent that is down fails its task once its retries are spent.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::Value;
use switchyard_proto::{HistoryStatus, RunStatus};
use switchyard_tests::{Workspace, eventually_async, process_is_gone};

use crate::agent::{WAIT, history, open_gate, quick_job, row_status, wait_for_status};
use crate::coordinator::{children_of, text};
use crate::failures::{
    ContinueOnDrop, FailureClusterSetup, first_attempt_on_server_b, number, script_job, settled_report, signal_agent,
    wait_for_agent_state,
};
use crate::run_cli::task;

/// down_after of the crash test: a crash must be seen long before it (by the broken stream and
/// the refused probe), so a test that only passes after down_after fails.
const CRASH_DOWN_AFTER: Duration = Duration::from_secs(5);

/// Items of the failover loop: one per slot of the three agents (2 slots each).
const ITEMS: usize = 6;

/// A job whose step starts a background grandchild, writes `SHELL GRANDCHILD AGENT` pids to a
/// file of `pids_dir` named after the shell, waits until `gate` exists, then ends the grandchild
/// and succeeds.
fn failover_job(pids_dir: &Path, gate: &Path) -> String {
    let script = format!(
        "sleep 120 >/dev/null 2>&1 & echo \"$$ $! $PPID\" > '{pids}'/$$.tmp && mv '{pids}'/$$.tmp '{pids}'/$$; \
         while [ ! -f '{gate}' ]; do sleep 0.05; done; kill $! 2>/dev/null; exit 0",
        pids = pids_dir.display(),
        gate = gate.display()
    );
    script_job("load", &script)
}

fn failover_package() -> String {
    let items: Vec<String> = (0..ITEMS).map(|n| format!("\"{n}\"")).collect();
    format!(
        r#"[package]
name = "failover"
max_concurrent = 10

[[tasks]]
name = "Loads"
kind = "foreach"
items = [{items}]
var = "item"
parallel = {ITEMS}

  [[tasks.tasks]]
  name = "Load"
  kind = "agent_job"
  pool = "etl"
  job = "load"
  wait = true
  retries = 2
  retry_backoff = "100ms"
"#,
        items = items.join(", ")
    )
}

/// The `(shell, grandchild)` pids of the steps whose parent is the process `agent_pid`, from the
/// files of [`failover_job`].
fn steps_of(pids_dir: &Path, agent_pid: u32) -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir(pids_dir) else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
        let pids: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        if let [shell, grandchild, parent] = pids[..]
            && parent == agent_pid
        {
            found.push((shell, grandchild));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_of_an_agent_mid_run_fails_over_and_every_waited_task_succeeds() {
    let ws = Workspace::new();
    let (pids_dir, gate) = (ws.path("pids"), ws.path("GO"));
    std::fs::create_dir_all(&pids_dir).expect("create the pids folder");
    let mut cluster = FailureClusterSetup::new(ws)
        .agent("server-a", &["etl"], 2)
        .agent("server-b", &["etl"], 2)
        .agent("server-c", &["etl"], 2)
        .job("load.toml", &failover_job(&pids_dir, &gate))
        .coordinator_setting("down_after", &format!("\"{}s\"", CRASH_DOWN_AFTER.as_secs()))
        .start()
        .await;
    let package = cluster.package("failover.toml", &failover_package());
    let execution_id = cluster.detach(&package).await;
    let cluster_ref = &cluster;
    let on_b: Vec<String> = eventually_async(WAIT, "every iteration's child to run, two of them on server-b", || {
        let execution_id = execution_id.clone();
        async move {
            let report = cluster_ref.report(&execution_id).await;
            let running: Vec<_> = report.children.iter().filter(|c| c.status == "running").collect();
            let on_b: Vec<String> =
                running.iter().filter(|c| c.agent == "server-b").map(|c| c.run_id.clone()).collect();
            (running.len() == ITEMS && on_b.len() == 2).then_some(on_b)
        }
    })
    .await;
    let agent_pid = cluster.agent("server-b").pid();
    let b_steps = eventually_async(WAIT, "server-b's two steps to write their pids", || async {
        let steps = steps_of(&pids_dir, agent_pid);
        (steps.len() == 2).then_some(steps)
    })
    .await;

    let killed_at = Instant::now();
    let killed = cluster.agent_mut("server-b").kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    let down = wait_for_agent_state(&cluster, "server-b", "down").await;
    let seen_down_after = killed_at.elapsed();

    assert!(
        seen_down_after < CRASH_DOWN_AFTER,
        "a crash must be seen at once (broken stream, refused probe), not after down_after = \
         {CRASH_DOWN_AFTER:?}: server-b was down only after {seen_down_after:?}: {down:#}"
    );
    eventually_async(WAIT, "server-b's step shells to die with it (PR_SET_PDEATHSIG)", || async {
        b_steps.iter().all(|(shell, _)| process_is_gone(*shell)).then_some(())
    })
    .await;
    for run_id in &on_b {
        eventually_async(WAIT, &format!("server-b's child {run_id} to be lost"), || async {
            let report = cluster.report(&execution_id).await;
            report.children.iter().any(|c| &c.run_id == run_id && c.status == "lost").then_some(())
        })
        .await;
    }
    open_gate(&gate);
    let ended = cluster.wait_for_end(&execution_id).await;
    let report = settled_report(&cluster, &execution_id).await;

    assert_eq!(ended.status, "succeeded", "{ended:?}\n{report:#}");
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let mut lost_tasks = BTreeSet::new();
    for i in 0..ITEMS {
        let path = format!("Loads[{i}]/Load");
        assert_eq!(task(&report, &path)["result"], "success", "{path}: {report:#}");
        let children = children_of(&report, &path);
        let by_status = |status: &str| children.iter().filter(|c| c["status"] == status).count();
        assert_eq!(by_status("succeeded"), 1, "{path} has one child that succeeded: {report:#}");
        let lost: Vec<&&Value> = children.iter().filter(|c| c["status"] == "lost").collect();
        match lost[..] {
            [] => assert_eq!(children.len(), 1, "{path} ran once: {report:#}"),
            [lost] => {
                assert_eq!(lost["agent"], "server-b", "only server-b's children are lost: {report:#}");
                assert!(on_b.iter().any(|r| r == text(&lost["run_id"])), "{report:#}");
                let retry = children.iter().find(|c| c["status"] == "succeeded").expect("counted above");
                assert_ne!(retry["agent"], "server-b", "{path} was retried elsewhere: {report:#}");
                assert_eq!(children.len(), 2, "{path}: one lost attempt, one retry: {report:#}");
                lost_tasks.insert(path);
            }
            _ => panic!("{path} lost more than one child: {report:#}"),
        }
    }
    assert_eq!(lost_tasks.len(), 2, "server-b ran two iterations' children: {report:#}");

    // A restarted agent first ends the process groups of the runs it had in progress: the
    // grandchildren that outlived the crash.
    cluster.agent_mut("server-b").restart().await;
    eventually_async(WAIT, "the restarted server-b to end its crashed steps' grandchildren", || async {
        b_steps.iter().all(|(_, grandchild)| process_is_gone(*grandchild)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigstop_of_an_agent_marks_it_down_and_its_superseded_runs_are_canceled_after_sigcont() {
    let (cluster, execution_id, first, b_client) = first_attempt_on_server_b().await;
    let before = wait_for_agent_state(&cluster, "server-b", "up").await;

    signal_agent(cluster.agent("server-b"), Signal::SIGSTOP);
    let resumed = ContinueOnDrop(cluster.agent("server-b").pid());
    wait_for_agent_state(&cluster, "server-b", "down").await;
    let ended = cluster.wait_for_end(&execution_id).await;
    let while_down = cluster.report_json(&execution_id).await;
    drop(resumed);
    let back = wait_for_agent_state(&cluster, "server-b", "up").await;
    let superseded = cluster.wait_for_child(&execution_id, "Work", "superseded").await;
    let canceled = wait_for_status(&b_client, &first.run_id, RunStatus::Canceled).await;
    let report = cluster.report_json(&execution_id).await;

    assert_eq!(ended.status, "succeeded", "the retry on server-a decides the task: {ended:?}\n{while_down:#}");
    assert_eq!(task(&while_down, "Work")["result"], "success", "{while_down:#}");
    let retried = children_of(&while_down, "Work");
    let on_a = retried.iter().find(|c| c["agent"] == "server-a");
    assert_eq!(on_a.map(|c| &c["status"]), Some(&Value::from("succeeded")), "{while_down:#}");
    assert!(number(&back["epoch"]) > number(&before["epoch"]), "a returning agent gets a new epoch: {back:#}");
    assert_eq!((superseded.agent.as_str(), superseded.run_id.as_str()), ("server-b", first.run_id.as_str()));
    assert_eq!(canceled.execution_id, execution_id, "{canceled:?}");
    let rows = history(&mut b_client.clone(), "work").await;
    let outcome = rows.iter().find(|r| r.step_id == 0 && r.run_id == first.run_id);
    assert_eq!(outcome.map(row_status), Some(HistoryStatus::Canceled), "server-b's job outcome row: {rows:#?}");
    assert_eq!(report["status"], "succeeded", "a superseded run never changes the outcome: {report:#}");
    assert_eq!(task(&report, "Work")["result"], "success", "{report:#}");
    let statuses: BTreeMap<&str, &str> =
        children_of(&report, "Work").iter().map(|c| (text(&c["agent"]), text(&c["status"]))).collect();
    assert_eq!(statuses, BTreeMap::from([("server-a", "succeeded"), ("server-b", "superseded")]), "{report:#}");
}

const FIXED_DOWN: &str = r#"[package]
name = "fixed-down"

[[tasks]]
name = "Load"
kind = "agent_job"
agent = "server-b"
job = "quick"
wait = true
retries = 2
retry_backoff = "50ms"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_agent_that_is_down_fails_its_task() {
    let mut cluster = FailureClusterSetup::new(Workspace::new())
        .agent("server-a", &["etl"], 2)
        .agent("server-b", &["etl"], 2)
        .job("quick.toml", &quick_job("quick", ""))
        .start()
        .await;
    let killed = cluster.agent_mut("server-b").kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    wait_for_agent_state(&cluster, "server-b", "down").await;
    let package = cluster.package("fixed-down.toml", FIXED_DOWN);

    let ran = cluster.run_expecting(&package, 1).await;

    assert_eq!(ran["status"], "failed", "{ran:#}");
    let load = task(&ran, "Load");
    assert_eq!(load["result"], "failure", "a fixed agent never fails over, whatever its retries: {ran:#}");
    assert!(text(&load["message"]).contains("server-b"), "the message names the agent: {ran:#}");
    assert!(children_of(&ran, "Load").is_empty(), "nothing started on a down agent: {ran:#}");
    let on_a = history(&mut cluster.agent_client("server-a").await, "quick").await;
    assert!(on_a.is_empty(), "the job never ran on server-a: {on_a:#?}");
}
