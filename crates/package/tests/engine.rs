//! Engine behaviour against SSIS semantics: precedence, results, error counting, concurrency,
//! timeouts and cancellation, on real processes.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_package::engine::{EventKind, RunOptions, run_package};
use switchyard_package::{ExecutionStatus, PackageRun, TaskResult, load_package};
use tokio_util::sync::CancellationToken;

/// Loads `text` as a package in a fresh folder and runs it.
async fn run_text(text: &str) -> PackageRun {
    run_with(text, RunOptions::default()).await
}

async fn run_with(text: &str, options: RunOptions) -> PackageRun {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("p.toml");
    std::fs::write(&path, text).expect("write package");
    let loaded = load_package(&path).unwrap_or_else(|e| panic!("package should load:\n{e}"));
    run_package(loaded.package, options).await
}

fn result_of(run: &PackageRun, path: &str) -> TaskResult {
    run.tasks
        .iter()
        .find(|t| t.path == path)
        .unwrap_or_else(|| panic!("no task {path} in {:?}", run.tasks.iter().map(|t| &t.path).collect::<Vec<_>>()))
        .result
}

fn message_of<'a>(run: &'a PackageRun, path: &str) -> &'a str {
    &run.tasks.iter().find(|t| t.path == path).expect("task exists").message
}

fn process(name: &str, ok: bool, extra: &str) -> String {
    let command = if ok { "true" } else { "false" };
    format!("[[tasks]]\nname = \"{name}\"\nkind = \"process\"\ncommand = [\"{command}\"]\n{extra}\n")
}

fn package(header_extra: &str, tasks: &[String]) -> String {
    format!("[package]\nname = \"t\"\n{header_extra}\n[parameters]\ngo = true\nstop = false\n\n{}", tasks.concat())
}

