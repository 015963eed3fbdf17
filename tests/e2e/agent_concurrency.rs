//! A job's concurrency policy on a real agent (DESIGN.md §3): `forbid` refuses a second start
//! with SQL Server Agent's text, `queue` runs starts one after another up to `max_queue` waiting,
//! `allow` runs up to `max_running` at once.

use prost_types::Timestamp;
use switchyard_proto::{JobActivity, ListJobsRequest, RunStatus};
use switchyard_tests::{AgentProcess, Workspace};
use tonic::Code;

use crate::agent::{
    gated_job, get_run, open_gate, run_status, start, start_refused, start_request, wait_for_end, wait_for_status,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_second_start_of_a_running_forbid_job_is_refused_with_sql_server_agent_text() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let job = gated_job("nightly", &gate, "concurrency = \"forbid\"");
    let agent = AgentProcess::setup(&ws).job("nightly.toml", &job).start().await;
    let mut client = agent.client().await;

    let first = start(&mut client, "nightly", "alice").await;
    let message = start_refused(&mut client, start_request("nightly", "bob"), Code::FailedPrecondition).await;

    assert_eq!(
        message,
        "Request to run job nightly (from User bob) refused because the job is already running from a request by \
         User alice."
    );
    open_gate(&gate);
    let ended = wait_for_end(&client, &first.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
    let after_the_end = start(&mut client, "nightly", "bob").await;
    assert_ne!(after_the_end.run_id, first.run_id);
    let ended = wait_for_end(&client, &after_the_end.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_policy_runs_starts_one_after_another_and_refuses_a_start_past_max_queue() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let job = gated_job("serial", &gate, "concurrency = \"queue\"\nmax_queue = 1");
    let agent = AgentProcess::setup(&ws).job("serial.toml", &job).start().await;
    let mut client = agent.client().await;

    let first = start(&mut client, "serial", "alice").await;
    wait_for_status(&client, &first.run_id, RunStatus::Running).await;
    let second = start(&mut client, "serial", "bob").await;
    let message = start_refused(&mut client, start_request("serial", "carol"), Code::ResourceExhausted).await;

    assert_eq!(second.status, RunStatus::Queued as i32, "{second:?}");
    assert!(!message.is_empty());
    let waiting = get_run(&mut client, &second.run_id).await;
    assert_eq!(run_status(&waiting), RunStatus::Queued, "the second run waits for the first: {waiting:?}");
    let jobs = client.list_jobs(ListJobsRequest {}).await.expect("ListJobs").into_inner().jobs;
    let serial = jobs.iter().find(|j| j.name == "serial").expect("the job is listed");
    assert_eq!((serial.running, serial.queued), (1, 1), "{serial:?}");
    assert_eq!(serial.activity, JobActivity::Executing as i32, "{serial:?}");
    assert_eq!(serial.concurrency, "queue", "{serial:?}");

    open_gate(&gate);
    let first = wait_for_end(&client, &first.run_id).await;
    let second = wait_for_end(&client, &second.run_id).await;
    assert_eq!(run_status(&first), RunStatus::Succeeded, "{first:?}");
    assert_eq!(run_status(&second), RunStatus::Succeeded, "{second:?}");
    let first_ended = instant(first.ended_at.as_ref());
    let second_started = instant(second.started_at.as_ref());
    assert!(second_started >= first_ended, "the queued run started before the first ended: {first:?} {second:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_policy_runs_up_to_max_running_at_once_and_refuses_more() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let job = gated_job("parallel", &gate, "concurrency = \"allow\"\nmax_running = 2");
    let agent = AgentProcess::setup(&ws).job("parallel.toml", &job).start().await;
    let mut client = agent.client().await;

    let first = start(&mut client, "parallel", "alice").await;
    let second = start(&mut client, "parallel", "bob").await;
    // Neither can end before the gate opens, so both running means both run at once.
    wait_for_status(&client, &first.run_id, RunStatus::Running).await;
    wait_for_status(&client, &second.run_id, RunStatus::Running).await;
    // At max_running the job is "already running" (DESIGN.md §6: FAILED_PRECONDITION), which a
    // coordinator's pool placement answers by trying another agent.
    let message = start_refused(&mut client, start_request("parallel", "carol"), Code::FailedPrecondition).await;

    assert!(
        message.starts_with(
            "Request to run job parallel (from User carol) refused because the job is already running from a request \
             by User "
        ),
        "{message}"
    );
    assert!(message.contains("max_running = 2"), "{message}");
    open_gate(&gate);
    for run_id in [&first.run_id, &second.run_id] {
        let ended = wait_for_end(&client, run_id).await;
        assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
    }
    let third = start(&mut client, "parallel", "carol").await;
    let ended = wait_for_end(&client, &third.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
}

/// A timestamp as (seconds, nanos), which orders like the instant; panics when it is missing.
fn instant(at: Option<&Timestamp>) -> (i64, i32) {
    let at = at.expect("the timestamp is set");
    (at.seconds, at.nanos)
}
