//! What a run leaves in a real agent's history (DESIGN.md §3): step actions and retries as
//! `sysjobhistory` rows, the job outcome row, and a stopped run's process tree ended.

use std::time::Duration;

use prost_types::Timestamp;
use switchyard_proto::{GetRunOutputRequest, HistoryRow, HistoryStatus, RunStatus, StopJobRequest};
use switchyard_tests::{AgentProcess, Workspace, eventually_async, process_is_gone};

use crate::agent::{WAIT, history, read_pids, row_status, run_status, start, wait_for_end, wait_for_status};

/// Step 1 fails three times (two retries), then its on_failure jumps over step 2 to the cleanup,
/// whose success still fails the job.
const RETRY_THEN_CLEANUP_FAILS: &str = r#"name = "retry_then_cleanup_fails"

[[steps]]
name = "flaky"
command = ["sh", "-c", "echo attempt >&2; exit 3"]
retry_attempts = 2
retry_interval = "50ms"
on_failure = "step:cleanup"

[[steps]]
name = "skipped"
command = ["true"]

[[steps]]
name = "cleanup"
command = ["true"]
on_success = "quit_failure"
"#;

/// Step 1 fails twice (one retry), then the cleanup's success ends the job succeeded.
const RETRY_THEN_CLEANUP_SUCCEEDS: &str = r#"name = "retry_then_cleanup_succeeds"

[[steps]]
name = "flaky"
command = ["sh", "-c", "exit 3"]
retry_attempts = 1
retry_interval = "50ms"
on_failure = "step:cleanup"

[[steps]]
name = "cleanup"
command = ["true"]
on_success = "quit_success"
"#;

/// A row reduced to what the sequence of rows is about.
type RowShape = (u32, String, HistoryStatus, u32);

