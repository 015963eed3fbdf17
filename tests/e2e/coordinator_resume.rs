//! A coordinator killed in the middle of a parent package resumes it after its restart (issue
//! 11): finished loop iterations do not repeat, a waited child still running is followed to its
//! end, a fire-and-forget child is not started again, a process task that was running runs
//! again, and every child job ran exactly once by the agents' own history.

use std::collections::BTreeMap;
use std::path::Path;

use switchyard_proto::HistoryStatus;
use switchyard_tests::Workspace;

use crate::agent::{gated_job, history, open_gate, quick_job, row_status};
use crate::coordinator::{Cluster, children_of, only_child, text};
use crate::failures::{FailureClusterSetup, settled_report};
use crate::run_cli::task;

/// Three waited children in a loop, then a fire-and-forget child, a waited child held by
/// `held_gate`, and a process that counts its runs in `count` and waits for `hold_gate`.
fn resumable_package(count: &Path, hold_gate: &Path, held_gate_job: &str) -> String {
    format!(
        r#"[package]
name = "resumable"

[[tasks]]
name = "Loop"
kind = "foreach"
items = [1, 2, 3]
var = "n"

[[tasks.tasks]]
name = "Step"
kind = "agent_job"
pool = "etl"
job = "quick"
wait = true

[[tasks]]
name = "Fire"
kind = "agent_job"
pool = "etl"
job = "fire"
after = ["Loop"]

[[tasks]]
name = "Held"
kind = "agent_job"
pool = "etl"
job = "{held_gate_job}"
wait = true
after = ["Loop"]

[[tasks]]
name = "Count"
kind = "process"
command = ["sh", "-c", "echo run >> '{count}'; while [ ! -f '{hold}' ]; do sleep 0.05; done"]
after = ["Loop"]
"#,
        count = count.display(),
        hold = hold_gate.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_coordinator_resumes_its_execution_and_runs_every_child_once() {
    let ws = Workspace::new();
    let (count, hold_gate, held_gate) = (ws.path("COUNT"), ws.path("HOLD_GO"), ws.path("HELD_GO"));
    let mut cluster = FailureClusterSetup::new(ws)
        .agent("server-a", &["etl"], 4)
        .agent("server-b", &["etl"], 4)
        .job("quick.toml", &quick_job("quick", ""))
        .job("fire.toml", &quick_job("fire", ""))
        .job("held.toml", &gated_job("held", &held_gate, ""))
        .start()
        .await;
    let package = cluster.package("resumable.toml", &resumable_package(&count, &hold_gate, "held"));
    let execution_id = cluster.detach(&package).await;
    for i in 0..3 {
        cluster.wait_for_child(&execution_id, &format!("Loop[{i}]/Step"), "succeeded").await;
    }
    let held = cluster.wait_for_child(&execution_id, "Held", "running").await;
    cluster.wait_for_child(&execution_id, "Fire", "succeeded").await;
    switchyard_tests::eventually(crate::agent::WAIT, "Count to have run once", || {
        (std::fs::read_to_string(&count).unwrap_or_default() == "run\n").then_some(())
    });

    cluster.kill9_and_restart_coordinator().await;
    open_gate(&hold_gate);
    open_gate(&held_gate);
    let execution = cluster.wait_for_end(&execution_id).await;
    let report = settled_report(&cluster, &execution_id).await;

    assert_eq!(execution.status, "succeeded", "{report:#}");
    assert_eq!(std::fs::read_to_string(&count).unwrap_or_default(), "run\nrun\n", "Count was running: it runs again");
    for path in ["Loop[0]/Step", "Loop[1]/Step", "Loop[2]/Step", "Fire", "Held", "Count", "Loop"] {
        assert_eq!(task(&report, path)["result"], "success", "{path}: {report:#}");
    }
    for path in ["Loop[0]/Step", "Loop[1]/Step", "Loop[2]/Step", "Fire"] {
        assert_eq!(children_of(&report, path).len(), 1, "{path} started one child: {report:#}");
    }
    let row = only_child(&report, "Held");
    assert_eq!((text(&row["run_id"]), text(&row["status"])), (held.run_id.as_str(), "succeeded"), "{report:#}");
    // The agents' own history: every job ran exactly as often as the package asks.
    let runs = job_outcomes(&cluster, &["quick", "fire", "held"]).await;
    assert_eq!(runs, BTreeMap::from([("fire", 1), ("held", 1), ("quick", 3)]), "{report:#}");
}

/// Succeeded job-outcome rows per job, over every agent's history.
async fn job_outcomes(cluster: &Cluster, jobs: &[&'static str]) -> BTreeMap<&'static str, usize> {
    let mut runs = BTreeMap::new();
    for agent in ["server-a", "server-b"] {
        let mut client = cluster.agent_client(agent).await;
        for &job in jobs {
            let rows = history(&mut client, job).await;
            let succeeded = rows.iter().filter(|r| r.step_id == 0 && row_status(r) == HistoryStatus::Succeeded);
            *runs.entry(job).or_insert(0) += succeeded.count();
        }
    }
    runs
}
