//! Resuming a run from the events an earlier run of it stored (a coordinator restart, issue 11):
//! tasks that had ended are replayed with their results and output, not run again; loops do not
//! repeat finished iterations; what was running runs again; events continue the earlier ones.

use std::path::Path;
use std::sync::Arc;

use switchyard_package::engine::{Event, EventKind, Resume, RunOptions, run_package};
use switchyard_package::{ExecutionStatus, Package, PackageRun, TaskResult, load_package};

/// Count appends a line to count.txt and prints "counted"; the loop appends each item to
/// loop.txt; Next appends what Count printed (its replayed output after a resume) to next.txt.
const COUNTED: &str = r#"[package]
name = "counted"

[[tasks]]
name = "Count"
kind = "process"
command = ["sh", "-c", "echo x >> count.txt; echo counted"]

[[tasks]]
name = "Loop"
kind = "foreach"
items = [1, 2, 3]
var = "n"
after = ["Count"]

[[tasks.tasks]]
name = "Append"
kind = "process"
command = ["sh", "-c", "echo {{ vars.n }} >> loop.txt"]

[[tasks]]
name = "Next"
kind = "process"
command = ["sh", "-c", "echo {{ tasks[\"Count\"].output }} >> next.txt"]
after = ["Loop"]
"#;

fn load(dir: &Path, text: &str) -> Arc<Package> {
    let path = dir.join("p.toml");
    std::fs::write(&path, text).expect("write package");
    load_package(&path).unwrap_or_else(|e| panic!("package should load:\n{e}")).package
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// The events up to and including the TaskFinished of `path`: what a coordinator had stored
/// when it died right after that task ended.
fn events_until_finished(run: &PackageRun, path: &str) -> Vec<Event> {
    let end = run
        .events
        .iter()
        .position(|e| e.path == path && matches!(e.kind, EventKind::TaskFinished { .. }))
        .unwrap_or_else(|| panic!("{path} finished in the first run"));
    run.events[..=end].to_vec()
}

async fn resume(package: Arc<Package>, stored: &[Event]) -> PackageRun {
    let options = RunOptions { resume: Some(Arc::new(Resume::from_events(stored))), ..RunOptions::default() };
    run_package(package, options).await
}

fn result_of(run: &PackageRun, path: &str) -> TaskResult {
    run.tasks.iter().find(|t| t.path == path).unwrap_or_else(|| panic!("no task {path}")).result
}

#[tokio::test]
async fn a_resumed_run_replays_ended_tasks_and_runs_only_what_had_not_ended() {
    let dir = tempfile::tempdir().expect("temp dir");
    let package = load(dir.path(), COUNTED);
    let first = run_package(package.clone(), RunOptions::default()).await;
    assert_eq!(first.status, ExecutionStatus::Succeeded, "{:?}", first.tasks);
    assert_eq!((read(dir.path(), "count.txt"), read(dir.path(), "loop.txt")), ("x\n".into(), "1\n2\n3\n".into()));
    // The process died after the loop's second iteration ended: the third was running.
    let stored = events_until_finished(&first, "Loop[1]/Append");

    let resumed = resume(package, &stored).await;

    assert_eq!(resumed.status, ExecutionStatus::Succeeded, "{:?}", resumed.tasks);
    assert_eq!(read(dir.path(), "count.txt"), "x\n", "Count had ended: it is replayed, not run again");
    assert_eq!(read(dir.path(), "loop.txt"), "1\n2\n3\n3\n", "only the iteration that had not ended runs again");
    assert_eq!(read(dir.path(), "next.txt"), "counted\ncounted\n", "Next sees Count's replayed output");
    for path in ["Count", "Loop", "Loop[0]/Append", "Loop[1]/Append", "Loop[2]/Append", "Next"] {
        assert_eq!(result_of(&resumed, path), TaskResult::Success, "{path}");
    }
    let last = stored.last().expect("events").seq;
    let first_new = resumed.events.first().expect("the resumed run records events");
    assert_eq!(first_new.seq, last + 1, "the resumed run's events continue the stored ones");
    assert!(matches!(first_new.kind, EventKind::Resumed { replayed: 3 }), "{first_new:?}");
    assert!(
        !resumed.events.iter().any(|e| e.path == "Count" || e.path == "Loop[0]/Append"),
        "replayed tasks emit no events: theirs are stored already"
    );
}

#[tokio::test]
async fn a_replayed_failure_still_counts_and_its_failure_path_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let package = load(
        dir.path(),
        r#"[package]
name = "failing"

[[tasks]]
name = "Fails"
kind = "process"
command = ["sh", "-c", "echo ran >> fails.txt; exit 3"]

[[tasks]]
name = "On failure"
kind = "process"
command = ["sh", "-c", "echo {{ tasks[\"Fails\"].exit_code }} >> handled.txt"]
after = [{ task = "Fails", on = "failure" }]
"#,
    );
    let first = run_package(package.clone(), RunOptions::default()).await;
    assert_eq!(first.status, ExecutionStatus::Failed);
    let stored = events_until_finished(&first, "Fails");

    let resumed = resume(package, &stored).await;

    assert_eq!(resumed.status, ExecutionStatus::Failed, "the replayed failure reaches max_errors = 1");
    assert_eq!(result_of(&resumed, "Fails"), TaskResult::Failure);
    let failed = resumed.tasks.iter().find(|t| t.path == "Fails").expect("listed");
    assert_eq!(failed.exit_code, Some(3), "the replayed record keeps the exit code");
    assert_eq!(read(dir.path(), "fails.txt"), "ran\n", "the failed task is not run again");
    assert_eq!(read(dir.path(), "handled.txt"), "3\n3\n", "the failure path runs and sees the exit code");
}
