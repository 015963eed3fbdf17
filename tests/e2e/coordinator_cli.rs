//! The coordinator commands of DESIGN.md §5 end to end: `deploy` pushes a job and its packages
//! to a pool through a real coordinator, and `demo` runs everything in one process as designed.

use std::time::Duration;

use switchyard_proto::{DeployJobRequest, ListJobsRequest, PackageFile};
use switchyard_tests::{CoordinatorProcess, Workspace, spawn_switchyard, switchyard_async};

use crate::coordinator::{AGENTS, Cluster, only_child, text};
use crate::run_cli::{single_json_object, task};

/// How long the whole demo may take.
const DEMO_DEADLINE: Duration = Duration::from_secs(60);

const GREET_JOB: &str = r#"name = "greet"

[[steps]]
name = "greet"
package = "greet.toml"
"#;

/// The job's package: it checks the parameter the parent passes.
const GREET_PACKAGE: &str = r#"[package]
name = "greet"

[parameters]
greeting = "hello"

[[tasks]]
name = "Check greeting"
kind = "process"
command = ["test", "{{ params.greeting }}", "=", "hi from the parent"]
"#;

const GREET_PARENT: &str = r#"[package]
name = "greet-parent"

[[tasks]]
name = "Greet"
kind = "agent_job"
pool = "etl"
job = "greet"
params = { greeting = "hi from the parent" }
wait = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn deploy_pushes_a_job_that_then_runs() {
    let cluster = Cluster::setup(Workspace::new()).start().await;
    let job_file = cluster.package("release/jobs/greet.toml", GREET_JOB);
    cluster.package("release/packages/greet.toml", GREET_PACKAGE);
    let job = job_file.to_string_lossy().into_owned();

    let deployed =
        switchyard_async(["deploy", "--pool", "etl", job.as_str(), "--coordinator", &cluster.address()]).await;

    deployed.assert_exit(0);
    for name in AGENTS {
        let ok = format!("{name}: ok");
        assert!(deployed.stdout.lines().any(|l| l.starts_with(&ok)), "no `{ok}` line\n{deployed}");
        let jobs = cluster.agent_client(name).await.list_jobs(ListJobsRequest {}).await.expect("ListJobs");
        let jobs = jobs.into_inner().jobs;
        assert!(jobs.iter().any(|j| j.name == "greet"), "{name} lacks the deployed job: {jobs:?}");
    }
    let package = cluster.package("parent.toml", GREET_PARENT);
    let ran = cluster.run_expecting(&package, 0).await;
    assert_eq!(ran["status"], "succeeded", "{ran:#}");
    assert_eq!(task(&ran, "Greet")["result"], "success", "{ran:#}");
    let child = only_child(&ran, "Greet");
    assert_eq!((child["job"].as_str(), child["status"].as_str()), (Some("greet"), Some("succeeded")), "{ran:#}");
    assert!(AGENTS.contains(&text(&child["agent"])), "{ran:#}");
    // DESIGN.md §7 and §9: a child row names the child package the job ran.
    assert_eq!(child["package"], "greet.toml", "the child row names the package the job ran: {ran:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_runs_as_designed() {
    let ws = Workspace::new();
    let kept = ws.path("demo");
    let dir = kept.to_string_lossy().into_owned();
    let demo =
        tokio::task::spawn_blocking(move || spawn_switchyard(["demo", "--data-dir", dir.as_str()]).wait(DEMO_DEADLINE))
            .await;
    let out = demo.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));

    out.assert_exit(0);
    let (_, children) = out.stdout.split_once("Child Packages").unwrap_or_else(|| panic!("no Child Packages\n{out}"));
    assert!(out.stdout.contains("Execution Overview"), "{out}");
    let failed = children.lines().find(|l| l.split_whitespace().any(|w| w == "failed"));
    let failed = failed.unwrap_or_else(|| panic!("no failed child in the Child Packages section\n{out}"));
    assert!(failed.contains("refresh_cache"), "the fire-and-forget child is the one that failed: {failed}\n{out}");
    assert!(out.stderr.contains("ran as designed"), "{out}");

    // Issue 14 item 7: the demo's execution can be looked at afterwards. Its data dir is kept
    // with the report, and the coordinator's store serves it again.
    let report = std::fs::read_to_string(kept.join("report.json")).expect("the demo keeps report.json");
    let report: serde_json::Value = serde_json::from_str(&report).expect("report.json is JSON");
    let id = report["execution_id"].as_str().expect("an execution id").to_string();
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert!(kept.join("report.html").is_file(), "the demo keeps report.html");
    assert!(out.stderr.contains(&id) && out.stderr.contains(&*kept.to_string_lossy()), "it says where: {out}");
    copy_dir(&kept.join("coordinator"), &ws.path("coordinator/data"));
    let coordinator = CoordinatorProcess::setup(&ws).start().await;
    let shown =
        switchyard_async(["report", id.as_str(), "--json", "--coordinator", &coordinator.address().to_string()]).await;
    shown.assert_exit(0);
    assert_eq!(single_json_object(&shown.stdout)["execution_id"], id.as_str(), "{shown}");
}

