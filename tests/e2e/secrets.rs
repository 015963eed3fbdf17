//! Secret parameters (DESIGN.md §11) end to end: a value from `SWITCHYARD_PARAM_TOKEN` reaches
//! the tasks (a local process, and a job's package on an agent through a real coordinator),
//! while no output, report or file under the coordinator's and agents' folders shows it.

use std::path::Path;

use switchyard_proto::WatchExecutionRequest;
use switchyard_tests::{COMMAND_DEADLINE, CommandOutput, RunningProcess, Workspace, switchyard_command, within};

use crate::coordinator::{AGENTS, Cluster, only_child};
use crate::run_cli::task;

const SECRET: &str = "tok-Zq81xV-s3cr3t";

/// The secret reversed: what the packages compare with, so no file holds the secret itself.
fn reversed() -> String {
    SECRET.chars().rev().collect()
}

/// A process command that fails unless its first argument is the secret, and prints it (so
/// that captured output would show it unmasked).
fn check_command(argument: &str) -> String {
    format!(
        r#"command = ["sh", "-c", "test \"$(printf %s \"$0\" | rev)\" = \"{}\" || exit 7; echo \"got $0\"; echo \"err $0\" >&2", "{argument}"]"#,
        reversed()
    )
}

fn local_package() -> String {
    format!(
        "[package]\nname = \"secret-local\"\n[parameters.token]\nsecret = true\n\n[[tasks]]\nname = \"Use\"\nkind = \"process\"\n{}\n",
        check_command("{{ params.token }}")
    )
}

fn parent_package() -> String {
    format!(
        r#"[package]
name = "secret-parent"
[parameters.token]
secret = true

[[tasks]]
name = "Use"
kind = "process"
{}

[[tasks]]
name = "Remote"
kind = "agent_job"
pool = "etl"
job = "check"
params = {{ token = "{{{{ params.token }}}}" }}
wait = true
after = ["Use"]
"#,
        check_command("{{ params.token }}")
    )
}

/// The agents' package: its parameter is not declared secret; the coordinator says it is.
fn agent_package() -> String {
    format!(
        "[package]\nname = \"check\"\n[parameters]\ntoken = \"\"\n\n[[tasks]]\nname = \"Check\"\nkind = \"process\"\n{}\n",
        check_command("{{ params.token }}")
    )
}

const CHECK_JOB: &str = "name = \"check\"\n\n[[steps]]\nname = \"check\"\npackage = \"check.toml\"\n";

/// `switchyard ARGS` with `SWITCHYARD_PARAM_TOKEN` set (or not), off the async threads.
async fn switchyard_with_secret(args: Vec<String>, secret: Option<&'static str>) -> CommandOutput {
    tokio::task::spawn_blocking(move || {
        let mut command = switchyard_command(&args);
        command.env_remove("SWITCHYARD_PARAM_TOKEN");
        if let Some(secret) = secret {
            command.env("SWITCHYARD_PARAM_TOKEN", secret);
        }
        RunningProcess::spawn(&mut command).wait(COMMAND_DEADLINE)
    })
    .await
    .expect("the command ran")
}

fn assert_not_shown(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what} shows the secret:\n{text}");
}