#[tokio::test(flavor = "multi_thread")]
async fn step_actions_and_retries_show_in_history() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws)
        .job("fails.toml", RETRY_THEN_CLEANUP_FAILS)
        .job("succeeds.toml", RETRY_THEN_CLEANUP_SUCCEEDS)
        .start()
        .await;
    let mut client = agent.client().await;

    let failing = start(&mut client, "retry_then_cleanup_fails", "tester").await;
    let succeeding = start(&mut client, "retry_then_cleanup_succeeds", "tester").await;
    let failed = wait_for_end(&client, &failing.run_id).await;
    let succeeded = wait_for_end(&client, &succeeding.run_id).await;

    assert_eq!(run_status(&failed), RunStatus::Failed, "{failed:?}");
    assert_eq!(run_status(&succeeded), RunStatus::Succeeded, "{succeeded:?}");

    let rows = history(&mut client, "retry_then_cleanup_fails").await;
    assert_eq!(
        shapes(&rows),
        [
            (0, "(Job outcome)".to_string(), HistoryStatus::Failed, 0),
            (3, "cleanup".to_string(), HistoryStatus::Succeeded, 0),
            (1, "flaky".to_string(), HistoryStatus::Failed, 2),
            (1, "flaky".to_string(), HistoryStatus::Retry, 1),
            (1, "flaky".to_string(), HistoryStatus::Retry, 0),
        ],
        "{rows:#?}"
    );
    assert_one_run_newest_first(&rows, &failing.run_id);
    let outcome = &rows[0].message;
    assert!(outcome.contains("The last step to run was step 3 (cleanup)."), "{outcome}");
    assert!(outcome.contains("The Job was invoked by User tester."), "{outcome}");
    assert!(rows[2].message.contains("Process exit code 3."), "{:?}", rows[2]);
    assert!(rows[3].message.contains("retry 2 of 2"), "{:?}", rows[3]);
    assert!(rows[4].message.contains("retry 1 of 2"), "{:?}", rows[4]);
    let between_attempts = nanos(rows[3].started_at.as_ref()) - nanos(rows[4].started_at.as_ref());
    assert!(
        between_attempts >= Duration::from_millis(50).as_nanos() as i64,
        "the retry did not wait retry_interval: {} ns between attempts",
        between_attempts
    );
    let output = client
        .get_run_output(GetRunOutputRequest { run_id: failing.run_id.clone(), max_bytes: 0 })
        .await
        .expect("GetRunOutput")
        .into_inner();
    let attempts: Vec<(u32, u32)> = output.steps.iter().map(|s| (s.step_id, s.attempt)).collect();
    for attempt in [(1, 0), (1, 1), (1, 2), (3, 0)] {
        assert!(attempts.contains(&attempt), "no output of step attempt {attempt:?}: {output:#?}");
    }
    assert!(output.steps.iter().filter(|s| s.step_id == 1).all(|s| s.stderr.contains("attempt")), "{output:#?}");

    let rows = history(&mut client, "retry_then_cleanup_succeeds").await;
    assert_eq!(
        shapes(&rows),
        [
            (0, "(Job outcome)".to_string(), HistoryStatus::Succeeded, 0),
            (2, "cleanup".to_string(), HistoryStatus::Succeeded, 0),
            (1, "flaky".to_string(), HistoryStatus::Failed, 1),
            (1, "flaky".to_string(), HistoryStatus::Retry, 0),
        ],
        "{rows:#?}"
    );
    assert_one_run_newest_first(&rows, &succeeding.run_id);
    assert!(rows[0].message.contains("The last step to run was step 2 (cleanup)."), "{:?}", rows[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_ends_the_process_tree() {
    let ws = Workspace::new();
    let pids_file = ws.path("pids");
    // The step's shell starts a grandchild and writes both pids, atomically, then waits.
    let job = format!(
        r#"name = "sleeper"

[[steps]]
name = "sleep"
command = ["sh", "-c", "sleep 300 & echo $$ $! > '{pids}.tmp' && mv '{pids}.tmp' '{pids}'; wait"]
"#,
        pids = pids_file.display()
    );
    let agent = AgentProcess::setup(&ws).job("sleeper.toml", &job).start().await;
    let mut client = agent.client().await;
    let started = start(&mut client, "sleeper", "alice").await;
    wait_for_status(&client, &started.run_id, RunStatus::Running).await;
    let pids = read_pids(&pids_file).await;
    for pid in &pids {
        assert!(!process_is_gone(*pid), "process {pid} of the step ended before the stop");
    }

    let request = StopJobRequest { job: "sleeper".to_string(), requested_by: "bob".to_string(), ..Default::default() };
    let stopped = client.stop_job(request).await.expect("StopJob").into_inner();

    assert_eq!(stopped.run_ids, std::slice::from_ref(&started.run_id), "{stopped:?}");
    assert_eq!(stopped.message, "Job 'sleeper' stopped successfully.");
    let ended = wait_for_end(&client, &started.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Canceled, "{ended:?}");
    let rows = history(&mut client, "sleeper").await;
    assert_eq!(
        shapes(&rows),
        [
            (0, "(Job outcome)".to_string(), HistoryStatus::Canceled, 0),
            (1, "sleep".to_string(), HistoryStatus::Canceled, 0),
        ],
        "{rows:#?}"
    );
    assert!(rows[0].message.contains("stopped prior to completion by User bob"), "{:?}", rows[0]);
    eventually_async(WAIT, "the step's shell and its grandchild to end", || async {
        pids.iter().all(|pid| process_is_gone(*pid)).then_some(())
    })
    .await;
}

fn shapes(rows: &[HistoryRow]) -> Vec<RowShape> {
    rows.iter().map(|r| (r.step_id, r.step_name.clone(), row_status(r), r.retries_attempted)).collect()
}

/// Every row belongs to `run_id`, and the rows come newest first.
fn assert_one_run_newest_first(rows: &[HistoryRow], run_id: &str) {
    assert!(rows.iter().all(|r| r.run_id == run_id), "{rows:#?}");
    assert!(rows.windows(2).all(|w| w[0].instance_id > w[1].instance_id), "not newest first: {rows:#?}");
    assert!(rows.iter().all(|r| (2000..3000).contains(&(r.run_date / 10_000))), "run_date is YYYYMMDD: {rows:#?}");
}

fn nanos(at: Option<&Timestamp>) -> i64 {
    let at = at.expect("the timestamp is set");
    at.seconds * 1_000_000_000 + i64::from(at.nanos)
}
