//! The worker agent over gRPC (DESIGN.md §3, §4, §6), with a real `switchyard-agent` process and
//! a real tonic client: starts that answer at once, refusals, unknown jobs, idempotent starts.
//! The helpers here serve the other `agent_*` modules too.

use std::path::Path;
use std::time::Duration;

use switchyard_proto::agent_client::AgentClient;
use switchyard_proto::{
    GetRunRequest, HistoryRow, HistoryStatus, JobActivity, JobHistoryRequest, ListJobsRequest, Run, RunEvent,
    RunEventKind, RunStatus, StartJobRequest, StartJobResponse, WatchRunsRequest,
};
use switchyard_tests::{AgentProcess, Workspace, eventually_async, within};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

/// How long any condition of these tests may take to come true: generous for a loaded CI
/// machine, finite so nothing hangs.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// A job whose only step waits until the file `gate` exists, then succeeds.
pub(crate) fn gated_job(name: &str, gate: &Path, concurrency: &str) -> String {
    format!(
        r#"name = "{name}"
{concurrency}

[[steps]]
name = "wait for the gate"
command = ["sh", "-c", "while [ ! -f '{gate}' ]; do sleep 0.05; done"]
"#,
        gate = gate.display()
    )
}

/// A job whose only step succeeds at once.
pub(crate) fn quick_job(name: &str, concurrency: &str) -> String {
    format!("name = \"{name}\"\n{concurrency}\n\n[[steps]]\nname = \"true\"\ncommand = [\"true\"]\n")
}

/// Opens the gate of a [`gated_job`].
pub(crate) fn open_gate(gate: &Path) {
    std::fs::write(gate, "").unwrap_or_else(|e| panic!("cannot create {}: {e}", gate.display()));
}

/// A start of `job` on behalf of `requested_by`.
pub(crate) fn start_request(job: &str, requested_by: &str) -> StartJobRequest {
    StartJobRequest { job: job.to_string(), requested_by: requested_by.to_string(), ..StartJobRequest::default() }
}

/// Starts `job` and expects the agent to accept it.
pub(crate) async fn start(client: &mut AgentClient<Channel>, job: &str, requested_by: &str) -> StartJobResponse {
    start_with(client, start_request(job, requested_by)).await
}

/// Sends `request` and expects the agent to accept it.
pub(crate) async fn start_with(client: &mut AgentClient<Channel>, request: StartJobRequest) -> StartJobResponse {
    let job = request.job.clone();
    client.start_job(request).await.unwrap_or_else(|e| panic!("StartJob {job} was refused: {e:?}")).into_inner()
}

/// Sends `request` and expects the refusal with `code`; returns its message.
pub(crate) async fn start_refused(client: &mut AgentClient<Channel>, request: StartJobRequest, code: Code) -> String {
    let job = request.job.clone();
    match client.start_job(request).await {
        Ok(accepted) => panic!("StartJob {job} was accepted, expected {code:?}: {:?}", accepted.into_inner()),
        Err(status) => {
            assert_eq!(status.code(), code, "StartJob {job}: {status:?}");
            status.message().to_string()
        }
    }
}

/// The run as the agent reports it now.
pub(crate) async fn get_run(client: &mut AgentClient<Channel>, run_id: &str) -> Run {
    let request = GetRunRequest { run_id: run_id.to_string(), ..Default::default() };
    client.get_run(request).await.unwrap_or_else(|e| panic!("GetRun {run_id}: {e:?}")).into_inner()
}

/// The run's status as the enum.
pub(crate) fn run_status(run: &Run) -> RunStatus {
    RunStatus::try_from(run.status).unwrap_or_else(|_| panic!("unknown run status {}: {run:?}", run.status))
}

/// Whether a run with this status has ended.
pub(crate) fn has_ended(status: RunStatus) -> bool {
    matches!(status, RunStatus::Succeeded | RunStatus::Failed | RunStatus::Canceled)
}

/// Polls GetRun until the run has status `wanted`; returns the run.
pub(crate) async fn wait_for_status(client: &AgentClient<Channel>, run_id: &str, wanted: RunStatus) -> Run {
    let what = format!("run {run_id} to be {}", wanted.as_str_name());
    eventually_async(WAIT, &what, || {
        let mut client = client.clone();
        async move {
            let run = get_run(&mut client, run_id).await;
            let status = run_status(&run);
            assert!(
                status == wanted || !has_ended(status),
                "run {run_id} ended {} while waiting for {}: {run:?}",
                status.as_str_name(),
                wanted.as_str_name()
            );
            (status == wanted).then_some(run)
        }
    })
    .await
}

/// Polls GetRun until the run has ended; returns it.
pub(crate) async fn wait_for_end(client: &AgentClient<Channel>, run_id: &str) -> Run {
    eventually_async(WAIT, &format!("run {run_id} to end"), || {
        let mut client = client.clone();
        async move {
            let run = get_run(&mut client, run_id).await;
            has_ended(run_status(&run)).then_some(run)
        }
    })
    .await
}

