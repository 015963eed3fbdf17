//! `switchyard run` and `switchyard validate` as a user calls them: exit codes (DESIGN.md §3),
//! output streams (§5), the JSON result (§9), cancellation with Ctrl-C.

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};
use switchyard_tests::{COMMAND_DEADLINE, Workspace, eventually, process_is_gone, spawn_switchyard, switchyard};

/// How long a canceled run may take to end its processes: SIGTERM, then SIGKILL after the grace
/// period, with room for a loaded machine.
const PROCESS_END_DEADLINE: Duration = Duration::from_secs(20);

const FAILING_PACKAGE: &str = r#"
[package]
name = "failing"

[[tasks]]
name = "Break"
kind = "process"
command = ["sh", "-c", "echo 'broken on purpose' >&2; exit 1"]

[[tasks]]
name = "Never"
kind = "process"
after = ["Break"]
command = ["true"]
"#;

/// Two errors: an unknown field on line 8 and a constraint naming no task on line 14.
const INVALID_PACKAGE: &str = r#"[package]
name = "bad"

[[tasks]]
name = "A"
kind = "process"
command = ["true"]
bogus = 1

[[tasks]]
name = "B"
kind = "process"
command = ["true"]
after = ["Nope"]
"#;

/// A failure handled by a failure constraint, which still fails the package at max_errors 1.
const HANDLED_FAILURE_PACKAGE: &str = r#"[package]
name = "handled"

[[tasks]]
name = "A"
kind = "process"
command = ["false"]

[[tasks]]
name = "B"
kind = "process"
command = ["true"]
after = [{ task = "A", on = "failure" }]
"#;

const TYPED_PARAMETERS_PACKAGE: &str = r#"
[package]
name = "typed"

[parameters]
count = 3
ratio = 0.5
label = "x"
enabled = false

[[tasks]]
name = "Double"
kind = "process"
command = ["test", "{{ params.count * 2 }}", "=", "10"]
"#;

