//! Bad configuration is refused, not half-served (issue 12): an agent whose jobs_dir holds an
//! invalid job file does not start, and its stderr names every bad file with its line, column
//! and field, so a parent never fails later with "job not defined".

use std::process::Command;
use std::time::Duration;

use switchyard_tests::{CommandOutput, RunningProcess, Workspace, agent_bin};

/// How long a refusing agent may take to exit (it reads a few files and stops).
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

const AGENT_TOML: &str = "name = \"refusing\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n\
                          jobs_dir = \"jobs\"\npackages_dir = \"packages\"\n";

const GOOD_JOB: &str = "name = \"good\"\n\n[[steps]]\nname = \"ok\"\ncommand = [\"true\"]\n";

/// Line 5, column 14: an unknown action.
const BAD_ACTION_JOB: &str =
    "name = \"bad_action\"\n\n[[steps]]\nname = \"one\"\non_success = \"jump\"\ncommand = [\"true\"]\n";

/// Line 2, column 15: a concurrency that does not exist.
const BAD_CONCURRENCY_JOB: &str =
    "name = \"bad_concurrency\"\nconcurrency = \"sometimes\"\n\n[[steps]]\nname = \"one\"\ncommand = [\"true\"]\n";

/// A job whose step runs a package that does not load (line 5 of the job names it).
const BAD_PACKAGE_JOB: &str = "name = \"bad_package\"\n\n[[steps]]\nname = \"one\"\npackage = \"broken.toml\"\n";

/// Runs `switchyard-agent --config agent.toml` in `ws` and waits for it to exit by itself.
fn run_agent_until_exit(ws: &Workspace) -> CommandOutput {
    let config = ws.write("agent.toml", AGENT_TOML);
    let mut command = Command::new(agent_bin());
    command.arg("--config").arg(&config).current_dir(ws.root()).env("RUST_BACKTRACE", "0");
    RunningProcess::spawn(&mut command).wait(EXIT_DEADLINE)
}

#[test]
fn an_agent_with_an_invalid_job_file_refuses_to_start_naming_every_bad_file_with_line_and_field() {
    let ws = Workspace::new();
    ws.write("jobs/a_good.toml", GOOD_JOB);
    ws.write("jobs/b_bad_action.toml", BAD_ACTION_JOB);
    ws.write("jobs/c_bad_concurrency.toml", BAD_CONCURRENCY_JOB);

    let output = run_agent_until_exit(&ws);

    assert_ne!(output.code, Some(0), "the agent must not start with invalid job files\n{output}");
    assert!(output.code.is_some(), "the agent must exit by itself, not be killed\n{output}");
    assert!(!output.stderr.contains("listening on"), "the agent must refuse before serving\n{output}");
    for expected in ["b_bad_action.toml:5:14: steps[0].on_success:", "c_bad_concurrency.toml:2:15: concurrency:"] {
        assert!(output.stderr.contains(expected), "stderr must name `{expected}`\n{output}");
    }
    assert!(!output.stderr.contains("a_good.toml"), "a valid file is not blamed\n{output}");
}

#[test]
fn an_agent_whose_job_runs_a_package_that_does_not_load_refuses_to_start() {
    let ws = Workspace::new();
    ws.write("jobs/bad_package.toml", BAD_PACKAGE_JOB);
    ws.write("packages/broken.toml", "[package]\nname = \"broken\"\n\n[[tasks]]\nname = \"x\"\nkind = \"nope\"\n");

    let output = run_agent_until_exit(&ws);

    assert_ne!(output.code, Some(0), "the agent must not start\n{output}");
    assert!(output.code.is_some(), "the agent must exit by itself, not be killed\n{output}");
    assert!(output.stderr.contains("bad_package.toml:5:11: steps[0].package:"), "{output}");
    assert!(output.stderr.contains("broken.toml:6"), "the package's own error is named\n{output}");
}

#[test]
fn an_agent_with_only_valid_job_files_still_starts() {
    let ws = Workspace::new();
    ws.write("jobs/good.toml", GOOD_JOB);
    let config = ws.write("agent.toml", AGENT_TOML);
    let mut command = Command::new(agent_bin());
    command.arg("--config").arg(&config).current_dir(ws.root());
    let mut process = RunningProcess::spawn(&mut command);
    switchyard_tests::eventually(EXIT_DEADLINE, "the agent listens", || {
        if let Some(status) = process.exit_status() {
            panic!("the agent exited ({status})\n{}", process.stderr_so_far());
        }
        process.stderr_so_far().contains("listening on").then_some(())
    });
    process.interrupt();
    let output = process.wait(EXIT_DEADLINE);
    assert_eq!(output.code, Some(0), "{output}");
}
