//! Nothing lost (DESIGN.md §4, §10): a resumed WatchRuns stream misses no event, a kill -9 keeps
//! history and closes the interrupted run after a restart, and SIGTERM drains running runs.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_proto::{GetLoadRequest, HistoryStatus, RunEvent, RunEventKind, RunStatus};
use switchyard_tests::{AgentProcess, Workspace, eventually_async, process_is_gone};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::agent::{
    WAIT, gated_job, get_run, history, next_event, open_gate, quick_job, read_pids, row_status, run_status, start,
    start_request, wait_for_end, wait_for_status, watch,
};

#[tokio::test(flavor = "multi_thread")]
async fn watch_runs_resumed_after_a_reconnect_loses_no_event() {
    let ws = Workspace::new();
    let agent =
        AgentProcess::setup(&ws).job("quick.toml", &quick_job("quick", "concurrency = \"queue\"")).start().await;
    let mut client = agent.client().await;
    let mut run_ids = Vec::new();
    for _ in 0..3 {
        run_ids.push(start(&mut client, "quick", "alice").await.run_id);
    }

    let mut stream = watch(&mut client, 0, "").await;
    let mut seen = Vec::new();
    for _ in 0..7 {
        seen.push(next_event(&mut stream).await);
    }
    drop(stream);
    for _ in 0..2 {
        run_ids.push(start(&mut client, "quick", "bob").await.run_id);
    }
    let last = seen.last().expect("seven events were read");
    let (after_sequence, incarnation) = (last.sequence, last.incarnation.clone());
    let mut stream = watch(&mut client, after_sequence, &incarnation).await;
    while finished_runs(&seen).len() < run_ids.len() {
        seen.push(next_event(&mut stream).await);
    }

    let sequences: Vec<u64> = seen.iter().map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(sequences, expected, "events lost or repeated across the reconnect");
    assert!(seen.iter().all(|e| e.incarnation == seen[0].incarnation), "{seen:#?}");
    let finished = finished_runs(&seen);
    assert_eq!(finished.keys().collect::<BTreeSet<_>>(), run_ids.iter().collect(), "{seen:#?}");
    assert!(finished.values().all(|status| *status == RunStatus::Succeeded as i32), "{finished:?}");
    let finished_events = seen.iter().filter(|e| e.kind == RunEventKind::Finished as i32).count();
    assert_eq!(finished_events, run_ids.len(), "one FINISHED event per run: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_and_restart_keeps_history_and_closes_the_interrupted_run() {
    let ws = Workspace::new();
    let pids_file = ws.path("pids");
    let long = format!(
        r#"name = "long"

[[steps]]
name = "sleep"
command = ["sh", "-c", "sleep 300 & echo $$ $! > '{pids}.tmp' && mv '{pids}.tmp' '{pids}'; wait"]
"#,
        pids = pids_file.display()
    );
    let mut agent =
        AgentProcess::setup(&ws).job("quick.toml", &quick_job("quick", "")).job("long.toml", &long).start().await;
    let mut client = agent.client().await;
    let interrupted = start(&mut client, "long", "alice").await;
    let [shell, grandchild] = read_pids(&pids_file).await[..] else { unreachable!("read_pids returns two pids") };
    // The quick run also makes sure the long run's process group is on record: the agent
    // records it when the step starts, and writes are committed in order.
    let completed = start(&mut client, "quick", "alice").await;
    let ended = wait_for_end(&client, &completed.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
    let quick_history = history(&mut client, "quick").await;
    assert_eq!(quick_history.len(), 2, "a step row and the job outcome row: {quick_history:#?}");
    wait_for_status(&client, &interrupted.run_id, RunStatus::Running).await;

    let out = agent.kill9().await;

    assert_eq!(out.code, None, "killed by a signal\n{out}");
    eventually_async(WAIT, "the step's shell to die with the agent (PR_SET_PDEATHSIG)", || async {
        process_is_gone(shell).then_some(())
    })
    .await;

    agent.restart().await;
    let mut client = agent.client().await;

    eventually_async(WAIT, "the restarted agent to end the orphaned grandchild", || async {
        process_is_gone(grandchild).then_some(())
    })
    .await;
    assert_eq!(history(&mut client, "quick").await, quick_history, "history changed across the restart");
    let closed = get_run(&mut client, &interrupted.run_id).await;
    assert_eq!(run_status(&closed), RunStatus::Failed, "{closed:?}");
    assert!(closed.message.contains("agent restarted while the run was in progress"), "{closed:?}");
    let long_history = history(&mut client, "long").await;
    let outcome = long_history.iter().find(|r| r.step_id == 0).expect("a job outcome row for the interrupted run");
    assert_eq!(row_status(outcome), HistoryStatus::Failed, "{long_history:#?}");
    assert!(outcome.message.contains("agent restarted while the run was in progress"), "{long_history:#?}");
    assert_eq!(outcome.run_id, interrupted.run_id, "{long_history:#?}");

    let load = client.get_load(GetLoadRequest {}).await.expect("GetLoad").into_inner();
    assert_eq!(load.incarnation, interrupted.incarnation, "the data dir, so the incarnation, is the same");
    let mut stream = watch(&mut client, 0, "").await;
    let mut replayed: Vec<RunEvent> = Vec::new();
    while replayed.last().is_none_or(|e| e.sequence < load.last_sequence) {
        replayed.push(next_event(&mut stream).await);
    }
    let sequences: Vec<u64> = replayed.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=load.last_sequence).collect::<Vec<_>>(), "the replay is not contiguous");
    let finished = finished_runs(&replayed);
    assert_eq!(finished.get(&interrupted.run_id), Some(&(RunStatus::Failed as i32)), "{replayed:#?}");
    assert_eq!(finished.get(&completed.run_id), Some(&(RunStatus::Succeeded as i32)), "{replayed:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_running_runs_and_refuses_new_starts() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let mut agent = AgentProcess::setup(&ws)
        .setting("shutdown_grace", "\"20s\"")
        .job("short.toml", &gated_job("short", &gate, ""))
        .job("late.toml", &quick_job("late", "concurrency = \"queue\"\nmax_queue = 100"))
        .start()
        .await;
    let mut client = agent.client().await;
    let health = HealthClient::new(agent.channel().await);
    let running = start(&mut client, "short", "alice").await;
    wait_for_status(&client, &running.run_id, RunStatus::Running).await;

    agent.send_sigterm();

    let refusal = eventually_async(WAIT, "a start to be refused after SIGTERM", || {
        let mut client = client.clone();
        async move { client.start_job(start_request("late", "bob")).await.err() }
    })
    .await;
    assert_eq!(refusal.code(), Code::Unavailable, "{refusal:?}");
    eventually_async(WAIT, "the agent's health to be NOT_SERVING while it drains", || {
        let mut health = health.clone();
        async move {
            let request = HealthCheckRequest { service: "switchyard.v1.Agent".to_string() };
            let status = health.check(request).await.ok()?.into_inner().status;
            (status == ServingStatus::NotServing as i32).then_some(())
        }
    })
    .await;
    let draining = get_run(&mut client, &running.run_id).await;
    assert_eq!(run_status(&draining), RunStatus::Running, "the drain lets a running run go on: {draining:?}");
    open_gate(&gate);
    let out = agent.wait_for_exit(WAIT).await;

    out.assert_exit(0);
    agent.restart().await;
    let mut client = agent.client().await;
    let ended = get_run(&mut client, &running.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
    let rows = history(&mut client, "short").await;
    assert_eq!(rows.first().map(|r| (r.step_id, row_status(r))), Some((0, HistoryStatus::Succeeded)));
    assert_eq!(rows[0].run_id, running.run_id, "{rows:#?}");
}

/// The final status of every run with a FINISHED event among `events`, by run id.
fn finished_runs(events: &[RunEvent]) -> BTreeMap<String, i32> {
    events.iter().filter(|e| e.kind == RunEventKind::Finished as i32).map(|e| (e.run_id.clone(), e.status)).collect()
}