#[test]
fn hello_example_succeeds_and_its_summary_lists_every_task() {
    let out = switchyard(["run", "examples/hello.toml"]);
    out.assert_exit(0);
    assert!(out.stdout.contains(r#"package "hello" succeeded"#), "{out}");
    for task in ["Greet", "Report"] {
        let row = table_row(&out.stdout, task).unwrap_or_else(|| panic!("no summary row for {task}\n{out}"));
        assert!(row.contains("success"), "row of {task} is not a success: {row}\n{out}");
    }
    assert!(out.stderr.contains("Greet"), "progress lines go to stderr\n{out}");
}

#[test]
fn precedence_example_succeeds_because_its_failure_is_handled() {
    let out = switchyard(["run", "examples/precedence.toml"]);
    out.assert_exit(0);
    let row = |task| table_row(&out.stdout, task).unwrap_or_else(|| panic!("no summary row for {task}\n{out}"));
    assert!(row("B").contains("failure"), "{out}");
    assert!(row("D").contains("success"), "{out}");
}

#[test]
fn a_failing_task_fails_the_run_with_exit_code_1() {
    let ws = Workspace::new();
    let package = ws.write("failing.toml", FAILING_PACKAGE);
    let out = switchyard(["run".as_ref(), package.as_os_str()]);
    out.assert_exit(1);
    assert!(out.stdout.contains(r#"package "failing" failed"#), "{out}");
    assert!(table_row(&out.stdout, "Break").is_some_and(|row| row.contains("failure")), "{out}");
    assert!(table_row(&out.stdout, "Never").is_some_and(|row| row.contains("not_run")), "{out}");
}

#[test]
fn a_missing_package_file_exits_4_and_says_not_found() {
    let ws = Workspace::new();
    let missing = ws.path("no-such-package.toml");
    let out = switchyard(["run".as_ref(), missing.as_os_str()]);
    out.assert_exit(4);
    assert!(out.stderr.contains("no-such-package.toml"), "{out}");
    assert!(out.stderr.contains("not found"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn an_invalid_package_exits_5_and_names_file_line_and_column() {
    let ws = Workspace::new();
    let package = ws.write("bad.toml", INVALID_PACKAGE);
    let out = switchyard(["run".as_ref(), package.as_os_str()]);
    out.assert_exit(5);
    assert_located(&out.stderr, "bad.toml", 8, "bogus");
    assert_located(&out.stderr, "bad.toml", 14, "Nope");
    assert!(!out.stderr.contains("started"), "an invalid package must not start\n{out}");
}

#[test]
fn bad_command_lines_exit_6_and_say_what_is_wrong() {
    let cases: &[(&[&str], &str)] = &[
        (&["--bogus"], "--bogus"),
        (&["--set", "nope=1"], "nope"),
        (&["--set", "greeting"], "name=value"),
        (&["--max-concurrent", "0"], "--max-concurrent"),
        (&["--max-concurrent", "-2"], "--max-concurrent"),
        (&["--max-concurrent", "many"], "many"),
        (&["--restart", "if_exists"], "has no checkpoint file to restart from"),
        (&["--restart", "sometimes"], "sometimes"),
    ];
    for (extra, mentions) in cases {
        let mut args = vec!["run", "examples/hello.toml"];
        args.extend_from_slice(extra);
        let out = switchyard(&args);
        assert_eq!(out.code, Some(6), "switchyard {}\n{out}", args.join(" "));
        assert!(
            out.stderr.contains(mentions),
            "switchyard {}: stderr does not mention {mentions}\n{out}",
            args.join(" ")
        );
        assert!(!out.stderr.contains("package \"hello\" started"), "switchyard {}: it ran\n{out}", args.join(" "));
    }
}

#[test]
fn commands_the_design_defines_but_this_build_lacks_are_refused_as_not_supported_yet() {
    let out = switchyard(["import"]);
    assert_eq!(out.code, Some(6), "switchyard import\n{out}");
    let said = "`switchyard import` is not supported yet";
    assert!(out.stderr.contains(said), "switchyard import: stderr lacks {said:?}\n{out}");
}

#[test]
fn a_set_value_that_does_not_fit_the_parameter_type_is_a_bad_command_line() {
    let ws = Workspace::new();
    let package = ws.write("typed.toml", TYPED_PARAMETERS_PACKAGE);
    for set in ["count=five", "enabled=yes", "ratio=half"] {
        let out = switchyard(["run".as_ref(), package.as_os_str(), "--set".as_ref(), set.as_ref()]);
        assert_eq!(out.code, Some(6), "--set {set}\n{out}");
        assert!(out.stderr.contains(set), "--set {set}: stderr does not name it\n{out}");
    }
}

#[test]
fn interrupting_a_run_cancels_it_exits_3_and_ends_its_processes() {
    let ws = Workspace::new();
    // The task's shell starts a grandchild and writes both pids, atomically, then waits.
    let package = ws.write(
        "long.toml",
        r#"
[package]
name = "long"

[[tasks]]
name = "Wait"
kind = "process"
command = ["sh", "-c", "sleep 300 & echo $$ $! > pids.tmp && mv pids.tmp pids; wait"]

[[tasks]]
name = "After"
kind = "process"
after = ["Wait"]
command = ["true"]
"#,
    );
    let run = spawn_switchyard(["run".as_ref(), package.as_os_str(), "--json".as_ref()]);
    let pids: Vec<u32> = eventually(COMMAND_DEADLINE, "the task to write its pids", || {
        let text = std::fs::read_to_string(ws.path("pids")).ok()?;
        let pids: Vec<u32> = text.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        (pids.len() == 2).then_some(pids)
    });
    for pid in &pids {
        assert!(!process_is_gone(*pid), "process {pid} of the task ended before the cancel");
    }

    run.interrupt();
    let out = run.wait(COMMAND_DEADLINE);

    out.assert_exit(3);
    assert!(out.stderr.contains("canceling"), "{out}");
    let report = single_json_object(&out.stdout);
    assert_eq!(report["status"], "canceled", "{out}");
    assert_eq!(task(&report, "Wait")["result"], "canceled", "{out}");
    assert_eq!(task(&report, "After")["result"], "not_run", "{out}");
    eventually(PROCESS_END_DEADLINE, "the task's shell and its grandchild to end", || {
        pids.iter().all(|pid| process_is_gone(*pid)).then_some(())
    });
}

#[test]
fn json_output_is_one_object_on_stdout_with_the_report_fields() {
    let out = switchyard(["run", "examples/parent.toml", "--json", "--set", "run_date=2027-01-31"]);
    out.assert_exit(0);
    let report = single_json_object(&out.stdout);

    assert!(report["execution_id"].as_str().is_some_and(|id| !id.is_empty()), "{report:#}");
    assert_eq!(report["package"], "parent");
    assert_eq!(report["status"], "succeeded");
    let started = rfc3339(&report["started_at"]);
    let ended = rfc3339(&report["ended_at"]);
    assert!(started <= ended, "{report:#}");
    assert!(report["duration_ms"].is_u64(), "{report:#}");
    assert_eq!(report["parameters"], json!({"run_date": "2027-01-31", "regions": ["emea", "amer", "apac"]}));

    let tasks = report["tasks"].as_array().expect("tasks is a list");
    let paths: Vec<&str> = tasks.iter().filter_map(|t| t["path"].as_str()).collect();
    assert_eq!(
        paths,
        ["Extract", "Per region", "Per region[0]/Load", "Per region[1]/Load", "Per region[2]/Load", "Summary"],
        "{report:#}"
    );
    for t in tasks {
        let object = t.as_object().expect("a task is an object");
        for field in ["path", "kind", "result", "started_at", "duration_ms", "agent", "message"] {
            assert!(object.contains_key(field), "task without {field}: {t}");
        }
        assert_eq!(t["result"], "success", "{t}");
        rfc3339(&t["started_at"]);
        assert!(t["duration_ms"].is_u64(), "{t}");
        assert!(t["agent"].is_null(), "in-process tasks run on no agent: {t}");
    }
    assert_eq!(task(&report, "Per region[1]/Load")["kind"], "package");
    assert_eq!(task(&report, "Per region")["kind"], "foreach");
    assert_eq!(task(&report, "Summary")["kind"], "process");

    let children = report["children"].as_array().expect("children is a list");
    let child_tasks: Vec<&str> = children.iter().filter_map(|c| c["task"].as_str()).collect();
    assert_eq!(child_tasks, ["Extract", "Per region[0]/Load", "Per region[1]/Load", "Per region[2]/Load"]);
    for c in children {
        let object = c.as_object().expect("a child is an object");
        for field in ["task", "agent", "job", "run_id", "package", "status", "duration_ms"] {
            assert!(object.contains_key(field), "child without {field}: {c}");
        }
        assert_eq!(c["status"], "succeeded", "{c}");
    }
    assert_eq!(children[0]["package"], "children/extract.toml");
    assert_eq!(children[2]["package"], "children/load_region.toml");

    assert!(out.stderr.contains("started   Per region[1]/Load"), "progress lines go to stderr\n{out}");
    assert!(!out.stdout.contains("started   "), "progress lines must not reach stdout\n{out}");
}

#[test]
fn json_reports_a_failed_run_and_lists_the_tasks_that_never_ran() {
    let ws = Workspace::new();
    let package = ws.write("failing.toml", FAILING_PACKAGE);
    let out = switchyard(["run".as_ref(), package.as_os_str(), "--json".as_ref()]);
    out.assert_exit(1);
    let report = single_json_object(&out.stdout);
    assert_eq!(report["status"], "failed");
    assert_eq!(task(&report, "Break")["result"], "failure");
    assert_eq!(task(&report, "Never")["result"], "not_run");
    assert!(task(&report, "Never")["started_at"].is_null(), "{report:#}");
}

#[test]
fn set_values_take_the_type_of_the_parameter_default() {
    let ws = Workspace::new();
    let package = ws.write("typed.toml", TYPED_PARAMETERS_PACKAGE);
    let out = switchyard([
        "run".as_ref(),
        package.as_os_str(),
        "--json".as_ref(),
        "--set".as_ref(),
        "count=5".as_ref(),
        "--set".as_ref(),
        "ratio=0.25".as_ref(),
        "--set".as_ref(),
        "label=7".as_ref(),
        "--set".as_ref(),
        "enabled=true".as_ref(),
    ]);
    // The task checks `count * 2 == 10`, which only holds for the integer 5.
    out.assert_exit(0);
    let report = single_json_object(&out.stdout);
    assert_eq!(report["parameters"], json!({"count": 5, "ratio": 0.25, "label": "7", "enabled": true}));
}

#[test]
fn validate_accepts_the_examples() {
    for example in ["examples/hello.toml", "examples/parent.toml", "examples/precedence.toml"] {
        let out = switchyard(["validate", example]);
        assert_eq!(out.code, Some(0), "validate {example}\n{out}");
        assert!(out.stdout.contains("valid"), "validate {example}\n{out}");
        assert!(!out.stdout.contains("warning:"), "validate {example}\n{out}");
    }
}

#[test]
fn validate_warns_when_a_handled_failure_still_fails_the_package() {
    let ws = Workspace::new();
    let package = ws.write("handled.toml", HANDLED_FAILURE_PACKAGE);
    let out = switchyard(["validate".as_ref(), package.as_os_str()]);
    out.assert_exit(0);
    assert_located(&out.stdout, "handled.toml", 13, "warning: ");
    assert!(out.stdout.contains("max_errors"), "{out}");
}

#[test]
fn validate_prints_every_error_with_its_location_and_exits_5() {
    let ws = Workspace::new();
    let package = ws.write("bad.toml", INVALID_PACKAGE);
    let out = switchyard(["validate".as_ref(), package.as_os_str()]);
    out.assert_exit(5);
    assert_located(&out.stdout, "bad.toml", 8, "bogus");
    assert_located(&out.stdout, "bad.toml", 14, "Nope");
    assert!(out.stdout.contains("2 error(s)"), "{out}");
}

#[test]
fn validate_exits_4_for_a_missing_file() {
    let ws = Workspace::new();
    let missing = ws.path("missing.toml");
    let out = switchyard(["validate".as_ref(), missing.as_os_str()]);
    out.assert_exit(4);
    assert!(out.stderr.contains("not found"), "{out}");
}

/// The summary row of `task`: the line whose first column is exactly its name.
fn table_row<'a>(summary: &'a str, task: &str) -> Option<&'a str> {
    summary.lines().find(|line| line.split("  ").next().map(str::trim_end) == Some(task))
}

/// Asserts that a line of `text` starts with `FILE:LINE:COLUMN:` (the file named by its last
/// component, a positive column) and mentions `mentions`.
#[track_caller]
fn assert_located(text: &str, file: &str, line: u32, mentions: &str) {
    let prefix = format!("{file}:{line}:");
    let found = text.lines().any(|l| {
        let Some(at) = l.find(&prefix) else { return false };
        let rest = &l[at + prefix.len()..];
        let column: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let column_ok = column.parse::<u32>().is_ok_and(|c| c > 0) && rest[column.len()..].starts_with(':');
        let file_ok = at == 0 || l[..at].ends_with('/');
        column_ok && file_ok && l.contains(mentions)
    });
    assert!(found, "no line `{prefix}COLUMN: ...{mentions}...` in:\n{text}");
}

/// Parses `stdout` as exactly one JSON object, with nothing else but whitespace around it.
#[track_caller]
pub(crate) fn single_json_object(stdout: &str) -> Value {
    let values: Vec<Value> = serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("stdout is not JSON alone ({e}):\n{stdout}"));
    match <[Value; 1]>::try_from(values) {
        Ok([value]) if value.is_object() => value,
        Ok([value]) => panic!("stdout holds JSON that is not an object: {value}"),
        Err(values) => panic!("stdout holds {} JSON values instead of one:\n{stdout}", values.len()),
    }
}

/// The task record of the report with this path.
#[track_caller]
pub(crate) fn task<'a>(report: &'a Value, path: &str) -> &'a Value {
    report["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["path"] == path))
        .unwrap_or_else(|| panic!("no task {path} in the report:\n{report:#}"))
}

/// Parses an RFC 3339 timestamp, failing the test when it is not one.
#[track_caller]
pub(crate) fn rfc3339(value: &Value) -> DateTime<FixedOffset> {
    let text = value.as_str().unwrap_or_else(|| panic!("a timestamp must be a string, not {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?} is not RFC 3339: {e}"))
}