/// Every file under `dir` (SQLite databases and their WAL included), read as bytes.
fn assert_no_file_holds_the_secret(dir: &Path) -> usize {
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            checked += assert_no_file_holds_the_secret(&path);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let found = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
            assert!(!found, "{} holds the secret in clear", path.display());
            checked += 1;
        }
    }
    checked
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_run_takes_the_secret_from_the_environment_and_never_prints_it() {
    let ws = Workspace::new();
    let package = ws.write("secret.toml", &local_package()).to_string_lossy().into_owned();

    let missing = switchyard_with_secret(vec!["run".into(), package.clone()], None).await;
    missing.assert_exit(6);
    assert!(missing.stderr.contains("`token`") && missing.stderr.contains("SWITCHYARD_PARAM_TOKEN"), "{missing}");

    let ran = switchyard_with_secret(vec!["run".into(), package.clone(), "--json".into()], Some(SECRET)).await;
    ran.assert_exit(0);
    assert_not_shown("stdout", &ran.stdout);
    assert_not_shown("stderr", &ran.stderr);
    assert!(ran.stdout.contains(r#""token":"***""#) || ran.stdout.contains(r#""token": "***""#), "{ran}");

    // A wrong value reaches the task too, which then fails: the value really is passed.
    let wrong =
        switchyard_with_secret(vec!["run".into(), package, "--set".into(), "token=nope".into()], Some(SECRET)).await;
    wrong.assert_exit(1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_on_a_coordinator_stores_and_shows_the_secret_nowhere() {
    let ws = Workspace::new();
    for name in AGENTS {
        // Each agent's folder is named after it; its packages_dir is `packages` there.
        ws.write(format!("{name}/packages/check.toml"), &agent_package());
    }
    let cluster = Cluster::setup(ws).job("check.toml", CHECK_JOB).start().await;
    let package = cluster.package("parent.toml", &parent_package()).to_string_lossy().into_owned();
    let args = |extra: &[&str]| {
        let mut args: Vec<String> = vec!["run".into(), package.clone(), "--coordinator".into(), cluster.address()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };

    let ran = switchyard_with_secret(args(&["--json"]), Some(SECRET)).await;
    ran.assert_exit(0);
    assert_not_shown("stdout", &ran.stdout);
    assert_not_shown("stderr", &ran.stderr);
    let report: serde_json::Value = serde_json::from_str(ran.stdout.trim()).unwrap_or_else(|e| panic!("{e}\n{ran}"));
    assert_eq!(report["status"], "succeeded", "{report:#}");
    assert_eq!(report["parameters"]["token"], "***", "{report:#}");
    assert_eq!(task(&report, "Remote")["result"], "success", "the agent's package got the value: {report:#}");
    assert_eq!(only_child(&report, "Remote")["status"], "succeeded", "{report:#}");

    let id = report["execution_id"].as_str().expect("an execution id").to_string();
    for format in [&["--json"][..], &[][..]] {
        let mut args = vec!["report".to_string(), id.clone(), "--coordinator".into(), cluster.address()];
        args.extend(format.iter().map(|s| s.to_string()));
        let shown = switchyard_with_secret(args, None).await;
        shown.assert_exit(0);
        assert_not_shown("the report", &shown.stdout);
    }
    // Nothing is left to write: the agent commits a run's history rows and captured output with
    // its FINISHED event, and the report above already shows the child's outcome, stored.
    let mut checked = assert_no_file_holds_the_secret(cluster.coordinator.folder());
    for name in AGENTS {
        checked += assert_no_file_holds_the_secret(cluster.agent(name).folder());
    }
    assert!(checked > 6, "the coordinator's and agents' folders hold files ({checked})");
    for (what, log) in std::iter::once(("coordinator", cluster.coordinator.stderr_so_far()))
        .chain(AGENTS.iter().map(|name| (*name, cluster.agent(name).stderr_so_far())))
    {
        assert_not_shown(what, &log);
    }
}

/// The secret lives only in the coordinator's memory: after a restart, its execution cannot
/// resume, and says why.
#[tokio::test(flavor = "multi_thread")]
async fn an_execution_with_a_secret_does_not_resume_after_a_coordinator_restart() {
    let mut cluster = Cluster::setup(Workspace::new()).start().await;
    let text = "[package]\nname = \"secret-held\"\n[parameters.token]\nsecret = true\n\n[[tasks]]\nname = \"Hold\"\nkind = \"process\"\ncommand = [\"sh\", \"-c\", \"sleep 30\", \"{{ params.token }}\"]\n";
    let package = cluster.package("held.toml", text).to_string_lossy().into_owned();
    let args = vec!["run".into(), package, "--coordinator".into(), cluster.address(), "--detach".into()];
    let detached = switchyard_with_secret(args, Some(SECRET)).await;
    detached.assert_exit(0);
    let execution_id = detached.stdout.trim().to_string();
    wait_for_event(&cluster, &execution_id, "task_started").await;

    cluster.kill9_and_restart_coordinator().await;
    let execution = cluster.wait_for_end(&execution_id).await;
    assert_eq!(execution.status, "ended_unexpectedly", "{execution:?}");
    let said = wait_for_event(&cluster, &execution_id, "not_resumed").await;
    assert!(said.contains("secret parameters (token)") && said.contains("run it again"), "{said}");
    assert_no_file_holds_the_secret(cluster.coordinator.folder());
}

/// Waits for the execution's first event of `kind`; returns its message.
async fn wait_for_event(cluster: &Cluster, execution_id: &str, kind: &str) -> String {
    let request = WatchExecutionRequest { execution_id: execution_id.to_string(), after_sequence: 0 };
    let mut events = cluster.client.clone().watch_execution(request).await.expect("WatchExecution").into_inner();
    within(crate::agent::WAIT, &format!("a {kind} event"), async {
        loop {
            match events.message().await.expect("the event stream") {
                Some(event) if event.kind == kind => break event.message,
                Some(_) => {}
                None => panic!("no {kind} event"),
            }
        }
    })
    .await
}