/// The history rows of `job`, newest first.
pub(crate) async fn history(client: &mut AgentClient<Channel>, job: &str) -> Vec<HistoryRow> {
    let request = JobHistoryRequest { job: job.to_string(), ..JobHistoryRequest::default() };
    client.job_history(request).await.unwrap_or_else(|e| panic!("JobHistory {job}: {e:?}")).into_inner().rows
}

/// A history row's status as the enum.
pub(crate) fn row_status(row: &HistoryRow) -> HistoryStatus {
    HistoryStatus::try_from(row.run_status).unwrap_or_else(|_| panic!("unknown history status: {row:?}"))
}

/// Opens WatchRuns after `after_sequence` of `incarnation`.
pub(crate) async fn watch(
    client: &mut AgentClient<Channel>,
    after_sequence: u64,
    incarnation: &str,
) -> Streaming<RunEvent> {
    let request = WatchRunsRequest { after_sequence, incarnation: incarnation.to_string(), kinds: Vec::new() };
    client.watch_runs(request).await.unwrap_or_else(|e| panic!("WatchRuns: {e:?}")).into_inner()
}

/// The next event of a WatchRuns stream; panics when the stream fails, ends, or is silent for
/// [`WAIT`].
pub(crate) async fn next_event(stream: &mut Streaming<RunEvent>) -> RunEvent {
    match within(WAIT, "the next run event", stream.message()).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the WatchRuns stream ended"),
        Err(status) => panic!("the WatchRuns stream failed: {status:?}"),
    }
}

/// Reads events until the FINISHED event of `run_id`; returns every event read, that one last.
pub(crate) async fn events_until_finished(stream: &mut Streaming<RunEvent>, run_id: &str) -> Vec<RunEvent> {
    let mut events = Vec::new();
    loop {
        let event = next_event(stream).await;
        let done = event.run_id == run_id && event.kind == RunEventKind::Finished as i32;
        events.push(event);
        if done {
            return events;
        }
    }
}

