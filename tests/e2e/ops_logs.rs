//! Structured logs (DESIGN.md §12): with `--log-format json` every line a real coordinator and a
//! real agent write on stderr is one JSON object, and the lines about one agent job carry the
//! same `execution_id`, `task`, `agent` and `run_id` on both sides, so one search follows a run
//! across the two processes.

use serde_json::Value;
use switchyard_proto::WatchExecutionRequest;
use switchyard_tests::{AgentProcess, CoordinatorProcess, Workspace, eventually_async};

use crate::agent::{WAIT, quick_job};
use crate::coordinator::only_child;
use crate::run_cli::single_json_object;

const PARENT: &str = r#"[package]
name = "logged"

[[tasks]]
name = "Load"
kind = "agent_job"
agent = "server-a"
job = "quick"
wait = true
"#;

#[tokio::test(flavor = "multi_thread")]
async fn json_log_lines_parse_and_carry_the_ids_of_a_run_on_both_sides() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup_named(&ws, "server-a")
        .job("quick.toml", &quick_job("quick", ""))
        .arg("--log-format")
        .arg("json")
        .start()
        .await;
    let coordinator =
        CoordinatorProcess::setup(&ws).agent("server-a", &agent).arg("--log-format").arg("json").start().await;
    let package = ws.write("logged.toml", PARENT);
    let package = package.to_string_lossy().into_owned();
    let address = coordinator.address().to_string();

    let out = switchyard_tests::switchyard_async(["run", package.as_str(), "--coordinator", &address, "--json"]).await;
    out.assert_exit(0);
    let report = single_json_object(&out.stdout);
    let execution_id = report["execution_id"].as_str().expect("an execution id").to_string();
    let run_id = only_child(&report, "Load")["run_id"].as_str().expect("the child's run id").to_string();

    // WatchExecution names the agent of an agent_job's task_finished (the live progress counts
    // children by agent from it).
    let watch = WatchExecutionRequest { execution_id: execution_id.clone(), after_sequence: 0 };
    let mut events = coordinator.client().await.watch_execution(watch).await.expect("WatchExecution").into_inner();
    let mut agent_of_load = None;
    while let Some(event) = events.message().await.expect("an event") {
        if event.kind == "task_finished" && event.path == "Load" {
            agent_of_load = Some(event.agent.clone());
        }
    }
    assert_eq!(agent_of_load.as_deref(), Some("server-a"), "task_finished of Load names its agent");

    let ids = [("execution_id", execution_id.as_str()), ("task", "Load"), ("agent", "server-a"), ("run_id", &run_id)];
    let on_coordinator = eventually_async(WAIT, "the coordinator to log the child's end", || async {
        let lines = json_lines("coordinator", &coordinator.stderr_so_far());
        lines.iter().any(|l| l["message"] == "child finished" && carries(l, &ids)).then_some(lines)
    })
    .await;
    let on_agent = eventually_async(WAIT, "the agent to log the run's end", || async {
        let lines = json_lines("agent", &agent.stderr_so_far());
        lines.iter().any(|l| l["message"] == "run finished" && carries(l, &ids)).then_some(lines)
    })
    .await;
    for (side, lines, start) in
        [("coordinator", &on_coordinator, "child started"), ("agent", &on_agent, "run accepted")]
    {
        let line = lines.iter().find(|l| l["message"] == start).unwrap_or_else(|| panic!("{side}: no `{start}` line"));
        assert!(carries(line, &ids), "{side}: `{start}` lacks the ids {ids:?}: {line}");
        for line in lines {
            assert!(line["timestamp"].is_string() && line["level"].is_string(), "{side}: {line}");
        }
    }
}

/// Every line of a process's stderr as JSON, except the "listening on" line the binaries print
/// for scripts before logging starts; a line that is not JSON fails the test.
fn json_lines(side: &str, stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.contains(" listening on "))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{side}: not a JSON line ({e}): {line}")))
        .collect()
}

/// Whether the spans of a line carry each of `ids` (a field of one of its spans, or of the line).
fn carries(line: &Value, ids: &[(&str, &str)]) -> bool {
    let spans = line["spans"].as_array().cloned().unwrap_or_default();
    ids.iter().all(|(field, value)| line[field] == *value || spans.iter().any(|span| span[field] == *value))
}

const PACKAGE_STEP_JOB: &str = r#"name = "chatty"

[[steps]]
name = "run the package"
package = "chatty.toml"
"#;

const CHATTY_PACKAGE: &str = r#"[package]
name = "chatty"

[[tasks]]
name = "Extract"
kind = "process"
command = ["sh", "-c", "echo extracted 3 rows; echo slow disk >&2"]

[[tasks]]
name = "Load"
kind = "process"
command = ["sh", "-c", "echo loaded into staging"]
after = ["Extract"]
"#;

/// Issue 14 item 7: `switchyard logs RUN` of a package step printed the engine's summary of its
/// tasks, not what its processes printed.
#[tokio::test(flavor = "multi_thread")]
async fn logs_of_a_package_step_show_what_its_processes_printed() {
    let ws = Workspace::new();
    let agent = AgentProcess::setup(&ws)
        .job("chatty.toml", PACKAGE_STEP_JOB)
        .package("chatty.toml", CHATTY_PACKAGE)
        .start()
        .await;
    let address = agent.address().to_string();
    let started =
        switchyard_tests::switchyard_async(["start-job", "--agent", &address, "chatty", "--wait", "--json"]).await;
    started.assert_exit(0);
    let run_id = single_json_object(&started.stdout)["run_id"].as_str().expect("a run id").to_string();

    let logs = switchyard_tests::switchyard_async(["logs", "--agent", &address, &run_id, "--json"]).await;
    logs.assert_exit(0);
    let logs = single_json_object(&logs.stdout);
    let step = &logs["steps"][0];
    assert_eq!(step["stdout"], "[Extract]\nextracted 3 rows\n[Load]\nloaded into staging\n", "{logs:#}");
    assert_eq!(step["stderr"], "[Extract]\nslow disk\n", "{logs:#}");
}
