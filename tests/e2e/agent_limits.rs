//! Findings from outside about an agent's bounds (issue 12; DESIGN.md §11), each kept as a test
//! against a real `switchyard-agent`: empty and over-long request fields, an idempotency key
//! reused for another job, and silent clients that must not hold its memory or descriptors.

use switchyard_proto::{
    DeleteJobRequest, GetRunOutputRequest, GetRunRequest, JobHistoryRequest, RunEventKind, StartJobRequest,
    StopJobRequest, WatchRunsRequest,
};
use switchyard_tests::{AgentProcess, Workspace, eventually, within};
use tokio::io::AsyncReadExt;
use tonic::Code;

use crate::agent::{WAIT, next_event, quick_job, start_refused, start_with, wait_for_end};

/// An agent with two quick jobs, `a` and `b`.
async fn agent_with_two_jobs(ws: &Workspace) -> AgentProcess {
    AgentProcess::setup(ws).job("a.toml", &quick_job("a", "")).job("b.toml", &quick_job("b", "")).start().await
}

fn invalid_argument<T: std::fmt::Debug>(reply: Result<T, tonic::Status>, field: &str) -> String {
    let status = reply.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains(field), "the refusal names {field}: {status:?}");
    status.message().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_ids_are_invalid_arguments_naming_the_field_not_unknown_runs() {
    let ws = Workspace::new();
    let agent = agent_with_two_jobs(&ws).await;
    let mut client = agent.client().await;
    invalid_argument(client.get_run(GetRunRequest::default()).await, "run_id");
    invalid_argument(client.get_run_output(GetRunOutputRequest::default()).await, "run_id");
    invalid_argument(client.delete_job(DeleteJobRequest::default()).await, "name");
    let message = start_refused(&mut client, StartJobRequest::default(), Code::InvalidArgument).await;
    assert!(message.contains("job"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_long_fields_of_every_call_are_refused_naming_the_field_and_the_limit() {
    let ws = Workspace::new();
    let agent = agent_with_two_jobs(&ws).await;
    let mut client = agent.client().await;
    let long = "x".repeat(2000);
    let get_run = client.get_run(GetRunRequest { run_id: long.clone(), ..Default::default() }).await;
    let message = invalid_argument(get_run, "run_id");
    assert!(message.contains("field = 1024"), "{message}");
    let by_key = client.get_run(GetRunRequest { idempotency_key: long.clone(), ..Default::default() }).await;
    invalid_argument(by_key, "idempotency_key");
    let history = client.job_history(JobHistoryRequest { job: long.clone(), ..Default::default() }).await;
    invalid_argument(history, "job");
    let stop = client.stop_job(StopJobRequest { requested_by: long.clone(), ..Default::default() }).await;
    invalid_argument(stop, "requested_by");
    let watch = client.watch_runs(WatchRunsRequest { incarnation: long.clone(), ..Default::default() }).await;
    invalid_argument(watch.map(|_| ()), "incarnation");
    let request = StartJobRequest { job: "a".into(), requested_by: long, ..Default::default() };
    let message = start_refused(&mut client, request, Code::InvalidArgument).await;
    assert!(message.contains("requested_by") && message.contains("field = 1024"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_reused_for_another_job_is_refused_naming_both_jobs() {
    let ws = Workspace::new();
    let agent = agent_with_two_jobs(&ws).await;
    let mut client = agent.client().await;
    let key = |job: &str| StartJobRequest { job: job.into(), idempotency_key: "k-1".into(), ..Default::default() };
    let first = start_with(&mut client, key("a")).await;
    // The same start again is answered with the run it started.
    let again = start_with(&mut client, key("a")).await;
    assert_eq!((again.run_id.as_str(), again.existing), (first.run_id.as_str(), true));
    // Another job with the key is refused while the run is in memory and after it has ended.
    let message = start_refused(&mut client, key("b"), Code::InvalidArgument).await;
    assert!(message.contains("already started job \"a\"") && message.contains("job \"b\""), "{message}");
    wait_for_end(&client, &first.run_id).await;
    let mut restarted = agent;
    restarted.terminate(WAIT).await;
    restarted.restart().await;
    let mut client = restarted.client().await;
    let message = start_refused(&mut client, key("b"), Code::InvalidArgument).await;
    assert!(message.contains("already started job \"a\""), "{message}");
}

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of kB")
}

/// Open descriptors of process `pid`.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc fd").count()
}

/// 500 sockets that never speak and 1,000 WatchRuns streams with nothing to say cost the agent
/// a bounded amount of memory; a normal client is served meanwhile; the silent sockets are
/// closed after `idle_timeout` and their descriptors freed, while the streams (whose client
/// answers the server's keepalive pings) stay open and still deliver events.
#[tokio::test(flavor = "multi_thread")]
async fn silent_clients_cannot_hold_the_agents_memory_or_descriptors() {
    const SILENT: usize = 500;
    const CHANNELS: usize = 10;
    const STREAMS_PER_CHANNEL: usize = 100;
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws)
        .job("a.toml", &quick_job("a", "concurrency = \"allow\"\nmax_running = 4"))
        .setting("limits", "{ idle_timeout = \"5s\" }")
        .start()
        .await;
    let pid = agent.pid();
    let (rss_before, fds_before) = (rss_kib(pid), descriptors(pid));

    let mut streams = Vec::with_capacity(CHANNELS * STREAMS_PER_CHANNEL);
    for _ in 0..CHANNELS {
        let client = switchyard_proto::agent_client::AgentClient::new(agent.channel().await);
        for _ in 0..STREAMS_PER_CHANNEL {
            let mut client = client.clone();
            let stream = within(WAIT, "WatchRuns to open", client.watch_runs(WatchRunsRequest::default()))
                .await
                .expect("WatchRuns opens")
                .into_inner();
            streams.push(stream);
        }
    }
    // The silent sockets last, so that all are held together before the idle limit ends them.
    let mut silent = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        silent.push(tokio::net::TcpStream::connect(agent.address()).await.expect("connects"));
    }
    let held = eventually(WAIT, "the agent to hold the silent sockets", || {
        (descriptors(pid) >= fds_before + SILENT).then(|| descriptors(pid))
    });
    let rss_held = rss_kib(pid);
    let grown_mib = rss_held.saturating_sub(rss_before) / 1024;
    println!(
        "agent memory: {} MiB before, {} MiB holding {SILENT} silent sockets and {} streams (+{grown_mib} MiB); \
         {held} descriptors",
        rss_before / 1024,
        rss_held / 1024,
        streams.len()
    );
    assert!(grown_mib < 64, "the agent grew by {grown_mib} MiB for idle clients");

    // A normal client is served while they are held.
    let mut client = agent.client().await;
    let accepted = start_with(&mut client, StartJobRequest { job: "a".into(), ..Default::default() }).await;
    wait_for_end(&client, &accepted.run_id).await;

    // The silent sockets are closed (each read ends) and their descriptors freed.
    within(WAIT, "the silent sockets to be closed", async {
        for socket in &mut silent {
            let mut buf = [0u8; 256];
            loop {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    })
    .await;
    eventually(WAIT, "the agent to free the silent sockets' descriptors", || {
        (descriptors(pid) < fds_before + SILENT / 10).then_some(())
    });

    // The streams outlived the idle limit and deliver the next run's events to every watcher.
    let accepted = start_with(&mut client, StartJobRequest { job: "a".into(), ..Default::default() }).await;
    for stream in &mut streams {
        loop {
            let event = next_event(stream).await;
            if event.run_id == accepted.run_id && event.kind == RunEventKind::Accepted as i32 {
                break;
            }
        }
    }
}
