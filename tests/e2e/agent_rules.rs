//! SQL Server Agent rules an audit of the tests found unproven (issue 13 item 7), each against a
//! real agent: the default step actions (on_success `next`, on_failure `quit_failure`, as SSMS
//! sets them; DESIGN.md §3) and sp_help_job's activity and last outcome (executing with runs
//! waiting, between_retries, idle; ssis-semantics.md §2.4); and a package step's checkpoint.

use switchyard_proto::{
    HistoryStatus, JobActivity, JobOutcome, JobSummary, ListJobsRequest, RunStatus, StopJobRequest,
};
use switchyard_tests::{AgentProcess, Workspace, eventually_async};
use tonic::transport::Channel;

use crate::agent::{
    WAIT, gated_job, history, open_gate, quick_job, row_status, run_status, start, wait_for_end, wait_for_status,
};
use switchyard_proto::agent_client::AgentClient;

/// Two steps without actions: step 1 succeeds and the default on_success `next` runs step 2.
const GOES_ON: &str = r#"name = "goes_on"

[[steps]]
name = "first"
command = ["true"]

[[steps]]
name = "second"
command = ["true"]
"#;

/// Step 1 fails and the default on_failure `quit_failure` ends the job: step 2 never runs.
fn stops(marker: &std::path::Path) -> String {
    format!(
        r#"name = "stops"

[[steps]]
name = "first"
command = ["false"]

[[steps]]
name = "second"
command = ["touch", "{}"]
"#,
        marker.display()
    )
}

/// Rule: step actions default as SSMS sets them, on_success `next` (the last step:
/// `quit_success`) and on_failure `quit_failure` (sp_add_jobstep; DESIGN.md §3).
#[tokio::test(flavor = "multi_thread")]
async fn default_step_actions_go_on_after_a_success_and_quit_with_failure_after_a_failure() {
    let ws = Workspace::new();
    let marker = ws.path("second-step-ran");
    let agent = AgentProcess::setup(&ws).job("goes_on.toml", GOES_ON).job("stops.toml", &stops(&marker)).start().await;
    let mut client = agent.client().await;

    let goes_on = start(&mut client, "goes_on", "tester").await;
    let ended = wait_for_end(&client, &goes_on.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Succeeded, "{ended:?}");
    let rows = history(&mut client, "goes_on").await;
    let shape: Vec<(u32, HistoryStatus)> = rows.iter().map(|r| (r.step_id, row_status(r))).collect();
    assert_eq!(
        shape,
        [(0, HistoryStatus::Succeeded), (2, HistoryStatus::Succeeded), (1, HistoryStatus::Succeeded)],
        "step 1's default `next` ran step 2, whose default (the last step) quits with success: {rows:#?}"
    );
    assert!(rows[0].message.contains("The last step to run was step 2 (second)."), "{:?}", rows[0]);

    let stopped = start(&mut client, "stops", "tester").await;
    let ended = wait_for_end(&client, &stopped.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Failed, "{ended:?}");
    let rows = history(&mut client, "stops").await;
    let shape: Vec<(u32, HistoryStatus)> = rows.iter().map(|r| (r.step_id, row_status(r))).collect();
    assert_eq!(
        shape,
        [(0, HistoryStatus::Failed), (1, HistoryStatus::Failed)],
        "step 1's default `quit_failure` ended the job: {rows:#?}"
    );
    assert!(rows[0].message.contains("The last step to run was step 1 (first)."), "{:?}", rows[0]);
    assert!(!marker.exists(), "step 2 must not run after the default quit_failure");
}

/// A step that fails until `gate` exists, retried after an hour: once it has failed, its run
/// waits between retries until it is stopped.
fn retried_hourly(gate: &std::path::Path) -> String {
    format!(
        r#"name = "retried"

[[steps]]
name = "until the gate"
command = ["test", "-f", "{}"]
retry_attempts = 3
retry_interval = "1h"
"#,
        gate.display()
    )
}

async fn job(client: &mut AgentClient<Channel>, name: &str) -> JobSummary {
    let jobs = client.list_jobs(ListJobsRequest {}).await.expect("ListJobs").into_inner().jobs;
    jobs.into_iter().find(|j| j.name == name).unwrap_or_else(|| panic!("job {name} is not listed"))
}

fn activity(job: &JobSummary) -> JobActivity {
    JobActivity::try_from(job.activity).unwrap_or(JobActivity::Unspecified)
}

fn outcome(job: &JobSummary) -> JobOutcome {
    JobOutcome::try_from(job.last_outcome).unwrap_or(JobOutcome::Unknown)
}