/// dtexec-style local run whose agent_job tasks reach the agents a coordinator.toml lists.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_run_with_config_reaches_the_listed_agents() {
    let ws = Workspace::new();
    let job =
        "name = \"greet\"\n\n[[steps]]\nname = \"greet\"\ncommand = [\"sh\", \"-c\", \"echo hello from the agent\"]\n";
    let agent = switchyard_tests::AgentProcess::setup_named(&ws, "server-a")
        .setting("labels", "[\"etl\"]")
        .job("greet.toml", job)
        .start()
        .await;
    let config = ws.write(
        "local/coordinator.toml",
        &format!(
            "data_dir = \"data\"\nheartbeat_interval = \"200ms\"\n\n[[agents]]\nname = \"server-a\"\naddress = \"{}\"\n",
            agent.address()
        ),
    );
    let package = ws.write(
        "local/p.toml",
        "[package]\nname = \"local\"\n\n[[tasks]]\nname = \"Greet\"\nkind = \"agent_job\"\npool = \"etl\"\njob = \"greet\"\nwait = true\n",
    );
    let (package, config) = (package.to_string_lossy().into_owned(), config.to_string_lossy().into_owned());
    let out = switchyard_async(["run", package.as_str(), "--config", config.as_str(), "--json"]).await;
    out.assert_exit(0);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let greet = task(&report, "Greet");
    assert_eq!(greet["result"], "success", "{report:#}");
    assert_eq!(greet["agent"], "server-a", "{report:#}");
    let child = only_child(&report, "Greet");
    assert_eq!(text(&child["status"]), "succeeded", "{report:#}");

    // Without --config the same package fails its agent_job task, saying how to reach agents.
    let out = switchyard_async(["run", package.as_str(), "--json"]).await;
    out.assert_exit(1);
    assert!(out.stdout.contains("--config coordinator.toml"), "{out}");
}

/// Issue 12: DeployJob pushed the packages before the agents refused the job, so an invalid
/// request replaced packages. It is now checked whole by the coordinator first.
#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_deploy_is_refused_whole_and_replaces_nothing_on_any_agent() {
    let cluster = Cluster::setup(Workspace::new()).start().await;
    let mut client = cluster.coordinator.client().await;
    let package = PackageFile { path: "greet.toml".into(), content: GREET_PACKAGE.into() };
    let job = GREET_JOB.replace("[[steps]]", "timeout = 5\n[[steps]]");
    let request = DeployJobRequest { pool: "etl".into(), job, packages: vec![package], ..Default::default() };
    let status = client.deploy_job(request).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("job:3:11: timeout"), "the refusal names the line and field: {status:?}");
    for name in AGENTS {
        let pushed = cluster.agent(name).data_dir().join("packages").join("greet.toml");
        assert!(!pushed.exists(), "{name} received {} from a refused deploy", pushed.display());
    }
}

/// Copies a folder's files and subfolders (the demo's kept store, to serve it again).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot read {}: {e}", from.display())) {
        let entry = entry.expect("a folder entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target)
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", entry.path().display()));
        }
    }
}