/// The two pids (shell, grandchild) a step writes to `file`, once it exists.
pub(crate) async fn read_pids(file: &Path) -> Vec<u32> {
    eventually_async(WAIT, "the step to write its pids", || async {
        let text = std::fs::read_to_string(file).ok()?;
        let pids: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        (pids.len() == 2).then_some(pids)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn start_returns_before_the_job_ends() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let agent = AgentProcess::setup(&ws).job("gated.toml", &gated_job("gated", &gate, "")).start().await;
    let mut client = agent.client().await;

    let started = start(&mut client, "gated", "alice").await;

    assert_eq!(started.message, "Job 'gated' started successfully.");
    assert!(!started.existing, "{started:?}");
    assert!(!started.run_id.is_empty() && !started.incarnation.is_empty(), "{started:?}");
    let status = RunStatus::try_from(started.status).expect("a known status");
    assert!(matches!(status, RunStatus::Queued | RunStatus::Running), "{started:?}");
    let running = wait_for_status(&client, &started.run_id, RunStatus::Running).await;
    assert_eq!((running.job.as_str(), running.requested_by.as_str()), ("gated", "alice"), "{running:?}");
    assert_eq!(running.accepted_sequence, started.sequence, "{running:?}");

    let mut events = watch(&mut client, started.sequence - 1, &started.incarnation).await;
    let accepted = next_event(&mut events).await;
    assert_eq!(accepted.sequence, started.sequence, "{accepted:?}");
    assert_eq!(accepted.kind, RunEventKind::Accepted as i32, "{accepted:?}");
    assert_eq!(accepted.run_id, started.run_id, "{accepted:?}");
    open_gate(&gate);
    let rest = events_until_finished(&mut events, &started.run_id).await;

    let finished = rest.last().expect("at least the FINISHED event");
    assert_eq!(finished.status, RunStatus::Succeeded as i32, "{finished:?}");
    let mut sequences = vec![accepted.sequence];
    sequences.extend(rest.iter().map(|e| e.sequence));
    assert!(sequences.windows(2).all(|w| w[1] == w[0] + 1), "sequences are not contiguous: {sequences:?}");
    assert!(rest.iter().all(|e| e.incarnation == started.incarnation), "{rest:?}");
    let kinds: Vec<i32> = rest.iter().filter(|e| e.run_id == started.run_id).map(|e| e.kind).collect();
    for kind in [RunEventKind::Started, RunEventKind::StepStarted, RunEventKind::StepFinished] {
        assert!(kinds.contains(&(kind as i32)), "no {} event: {rest:?}", kind.as_str_name());
    }
    let ended = get_run(&mut client, &started.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watcher_that_asks_for_some_kinds_gets_only_those_replayed_and_live() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let agent = AgentProcess::setup(&ws).job("gated.toml", &gated_job("gated", &gate, "")).start().await;
    let mut client = agent.client().await;
    let first = start(&mut client, "gated", "alice").await;
    let kinds = vec![RunEventKind::Accepted as i32, RunEventKind::Finished as i32];
    let request = WatchRunsRequest { after_sequence: 0, incarnation: first.incarnation.clone(), kinds: kinds.clone() };
    let mut events = client.watch_runs(request).await.expect("WatchRuns").into_inner();

    // Replayed from the outbox: the first run's ACCEPTED (its STARTED is left out).
    let accepted = next_event(&mut events).await;
    assert_eq!((accepted.run_id.as_str(), accepted.kind), (first.run_id.as_str(), RunEventKind::Accepted as i32));
    open_gate(&gate);
    let rest = events_until_finished(&mut events, &first.run_id).await;

    assert_eq!(rest.len(), 1, "only the FINISHED event follows: {rest:?}");
    assert!(rest[0].sequence > accepted.sequence + 1, "the progress events in between were skipped: {rest:?}");
    assert_eq!(rest[0].status, RunStatus::Succeeded as i32, "{rest:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_run_and_list_jobs_show_the_step_running_now() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let agent = AgentProcess::setup(&ws).job("gated.toml", &gated_job("gated", &gate, "")).start().await;
    let mut client = agent.client().await;
    let started = start(&mut client, "gated", "alice").await;

    let job = eventually_async(WAIT, "ListJobs to show step 1 of the job executing", || {
        let mut client = client.clone();
        async move {
            let jobs = client.list_jobs(ListJobsRequest {}).await.expect("ListJobs").into_inner().jobs;
            let job = jobs.into_iter().find(|j| j.name == "gated").expect("the job is listed");
            (job.activity == JobActivity::Executing as i32).then_some(job)
        }
    })
    .await;
    let run = get_run(&mut client, &started.run_id).await;

    assert_eq!((job.running, job.queued, job.current_step), (1, 0, 1), "{job:?}");
    assert_eq!(run_status(&run), RunStatus::Running, "the gate is closed: {run:?}");
    assert_eq!(run.current_step, 1, "step 1 runs until the gate opens: {run:?}");
    open_gate(&gate);
    let ended = wait_for_end(&client, &started.run_id).await;
    assert_eq!((run_status(&ended), ended.current_step), (RunStatus::Succeeded, 0), "{ended:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_job_is_not_found() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws).job("quick.toml", &quick_job("quick", "")).start().await;
    let mut client = agent.client().await;

    let message = start_refused(&mut client, start_request("no_such_job", "alice"), Code::NotFound).await;

    assert!(message.contains("no_such_job"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_long_start_fields_are_refused_naming_the_field_and_the_limit() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws).job("quick.toml", &quick_job("quick", "")).start().await;
    let mut client = agent.client().await;
    let long_caller = StartJobRequest { requested_by: "x".repeat(2000), ..start_request("quick", "alice") };
    let long_key = StartJobRequest { idempotency_key: "k".repeat(1025), ..start_request("quick", "alice") };

    let caller = start_refused(&mut client, long_caller, Code::InvalidArgument).await;
    let key = start_refused(&mut client, long_key, Code::InvalidArgument).await;

    assert!(caller.contains("requested_by is 2000 bytes") && caller.contains("field = 1024"), "{caller}");
    assert!(key.contains("idempotency_key is 1025 bytes"), "{key}");
    let rows = history(&mut client, "quick").await;
    assert!(rows.is_empty(), "nothing ran: {rows:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_start_returns_the_same_run() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let agent = AgentProcess::setup(&ws).job("gated.toml", &gated_job("gated", &gate, "")).start().await;
    let mut client = agent.client().await;
    let request = StartJobRequest { idempotency_key: "exec-1/Load/0".to_string(), ..start_request("gated", "alice") };

    let first = start_with(&mut client, request.clone()).await;
    let repeated_while_running = start_with(&mut client, request.clone()).await;
    open_gate(&gate);
    let ended = wait_for_end(&client, &first.run_id).await;
    let repeated_after_the_end = start_with(&mut client, request).await;

    assert!(!first.existing, "{first:?}");
    for repeated in [&repeated_while_running, &repeated_after_the_end] {
        assert_eq!(repeated.run_id, first.run_id, "{repeated:?}");
        assert!(repeated.existing, "{repeated:?}");
        assert_eq!(repeated.incarnation, first.incarnation, "{repeated:?}");
        assert_eq!(repeated.sequence, first.sequence, "the sequence of the run's ACCEPTED event: {repeated:?}");
    }
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
    assert_eq!(ended.idempotency_key, "exec-1/Load/0", "{ended:?}");
    let rows = history(&mut client, "gated").await;
    let outcomes: Vec<&HistoryRow> = rows.iter().filter(|r| r.step_id == 0).collect();
    assert_eq!(outcomes.len(), 1, "one run, one job outcome row: {rows:#?}");
    assert_eq!(outcomes[0].run_id, first.run_id, "{rows:#?}");
    // A restarted coordinator finds a start it had in flight by its key, starting nothing.
    let by_key = |key: &str| GetRunRequest { idempotency_key: key.to_string(), ..Default::default() };
    let found = client.get_run(by_key("exec-1/Load/0")).await.expect("GetRun by key").into_inner();
    assert_eq!(found.run_id, first.run_id, "{found:?}");
    let unknown = client.get_run(by_key("exec-1/Load/1")).await.expect_err("no run has that key");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
}