/// The precedence cases of the SSIS documentation (Precedence Constraints; Multiple
/// Precedence Constraints): A, B, C succeed or fail; D's constraints decide whether it runs.
#[tokio::test]
async fn precedence_cases_from_the_ssis_documentation() {
    // (A ok, B ok, C ok, D's after = ..., join, D runs)
    let cases: &[(bool, bool, bool, &str, &str, bool)] = &[
        // D runs only if A succeeds, B fails and C succeeds (logical AND).
        (true, false, true, r#"["A", { task = "B", on = "failure" }, "C"]"#, "all", true),
        (true, true, true, r#"["A", { task = "B", on = "failure" }, "C"]"#, "all", false),
        (false, false, true, r#"["A", { task = "B", on = "failure" }, "C"]"#, "all", false),
        // Logical OR: one satisfied constraint is enough.
        (false, true, false, r#"["A", "B", "C"]"#, "any", true),
        (false, false, false, r#"["A", "B", "C"]"#, "any", false),
        // Completion runs after success and after failure.
        (false, true, true, r#"[{ task = "A", on = "completion" }]"#, "all", true),
        (true, true, true, r#"[{ task = "A", on = "completion" }]"#, "all", true),
        // Expression only: the result does not matter.
        (false, true, true, r#"[{ task = "A", when = "params.go" }]"#, "all", true),
        (true, true, true, r#"[{ task = "A", when = "params.stop" }]"#, "all", false),
        // ExpressionAndConstraint (both given, no eval) needs both.
        (true, true, true, r#"[{ task = "A", on = "success", when = "params.go" }]"#, "all", true),
        (true, true, true, r#"[{ task = "A", on = "success", when = "params.stop" }]"#, "all", false),
        (false, true, true, r#"[{ task = "A", on = "success", when = "params.go" }]"#, "all", false),
        // ExpressionOrConstraint needs either.
        (false, true, true, r#"[{ task = "A", on = "success", when = "params.go", eval = "or" }]"#, "all", true),
        (true, true, true, r#"[{ task = "A", on = "success", when = "params.stop", eval = "or" }]"#, "all", true),
        (false, true, true, r#"[{ task = "A", on = "success", when = "params.stop", eval = "or" }]"#, "all", false),
        // Expressions see the precedence task's facts.
        (
            false,
            true,
            true,
            r#"[{ task = "A", when = "tasks['A'].exit_code == 1 && tasks['A'].result == 'failure'" }]"#,
            "all",
            true,
        ),
    ];
    for (i, &(a, b, c, after, join, runs)) in cases.iter().enumerate() {
        let d = format!(
            "[[tasks]]\nname = \"D\"\nkind = \"process\"\ncommand = [\"true\"]\nafter = {after}\njoin = \"{join}\"\n"
        );
        let text = package("max_errors = 0", &[process("A", a, ""), process("B", b, ""), process("C", c, ""), d]);
        let run = run_text(&text).await;
        let expected = if runs { TaskResult::Success } else { TaskResult::NotRun };
        assert_eq!(result_of(&run, "D"), expected, "case {i}: A={a} B={b} C={c} after={after} join={join}");
    }
}

#[tokio::test]
async fn a_handled_failure_still_fails_the_package_at_max_errors_1_but_not_at_2() {
    let tasks = [process("A", false, ""), process("Handle", true, "after = [{ task = \"A\", on = \"failure\" }]")];
    let at_one = run_text(&package("max_errors = 1", &tasks)).await;
    assert_eq!(result_of(&at_one, "Handle"), TaskResult::Success, "the failure path runs");
    assert_eq!(at_one.status, ExecutionStatus::Failed);
    let at_two = run_text(&package("max_errors = 2", &tasks)).await;
    assert_eq!(result_of(&at_two, "Handle"), TaskResult::Success);
    assert_eq!(at_two.status, ExecutionStatus::Succeeded);
}

#[tokio::test]
async fn errors_bubble_through_every_enclosing_container() {
    // The sequence tolerates 5 errors, but the package's default of 1 counts the same error.
    let text = r#"
[package]
name = "t"
[[tasks]]
name = "Stage"
kind = "sequence"
max_errors = 5
  [[tasks.tasks]]
  name = "Bad"
  kind = "process"
  command = ["false"]
[[tasks]]
name = "After stage"
kind = "process"
command = ["true"]
after = ["Stage"]
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Stage"), TaskResult::Success, "the sequence stays under its own limit");
    assert_eq!(result_of(&run, "After stage"), TaskResult::Success);
    assert_eq!(run.status, ExecutionStatus::Failed, "the package counts the bubbled error");

    let tolerant = run_text(&text.replace("name = \"t\"", "name = \"t\"\nmax_errors = 2")).await;
    assert_eq!(tolerant.status, ExecutionStatus::Succeeded);
}

#[tokio::test]
async fn a_container_reaching_its_max_errors_fails_and_its_success_dependents_do_not_run() {
    let text = r#"
[package]
name = "t"
max_errors = 0
[[tasks]]
name = "Stage"
kind = "sequence"
  [[tasks.tasks]]
  name = "Bad"
  kind = "process"
  command = ["false"]
  [[tasks.tasks]]
  name = "Cleanup"
  kind = "process"
  command = ["true"]
  after = [{ task = "Bad", on = "failure" }]
[[tasks]]
name = "Next"
kind = "process"
command = ["true"]
after = ["Stage"]
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Stage/Cleanup"), TaskResult::Success, "the failure path inside still runs");
    assert_eq!(result_of(&run, "Stage"), TaskResult::Failure);
    assert!(message_of(&run, "Stage").contains("max_errors"), "{}", message_of(&run, "Stage"));
    assert_eq!(result_of(&run, "Next"), TaskResult::NotRun);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "max_errors = 0 on the package is unlimited");
}

#[tokio::test]
async fn fail_parent_and_fail_package_on_failure_fail_their_targets() {
    let text = r#"
[package]
name = "t"
max_errors = 0
[[tasks]]
name = "Stage"
kind = "sequence"
max_errors = 0
  [[tasks.tasks]]
  name = "Bad"
  kind = "process"
  command = ["false"]
  fail_parent_on_failure = true
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Stage"), TaskResult::Failure, "fail_parent_on_failure fails the sequence");
    assert_eq!(run.status, ExecutionStatus::Succeeded, "but not the package, which allows any number of errors");

    let run = run_text(&text.replace("fail_parent_on_failure", "fail_package_on_failure")).await;
    assert_eq!(result_of(&run, "Stage"), TaskResult::Success);
    assert_eq!(run.status, ExecutionStatus::Failed, "fail_package_on_failure fails the package");
}

#[tokio::test]
async fn force_result_overrides_what_constraints_and_containers_see() {
    let tasks = [
        // max_errors = 0 on A: its own error count never reaches a limit, so the force holds.
        process("A", false, "force_result = \"success\"\nmax_errors = 0"),
        process("B", true, "after = [\"A\"]"),
        process("C", true, "force_result = \"failure\""),
        process("D", true, "after = [{ task = \"C\", on = \"failure\" }]"),
    ];
    let run = run_text(&package("max_errors = 0", &tasks)).await;
    assert_eq!(result_of(&run, "A"), TaskResult::Success);
    assert!(message_of(&run, "A").contains("forced"), "{}", message_of(&run, "A"));
    assert_eq!(result_of(&run, "B"), TaskResult::Success);
    assert_eq!(result_of(&run, "C"), TaskResult::Failure);
    assert_eq!(result_of(&run, "D"), TaskResult::Success);
}

/// SSIS rule re-checked (issue 13 item 7): a forced result does not take back the errors the
/// task raised. Sources: cnblogs.com/rav009/p/5131091.html (a parent container counts its
/// children's errors whatever their event handlers do) and developerdotstar.com/community/node/328
/// ("Attempts to force the task to have a status of Success will be ignored if
/// MaximumErrorCount is reached").
#[tokio::test]
async fn a_failure_forced_to_success_still_counts_its_error_in_every_parent_as_in_ssis() {
    // The force holds (the task's own max_errors is unlimited), and B runs on its success, but
    // the error reaches the package, whose max_errors is 1: the package fails.
    let forced =
        [process("A", false, "force_result = \"success\"\nmax_errors = 0"), process("B", true, "after = [\"A\"]")];
    let run = run_text(&package("", &forced)).await;
    assert_eq!((result_of(&run, "A"), result_of(&run, "B")), (TaskResult::Success, TaskResult::Success));
    assert_eq!(run.status, ExecutionStatus::Failed, "the forced task's error still reaches the package");
    let unlimited = run_text(&package("max_errors = 0", &forced)).await;
    assert_eq!(unlimited.status, ExecutionStatus::Succeeded, "a package that tolerates errors succeeds");

    // With the task's own max_errors at its default (1, as SSIS's task host) its one error
    // reaches it: the forced success is ignored and the task fails.
    let ignored = run_text(&package("max_errors = 0", &[process("A", false, "force_result = \"success\"")])).await;
    assert_eq!(result_of(&ignored, "A"), TaskResult::Failure);
    assert!(message_of(&ignored, "A").contains("ignored"), "{}", message_of(&ignored, "A"));

    // A container forced to success still hands its inner errors to the package.
    let container = r#"
[package]
name = "t"
[[tasks]]
name = "Stage"
kind = "sequence"
max_errors = 0
force_result = "success"
  [[tasks.tasks]]
  name = "Fails"
  kind = "process"
  command = ["false"]
[[tasks]]
name = "After"
kind = "process"
command = ["true"]
after = ["Stage"]
"#;
    let run = run_text(container).await;
    assert_eq!(result_of(&run, "Stage"), TaskResult::Success, "the forced container result holds");
    assert_eq!(result_of(&run, "After"), TaskResult::Success, "constraints see the forced result");
    assert_eq!(run.status, ExecutionStatus::Failed, "the error inside still reaches the package");
}

/// `force_result = "completion"` (DTSForcedExecResult.Completion): the task ends with
/// completion, which satisfies completion constraints only, and a container's result can be
/// forced like a task's (issue 13 item 7).
#[tokio::test]
async fn force_result_completion_satisfies_completion_constraints_only() {
    let tasks = [
        process("A", true, "force_result = \"completion\""),
        process("On success", true, "after = [\"A\"]"),
        process("On failure", true, "after = [{ task = \"A\", on = \"failure\" }]"),
        process("On completion", true, "after = [{ task = \"A\", on = \"completion\" }]"),
        "[[tasks]]\nname = \"Box\"\nkind = \"sequence\"\nforce_result = \"failure\"\ntasks = [{ name = \"Inner\", kind = \"process\", command = [\"true\"] }]\n".to_string(),
        process("After box failed", true, "after = [{ task = \"Box\", on = \"failure\" }]"),
    ];
    let run = run_text(&package("max_errors = 0", &tasks)).await;
    assert_eq!(result_of(&run, "A"), TaskResult::Completion);
    assert_eq!(result_of(&run, "On success"), TaskResult::NotRun, "completion is not success");
    assert_eq!(result_of(&run, "On failure"), TaskResult::NotRun, "completion is not failure");
    assert_eq!(result_of(&run, "On completion"), TaskResult::Success);
    assert_eq!(result_of(&run, "Box/Inner"), TaskResult::Success);
    assert_eq!(result_of(&run, "Box"), TaskResult::Failure, "a container's result is forced too");
    assert_eq!(result_of(&run, "After box failed"), TaskResult::Success);
    assert_eq!(run.status, ExecutionStatus::Succeeded, "max_errors = 0 tolerates the forced failure");
}

#[tokio::test]
async fn tasks_that_depend_only_on_a_task_that_did_not_run_do_not_run_either() {
    let tasks = [
        process("A", false, ""),
        process("B", true, "after = [\"A\"]"),
        process("C", true, "after = [\"B\"]"),
        process("E", true, ""),
        process("Either", true, "after = [\"C\", \"E\"]\njoin = \"any\""),
        process("Both", true, "after = [\"C\", \"E\"]"),
        process("Completion of C", true, "after = [{ task = \"C\", on = \"completion\" }]"),
    ];
    let run = run_text(&package("max_errors = 0", &tasks)).await;
    assert_eq!(result_of(&run, "B"), TaskResult::NotRun);
    assert_eq!(result_of(&run, "C"), TaskResult::NotRun);
    assert_eq!(result_of(&run, "Either"), TaskResult::Success, "it also depends on E, which succeeded");
    assert_eq!(result_of(&run, "Both"), TaskResult::NotRun);
    assert_eq!(result_of(&run, "Completion of C"), TaskResult::NotRun, "a task that never ran never completed");
    assert_eq!(run.status, ExecutionStatus::Succeeded, "not-run tasks raise no error");
    let not_run = run.tasks.iter().find(|t| t.path == "B").expect("B listed");
    assert!(not_run.started_at.is_none() && not_run.duration_ms.is_none());
}

#[tokio::test]
async fn a_disabled_task_counts_as_success_without_running() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = dir.path().join("ran");
    let tasks = [
        format!(
            "[[tasks]]\nname = \"A\"\nkind = \"process\"\ncommand = [\"sh\", \"-c\", \"touch {}; exit 1\"]\ndisabled = true\n",
            marker.display()
        ),
        process("B", true, "after = [\"A\"]"),
    ];
    let run = run_text(&package("", &tasks)).await;
    assert_eq!(result_of(&run, "A"), TaskResult::Success);
    assert_eq!(result_of(&run, "B"), TaskResult::Success);
    assert!(!marker.exists(), "a disabled task must not run its command");
    assert_eq!(run.status, ExecutionStatus::Succeeded);
}

/// The most tasks running at once, read from the ordered event log.
fn max_running(run: &PackageRun) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for event in &run.events {
        match event.kind {
            EventKind::TaskStarted { .. } => {
                now += 1;
                max = max.max(now);
            }
            EventKind::TaskFinished { .. } => now = now.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[tokio::test]
async fn at_most_max_concurrent_tasks_run_at_once() {
    let tasks: Vec<String> =
        (0..12).map(|i| format!("[[tasks]]\nname = \"S{i}\"\nkind = \"sleep\"\nduration = \"30ms\"\n")).collect();
    let run = run_text(&package("max_concurrent = 3", &tasks)).await;
    assert_eq!(run.status, ExecutionStatus::Succeeded);
    assert_eq!(max_running(&run), 3, "12 independent tasks fill all 3 slots and never more");
    let seqs: Vec<u64> = run.events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "the event log is numbered without gaps");

    let options = RunOptions { max_concurrent: Some(1), ..RunOptions::default() };
    let run = run_with(&package("max_concurrent = 3", &tasks), options).await;
    assert_eq!(max_running(&run), 1, "--max-concurrent overrides the package");
}

/// MaxConcurrentExecutables = -1 means logical processors + 2 (Package.MaxConcurrentExecutables;
/// dtexec /MaxConcurrent; ssis-semantics.md §6.2), asserted from the run (issue 13 item 7).
#[tokio::test]
async fn max_concurrent_minus_one_runs_logical_cpus_plus_two_tasks_at_once() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(switchyard_package::model::resolve_max_concurrent(-1), cpus + 2);
    let count = 2 * (cpus + 2) + 1;
    let tasks: Vec<String> =
        (0..count).map(|i| format!("[[tasks]]\nname = \"S{i}\"\nkind = \"sleep\"\nduration = \"100ms\"\n")).collect();
    let run = run_text(&package("max_concurrent = -1", &tasks)).await;
    assert_eq!(run.status, ExecutionStatus::Succeeded);
    assert_eq!(max_running(&run), cpus + 2, "{count} independent tasks fill CPUs + 2 slots and never more");
}

#[tokio::test]
async fn containers_do_not_hold_slots_so_nested_tasks_cannot_deadlock() {
    let text = r#"
[package]
name = "t"
max_concurrent = 1
[[tasks]]
name = "Outer"
kind = "sequence"
  [[tasks.tasks]]
  name = "Inner"
  kind = "sequence"
    [[tasks.tasks.tasks]]
    name = "Leaf"
    kind = "sleep"
    duration = "1ms"
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Outer/Inner/Leaf"), TaskResult::Success);
}

fn process_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for init to reap it no longer runs.
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < until, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn a_timeout_fails_the_task_and_ends_its_process_tree() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("pid");
    let text = format!(
        r#"
[package]
name = "t"
[[tasks]]
name = "Slow"
kind = "process"
command = ["sh", "-c", "sleep 300 & echo $! > {}; wait"]
timeout = "300ms"
[[tasks]]
name = "After"
kind = "process"
command = ["true"]
after = [{{ task = "Slow", on = "failure" }}]
"#,
        pidfile.display()
    );
    let run = run_text(&text).await;
    assert_eq!(result_of(&run, "Slow"), TaskResult::Failure);
    assert!(message_of(&run, "Slow").contains("timed out after 300ms"), "{}", message_of(&run, "Slow"));
    assert_eq!(result_of(&run, "After"), TaskResult::Success);
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid written").trim().parse().expect("a pid");
    wait_until("the grandchild is gone", Duration::from_secs(10), || process_gone(pid));
}

#[tokio::test]
async fn a_container_timeout_cancels_what_runs_inside_it() {
    let text = r#"
[package]
name = "t"
[[tasks]]
name = "Stage"
kind = "sequence"
timeout = "200ms"
  [[tasks.tasks]]
  name = "Long"
  kind = "sleep"
  duration = "300s"
  [[tasks.tasks]]
  name = "Later"
  kind = "sleep"
  duration = "1ms"
  after = ["Long"]
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Stage"), TaskResult::Failure);
    assert!(message_of(&run, "Stage").contains("timed out"));
    assert_eq!(result_of(&run, "Stage/Long"), TaskResult::Canceled);
    assert_eq!(result_of(&run, "Stage/Later"), TaskResult::NotRun);
}

#[tokio::test]
async fn cancellation_ends_the_whole_process_tree_and_marks_the_run_canceled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pidfile = dir.path().join("pid");
    let text = format!(
        r#"
[package]
name = "t"
[[tasks]]
name = "Tree"
kind = "process"
command = ["sh", "-c", "sh -c 'sleep 300' & echo $! > {}.tmp; mv {}.tmp {}; wait"]
[[tasks]]
name = "Next"
kind = "process"
command = ["true"]
after = [{{ task = "Tree", on = "completion" }}]
"#,
        pidfile.display(),
        pidfile.display(),
        pidfile.display()
    );
    let cancel = CancellationToken::new();
    let options =
        RunOptions { cancel: cancel.clone(), kill_grace: Duration::from_millis(500), ..RunOptions::default() };
    let pidfile_seen = pidfile.clone();
    let canceler = tokio::task::spawn_blocking(move || {
        wait_until("the process tree has started", Duration::from_secs(10), || pidfile_seen.exists());
        cancel.cancel();
    });
    let run = run_with(&text, options).await;
    canceler.await.expect("canceler finished");
    assert_eq!(run.status, ExecutionStatus::Canceled);
    assert_eq!(result_of(&run, "Tree"), TaskResult::Canceled);
    assert_eq!(result_of(&run, "Next"), TaskResult::NotRun, "nothing starts after a cancel");
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid").trim().parse().expect("a pid");
    wait_until("the grandchild is gone", Duration::from_secs(10), || process_gone(pid));
}

#[tokio::test]
async fn foreach_runs_each_item_with_its_loop_variable_and_lists_iterations() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    let text = format!(
        r#"
[package]
name = "t"
[[tasks]]
name = "Files"
kind = "foreach"
items = ["a", "b", "c"]
var = "name"
parallel = 2
  [[tasks.tasks]]
  name = "Write"
  kind = "process"
  command = ["sh", "-c", "echo $0 > {}/$0", "{{{{ vars.name }}}}"]
"#,
        out.display()
    );
    let run = run_text(&text).await;
    assert_eq!(run.status, ExecutionStatus::Succeeded);
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        assert_eq!(result_of(&run, &format!("Files[{i}]/Write")), TaskResult::Success);
        assert_eq!(std::fs::read_to_string(out.join(name)).expect("written").trim(), *name);
    }
    let paths: Vec<&str> = run.tasks.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(paths, ["Files", "Files[0]/Write", "Files[1]/Write", "Files[2]/Write"]);
}

#[tokio::test]
async fn foreach_over_files_enumerates_a_glob_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    for f in ["b.csv", "a.csv", "skip.txt"] {
        std::fs::write(dir.path().join(f), "x").expect("write");
    }
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        r#"
[package]
name = "t"
[[tasks]]
name = "Each"
kind = "foreach"
files = "*.csv"
var = "file"
  [[tasks.tasks]]
  name = "Check"
  kind = "process"
  command = ["test", "-f", "{{ vars.file }}"]
"#,
    )
    .expect("write");
    let run = run_package(load_package(&path).expect("loads").package, RunOptions::default()).await;
    assert_eq!(run.status, ExecutionStatus::Succeeded);
    let checks = run.tasks.iter().filter(|t| t.path.ends_with("/Check")).count();
    assert_eq!(checks, 2, "two csv files");
}

#[tokio::test]
async fn a_loop_starts_no_further_iteration_once_it_reaches_max_errors() {
    let text = r#"
[package]
name = "t"
max_errors = 0
[[tasks]]
name = "Loop"
kind = "foreach"
items = [1, 2, 3, 4, 5]
max_errors = 2
  [[tasks.tasks]]
  name = "Fail"
  kind = "process"
  command = ["false"]
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Loop"), TaskResult::Failure);
    let iterations = run.tasks.iter().filter(|t| t.path.ends_with("/Fail")).count();
    assert_eq!(iterations, 2);
}

#[tokio::test]
async fn for_loop_runs_init_condition_and_assign_like_ssis() {
    let text = r#"
[package]
name = "t"
[[tasks]]
name = "Count"
kind = "for"
init = "i = 0"
condition = "vars.i < 3"
assign = "i = vars.i + 1"
  [[tasks.tasks]]
  name = "Echo"
  kind = "process"
  command = ["test", "{{ vars.i }}", "-lt", "3"]
"#;
    let run = run_text(text).await;
    assert_eq!(run.status, ExecutionStatus::Succeeded);
    let echoes: Vec<&str> = run.tasks.iter().filter(|t| t.path.ends_with("/Echo")).map(|t| t.path.as_str()).collect();
    assert_eq!(echoes, ["Count[0]/Echo", "Count[1]/Echo", "Count[2]/Echo"]);
}

#[tokio::test]
async fn a_child_package_runs_in_process_with_bound_parameters_and_its_result() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("child.toml"),
        r#"
[package]
name = "child"
[parameters]
code = 0
[[tasks]]
name = "Exit"
kind = "process"
command = ["sh", "-c", "exit {{ params.code }}"]
"#,
    )
    .expect("write child");
    let parent = r#"
[package]
name = "parent"
max_errors = 0
[parameters]
code = 0
[[tasks]]
name = "Ok child"
kind = "package"
path = "child.toml"
params = { code = "{{ params.code }}" }
[[tasks]]
name = "Failing child"
kind = "package"
path = "child.toml"
params = { code = 3 }
"#;
    let path = dir.path().join("parent.toml");
    std::fs::write(&path, parent).expect("write parent");
    let run = run_package(load_package(&path).expect("loads").package, RunOptions::default()).await;
    assert_eq!(result_of(&run, "Ok child"), TaskResult::Success);
    assert_eq!(result_of(&run, "Failing child"), TaskResult::Failure);
    assert_eq!(run.children.len(), 2);
    let failing = run.children.iter().find(|c| c.task == "Failing child").expect("child listed");
    assert_eq!(failing.status.as_str(), "failed");
    assert_eq!(failing.package.as_deref(), Some("child.toml"));
    assert_eq!(failing.tasks[0].exit_code, Some(3));
    assert!(
        run.events.iter().any(|e| e.path == "Failing child/Exit"),
        "child events are in the log under the task path"
    );
}

#[tokio::test]
async fn outputs_and_exit_codes_flow_into_later_tasks_expressions() {
    let text = r#"
[package]
name = "t"
[[tasks]]
name = "Produce"
kind = "process"
command = ["echo", "42"]
[[tasks]]
name = "Consume"
kind = "process"
command = ["test", "{{ tasks['Produce'].output }}", "=", "42"]
after = [{ task = "Produce", when = "tasks['Produce'].exit_code == 0" }]
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Consume"), TaskResult::Success, "{}", message_of(&run, "Consume"));
}

#[tokio::test]
async fn an_expression_that_fails_to_evaluate_fails_its_task_with_the_reason() {
    let tasks = [
        process("A", true, ""),
        process("B", true, "after = [{ task = \"A\", when = \"params.missing == 1\" }]"),
        "[[tasks]]\nname = \"C\"\nkind = \"process\"\ncommand = [\"echo\", \"{{ vars.nothing }}\"]\n".to_string(),
    ];
    let run = run_text(&package("max_errors = 0", &tasks)).await;
    assert_eq!(result_of(&run, "B"), TaskResult::Failure);
    assert!(message_of(&run, "B").contains("params.missing == 1"), "{}", message_of(&run, "B"));
    assert_eq!(result_of(&run, "C"), TaskResult::Failure);
    assert!(message_of(&run, "C").contains("vars.nothing"), "{}", message_of(&run, "C"));
}

#[tokio::test]
async fn agent_job_without_agents_fails_saying_how_to_configure_them() {
    let text = r#"
[package]
name = "t"
[[tasks]]
name = "Remote"
kind = "agent_job"
pool = "etl"
job = "load"
"#;
    let run = run_text(text).await;
    assert_eq!(result_of(&run, "Remote"), TaskResult::Failure);
    assert!(message_of(&run, "Remote").contains("--config coordinator.toml"));
}

#[tokio::test]
async fn every_task_is_listed_and_events_pair_starts_with_ends() {
    let run =
        run_text(&package("max_errors = 0", &[process("A", false, ""), process("B", true, "after = [\"A\"]")])).await;
    assert_eq!(run.tasks.len(), 2);
    let a_started = run.events.iter().position(|e| e.path == "A" && matches!(e.kind, EventKind::TaskStarted { .. }));
    let a_finished = run.events.iter().position(|e| e.path == "A" && matches!(e.kind, EventKind::TaskFinished { .. }));
    assert!(a_started.expect("A started") < a_finished.expect("A finished"));
    assert!(run.events.iter().any(|e| e.path == "B" && matches!(e.kind, EventKind::TaskNotRun { .. })));
    let _ = Arc::new(()); // keep Arc import used across cfgs
    let _ = Path::new(".");
}