/// Rule: ListJobs reports each job's activity and last outcome as sp_help_job does
/// (current_execution_status 1 executing, 2 waiting for thread, 3 between retries, 4 idle;
/// last_run_outcome 0 failed, 1 succeeded, 3 canceled, 5 unknown).
#[tokio::test(flavor = "multi_thread")]
async fn list_jobs_reports_activity_between_retries_idle_and_the_last_outcome_like_sp_help_job() {
    let ws = Workspace::new();
    let gate = ws.path("GO");
    let agent = AgentProcess::setup(&ws)
        .job("long.toml", &gated_job("long", &gate, "concurrency = \"queue\""))
        .job("short.toml", &quick_job("short", ""))
        .job("fails.toml", "name = \"fails\"\n\n[[steps]]\nname = \"no\"\ncommand = [\"false\"]\n")
        .job("retried.toml", &retried_hourly(&ws.path("never")))
        .start()
        .await;
    let mut client = agent.client().await;
    for name in ["long", "short", "fails", "retried"] {
        let never_ran = job(&mut client, name).await;
        assert_eq!((activity(&never_ran), outcome(&never_ran)), (JobActivity::Idle, JobOutcome::Unknown), "{name}");
    }

    // A second start of a `queue` job waits behind the running one: the job is executing with
    // one run waiting ("waiting" alone, a run that has its turn but no slot, lasts only the
    // instant between one run's end and the next one's start on this agent: not asserted).
    let long = start(&mut client, "long", "tester").await;
    wait_for_status(&client, &long.run_id, RunStatus::Running).await;
    let queued = start(&mut client, "long", "tester").await;
    assert_eq!(queued.status, RunStatus::Queued as i32, "{queued:?}");
    let executing = job(&mut client, "long").await;
    assert_eq!((activity(&executing), executing.running, executing.queued), (JobActivity::Executing, 1, 1));

    open_gate(&gate);
    wait_for_end(&client, &long.run_id).await;
    wait_for_end(&client, &queued.run_id).await;
    let short = start(&mut client, "short", "tester").await;
    wait_for_end(&client, &short.run_id).await;
    for (name, run_id) in [("long", &queued.run_id), ("short", &short.run_id)] {
        let idle = job(&mut client, name).await;
        assert_eq!((activity(&idle), outcome(&idle)), (JobActivity::Idle, JobOutcome::Succeeded), "{idle:?}");
        assert_eq!(&idle.last_run_id, run_id, "the last run is the latest: {idle:?}");
        assert!(idle.last_run_ended_at.is_some(), "{idle:?}");
    }

    let fails = start(&mut client, "fails", "tester").await;
    wait_for_end(&client, &fails.run_id).await;
    let failed = job(&mut client, "fails").await;
    assert_eq!((activity(&failed), outcome(&failed)), (JobActivity::Idle, JobOutcome::Failed), "{failed:?}");

    let retried = start(&mut client, "retried", "tester").await;
    wait_for_status(&client, &retried.run_id, RunStatus::BetweenRetries).await;
    let between = eventually_async(WAIT, "ListJobs to show the run between retries", || {
        let mut client = client.clone();
        async move {
            let listed = job(&mut client, "retried").await;
            (activity(&listed) == JobActivity::BetweenRetries).then_some(listed)
        }
    })
    .await;
    assert_eq!(between.running, 1, "a run between retries still counts as running: {between:?}");
    let stop = StopJobRequest { job: "retried".to_string(), requested_by: "tester".to_string(), ..Default::default() };
    client.stop_job(stop).await.expect("StopJob");
    let ended = wait_for_end(&client, &retried.run_id).await;
    assert_eq!(run_status(&ended), RunStatus::Canceled, "{ended:?}");
    let canceled = job(&mut client, "retried").await;
    assert_eq!((activity(&canceled), outcome(&canceled)), (JobActivity::Idle, JobOutcome::Canceled), "{canceled:?}");
}

/// A package step's package with a checkpoint: Extract, then Load, which fails while the file
/// FAIL is in packages_dir.
const CHECKPOINTED: &str = r#"[package]
name = "checkpointed"
checkpoint = { file = "checkpointed.ckpt", usage = "if_exists" }

[[tasks]]
name = "Extract"
kind = "process"
command = ["sh", "-c", "echo x >> extract.txt"]

[[tasks]]
name = "Load"
kind = "process"
after = ["Extract"]
command = ["sh", "-c", "echo x >> load.txt; test ! -f FAIL"]
"#;

/// A job step runs its package as dtexec does (SQL Server Agent's SSIS step), so a package with
/// a checkpoint restarts from the failed task when the job runs again (DESIGN.md §3 Checkpoints).
#[tokio::test(flavor = "multi_thread")]
async fn a_package_step_restarts_its_package_from_the_checkpoint_a_failed_run_left() {
    let ws = Workspace::new();
    let job = "name = \"load\"\n\n[[steps]]\nname = \"package\"\npackage = \"checkpointed.toml\"\n";
    let agent = AgentProcess::setup(&ws).job("load.toml", job).package("checkpointed.toml", CHECKPOINTED).start().await;
    let packages = agent.folder().join("packages");
    let lines = |file: &str| std::fs::read_to_string(packages.join(file)).unwrap_or_default().lines().count();
    std::fs::write(packages.join("FAIL"), "").expect("write FAIL");
    let mut client = agent.client().await;

    let first = start(&mut client, "load", "tester").await;
    assert_eq!(run_status(&wait_for_end(&client, &first.run_id).await), RunStatus::Failed);
    let rows = history(&mut client, "load").await;
    let step = rows.iter().find(|r| r.step_id == 1).expect("the step's row");
    assert!(step.message.contains("Checkpoint written (1 task(s) succeeded)"), "{step:?}");
    assert!(packages.join("checkpointed.ckpt").exists());

    std::fs::remove_file(packages.join("FAIL")).expect("remove FAIL");
    let second = start(&mut client, "load", "tester").await;
    assert_eq!(run_status(&wait_for_end(&client, &second.run_id).await), RunStatus::Succeeded);
    assert_eq!((lines("extract.txt"), lines("load.txt")), (1, 2), "only the failed task ran again");
    assert!(!packages.join("checkpointed.ckpt").exists(), "deleted when the package succeeded");
}
