//! Pools and placement on a real coordinator with real agents (DESIGN.md §4): least_loaded
//! spreads starts within every agent's slots, a task waits as pending while every slot is full
//! until queue_timeout, and an agent already running a `forbid` job is skipped for another.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use switchyard_proto::{
    HistoryRow, HistoryStatus, JobHistoryRequest, ListAgentsRequest, ListExecutionsRequest, ListJobsRequest, RunStatus,
};
use switchyard_tests::{Workspace, eventually_async};

use crate::agent::{WAIT, gated_job, get_run, open_gate, quick_job, row_status, run_status, start, wait_for_status};
use crate::coordinator::{AGENTS, Cluster, only_child, text, utc};
use crate::run_cli::task;

/// Starts of the spreading test, and the slots of each agent.
const STARTS: usize = 30;
const SLOTS: usize = 4;

/// A job that holds its agent's slot for a while; up to 10 runs of it at once on one agent, so
/// only the agent's slots limit it.
const HOLD_JOB: &str = r#"name = "hold"
concurrency = "allow"
max_running = 10

[[steps]]
name = "hold"
command = ["sleep", "0.6"]
"#;

fn spread_package() -> String {
    let items: Vec<String> = (0..STARTS).map(|n| n.to_string()).collect();
    format!(
        r#"[package]
name = "spread"
max_concurrent = {STARTS}

[[tasks]]
name = "Starts"
kind = "foreach"
items = [{items}]
var = "n"
parallel = {STARTS}

  [[tasks.tasks]]
  name = "Hold"
  kind = "agent_job"
  pool = "etl"
  job = "hold"
  wait = true
"#,
        items = items.join(", ")
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn least_loaded_spreads_30_starts_of_an_allow_job_over_3_agents_within_their_slots() {
    let cluster = Cluster::setup(Workspace::new()).job("hold.toml", HOLD_JOB).start().await;
    let package = cluster.package("spread.toml", &spread_package());

    let ran = cluster.run_expecting(&package, 0).await;

    assert_eq!(ran["status"], "succeeded", "{ran:#}");
    let children = ran["children"].as_array().expect("children");
    assert_eq!(children.len(), STARTS, "one start per iteration, none refused and retried: {ran:#}");
    assert!(children.iter().all(|c| c["status"] == "succeeded"), "{ran:#}");
    let run_ids: BTreeSet<&str> = children.iter().map(|c| text(&c["run_id"])).collect();
    assert_eq!(run_ids.len(), STARTS, "{ran:#}");
    let mut placed: BTreeMap<&str, usize> = BTreeMap::new();
    for child in children {
        *placed.entry(text(&child["agent"])).or_default() += 1;
    }
    for name in AGENTS {
        let mut client = cluster.agent_client(name).await;
        let request = JobHistoryRequest { job: "hold".to_string(), limit: 1000, ..JobHistoryRequest::default() };
        let rows = client.job_history(request).await.expect("JobHistory").into_inner().rows;
        let steps: Vec<&HistoryRow> = rows.iter().filter(|r| r.step_id == 1).collect();
        let outcomes: Vec<&HistoryRow> = rows.iter().filter(|r| r.step_id == 0).collect();
        let got = placed.get(name).copied().unwrap_or_default();
        assert!(got > 0, "least_loaded gave {name} no start: {placed:?}");
        assert_eq!((steps.len(), outcomes.len()), (got, got), "{name} ran what the report says: {rows:#?}");
        assert!(outcomes.iter().all(|r| row_status(r) == HistoryStatus::Succeeded), "{name}: {rows:#?}");
        let most = most_at_once(&steps);
        assert!(most <= SLOTS, "{name} ran {most} steps at once with {SLOTS} slots: {steps:#?}");
    }
    assert_eq!(placed.values().sum::<usize>(), STARTS, "{placed:?}");
}

/// The most history rows whose [start, start + duration) overlap at one instant.
fn most_at_once(rows: &[&HistoryRow]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for row in rows {
        let started = utc(row.started_at.as_ref());
        let ended = started + ChronoDuration::milliseconds(i64::try_from(row.duration_ms).expect("a sane duration"));
        edges.push((started, 1));
        edges.push((ended, -1));
    }
    // At the same instant an end comes before a start: a slot handed over is not an overlap.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, change) in edges {
        now += change;
        most = most.max(now);
    }
    usize::try_from(most).expect("never negative")
}

/// A package whose one task starts `job` on the `solo` pool, waiting for it.
fn solo_package(name: &str, task: &str, job: &str, queue_timeout: Option<&str>) -> String {
    let queue_timeout = queue_timeout.map(|t| format!("queue_timeout = \"{t}\"\n")).unwrap_or_default();
    format!(
        "[package]\nname = \"{name}\"\n\n[[tasks]]\nname = \"{task}\"\nkind = \"agent_job\"\npool = \"solo\"\n\
         job = \"{job}\"\nwait = true\n{queue_timeout}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_task_starts_when_a_slot_frees_and_fails_at_queue_timeout() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let cluster = Cluster::setup(ws)
        .job("hold.toml", &gated_job("hold", &gate, "concurrency = \"allow\"\nmax_running = 10"))
        .job("quick.toml", &quick_job("quick", "concurrency = \"allow\"\nmax_running = 10"))
        .agent_setting("server-c", "labels", "[\"etl\", \"solo\"]")
        .agent_setting("server-c", "slots", "1")
        .start()
        .await;
    eventually_async(WAIT, "the coordinator to learn server-c's one slot and its solo label", || async {
        let agents = cluster.client.clone().list_agents(ListAgentsRequest {}).await.ok()?.into_inner().agents;
        let c = agents.into_iter().find(|a| a.name == "server-c")?;
        (c.slots == 1 && c.labels.iter().any(|l| l == "solo")).then_some(())
    })
    .await;
    let holder = cluster.package("holder.toml", &solo_package("holder", "Hold", "hold", None));
    let pending = cluster.package("pending.toml", &solo_package("pending", "Next", "quick", Some("10s")));
    let late = cluster.package("late.toml", &solo_package("late", "Late", "quick", Some("500ms")));

    let holder_id = cluster.detach(&holder).await;
    let held = cluster.wait_for_child(&holder_id, "Hold", "running").await;
    let pending_id = cluster.detach(&pending).await;
    // SSISDB status `pending` (issue 13 item 7): the execution's only task waits for a slot.
    let waiting = eventually_async(WAIT, "the execution to be pending while its task waits for a slot", || async {
        let execution = cluster.execution(&pending_id).await;
        (execution.status == "pending").then_some(execution)
    })
    .await;
    assert!(waiting.ended_at.is_none(), "{waiting:?}");
    let listed = cluster.client.clone().list_executions(ListExecutionsRequest { limit: 10 }).await;
    let listed = listed.expect("ListExecutions").into_inner().executions;
    let row = listed.iter().find(|e| e.execution_id == pending_id).expect("listed");
    assert_eq!(row.status, "pending", "ListExecutions shows the same status: {row:?}");
    let timed_out = cluster.run_expecting(&late, 1).await;
    let while_held = cluster.report(&pending_id).await;
    open_gate(&gate);
    let pending_end = cluster.wait_for_end(&pending_id).await;
    let holder_end = cluster.wait_for_end(&holder_id).await;

    assert_eq!(held.agent, "server-c", "{held:?}");
    let late_task = task(&timed_out, "Late");
    assert_eq!(late_task["result"], "failure", "{timed_out:#}");
    let message = text(&late_task["message"]);
    assert!(message.contains("queue_timeout") && message.contains("pending"), "{timed_out:#}");
    let waited = late_task["duration_ms"].as_u64().expect("a duration");
    assert!((500..10_000).contains(&waited), "it waited {waited} ms with queue_timeout 500ms: {timed_out:#}");
    assert!(timed_out["children"].as_array().is_some_and(Vec::is_empty), "nothing started: {timed_out:#}");
    let status = while_held.execution.as_ref().map(|e| e.status.as_str());
    assert_eq!(status, Some("pending"), "B waits while the slot is held: {while_held:?}");
    assert!(while_held.children.is_empty(), "B started nothing while the slot was held: {while_held:?}");
    assert_eq!(holder_end.status, "succeeded", "{holder_end:?}");
    assert_eq!(pending_end.status, "succeeded", "the pending task started once the slot freed: {pending_end:?}");
    let report = cluster.report_json(&pending_id).await;
    assert_eq!(task(&report, "Next")["result"], "success", "{report:#}");
    let next = only_child(&report, "Next");
    assert_eq!((next["agent"].as_str(), next["status"].as_str()), (Some("server-c"), Some("succeeded")), "{report:#}");
    let mut agent = cluster.agent_client("server-c").await;
    let first = get_run(&mut agent, &held.run_id).await;
    let second = get_run(&mut agent, text(&next["run_id"])).await;
    let (first_ended, second_started) = (utc(first.ended_at.as_ref()), utc(second.started_at.as_ref()));
    assert!(first_ended <= second_started, "B's run started at {second_started}, before A's ended at {first_ended}");
}

const SKIP_BUSY: &str = r#"[package]
name = "skip-busy"

[[tasks]]
name = "Exclusive"
kind = "agent_job"
pool = "etl"
job = "exclusive"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_already_running_a_forbid_job_is_skipped_for_another_in_the_pool() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let cluster = Cluster::setup(ws)
        .job("exclusive.toml", &gated_job("exclusive", &gate, "concurrency = \"forbid\""))
        .job("filler.toml", &gated_job("filler", &gate, "concurrency = \"allow\"\nmax_running = 10"))
        .start()
        .await;
    // server-a runs the forbid job; the others run two fillers each, so least_loaded prefers
    // server-a (1 of 4 slots in use against 2 of 4) and must skip it.
    let mut server_a = cluster.agent_client("server-a").await;
    let direct = start(&mut server_a, "exclusive", "operator").await;
    wait_for_status(&server_a, &direct.run_id, RunStatus::Running).await;
    for name in ["server-b", "server-c"] {
        let mut client = cluster.agent_client(name).await;
        for _ in 0..2 {
            let filler = start(&mut client, "filler", "operator").await;
            wait_for_status(&client, &filler.run_id, RunStatus::Running).await;
        }
    }
    eventually_async(WAIT, "the coordinator to see the load of the direct starts", || async {
        let agents = cluster.client.clone().list_agents(ListAgentsRequest {}).await.ok()?.into_inner().agents;
        let running: BTreeMap<String, u32> = agents.into_iter().map(|a| (a.name, a.running + a.queued)).collect();
        let wanted = BTreeMap::from([("server-a".into(), 1), ("server-b".into(), 2), ("server-c".into(), 2)]);
        (running == wanted).then_some(())
    })
    .await;
    let package = cluster.package("skip.toml", SKIP_BUSY);

    let ran = cluster.run_expecting(&package, 0).await;

    let exclusive = task(&ran, "Exclusive");
    assert_eq!(exclusive["result"], "success", "{ran:#}");
    let child = only_child(&ran, "Exclusive");
    let agent = text(&child["agent"]);
    assert!(agent == "server-b" || agent == "server-c", "the job ran on {agent}, which already ran it: {ran:#}");
    assert_eq!(exclusive["agent"], child["agent"], "{ran:#}");
    let run = get_run(&mut cluster.agent_client(agent).await, text(&child["run_id"])).await;
    assert_eq!((run.job.as_str(), run.task_path.as_str()), ("exclusive", "Exclusive"), "{run:?}");
    let on_a = server_a.list_jobs(ListJobsRequest {}).await.expect("ListJobs").into_inner().jobs;
    let exclusive_on_a = on_a.iter().find(|j| j.name == "exclusive").expect("the job is on server-a");
    assert_eq!(exclusive_on_a.running, 1, "server-a still runs only the direct start: {exclusive_on_a:?}");
    open_gate(&gate);
    let direct_end = crate::agent::wait_for_end(&server_a, &direct.run_id).await;
    assert_eq!(run_status(&direct_end), RunStatus::Succeeded, "{direct_end:?}");
}
