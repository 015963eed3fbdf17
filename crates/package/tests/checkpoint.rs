//! Checkpoints (DESIGN.md §3, SSIS "Restart Packages by Using Checkpoints"): a run that fails
//! writes the tasks that succeeded and the variables; a restart runs only what had not
//! succeeded; loops and transacted containers restart whole; the file is deleted on success;
//! a checkpoint of another version of the package, or a missing one under `always`, is refused.
//! Real processes and real files: each task appends to a file, so what ran is counted there.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use switchyard_package::engine::{
    Checkpoint, CheckpointError, Restart, RunOptions, Settled, plan_restart, run_package, settle,
};
use switchyard_package::model::{CheckpointUsage, TransactionOption};
use switchyard_package::{ExecutionStatus, Package, PackageRun, TaskResult, load_package};

/// Extract prints "extracted"; Stage/Copy and the loop's iterations append to files; Transform
/// fails while `params.fail` is true (the failure a test forces from outside: editing the
/// package would change its version) and writes what it sees of Extract and of `vars.batch`.
const NIGHTLY: &str = r#"[package]
name = "nightly"
checkpoint = { file = "state/nightly.ckpt", usage = "if_exists" }

[parameters]
fail = true

[[tasks]]
name = "Extract"
kind = "process"
command = ["sh", "-c", "echo x >> extract.txt; echo extracted"]

[[tasks]]
name = "Stage"
kind = "sequence"

  [[tasks.tasks]]
  name = "Copy"
  kind = "process"
  command = ["sh", "-c", "echo x >> copy.txt"]

[[tasks]]
name = "Per file"
kind = "foreach"
items = [1, 2]
var = "n"
after = ["Extract"]

  [[tasks.tasks]]
  name = "Load"
  kind = "process"
  command = ["sh", "-c", "echo {{ vars.n }} >> load.txt"]

[[tasks]]
name = "Transform"
kind = "process"
after = ["Per file", "Stage"]
command = ["sh", "-c", "echo '{{ tasks[\"Extract\"].output }} {{ has(vars.batch) ? string(vars.batch) : \"none\" }}' >> transform.txt; test {{ params.fail }} = false"]
"#;

fn load(dir: &Path, text: &str) -> Arc<Package> {
    std::fs::create_dir_all(dir.join("state")).expect("state folder");
    let path = dir.join("nightly.toml");
    std::fs::write(&path, text).expect("write package");
    load_package(&path).unwrap_or_else(|e| panic!("package should load:\n{e}")).package
}

fn lines(dir: &Path, file: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default().lines().map(str::to_string).collect()
}

fn result_of(run: &PackageRun, path: &str) -> TaskResult {
    run.tasks.iter().find(|t| t.path == path).unwrap_or_else(|| panic!("no task {path}")).result
}

fn message_of<'a>(run: &'a PackageRun, path: &str) -> &'a str {
    &run.tasks.iter().find(|t| t.path == path).unwrap_or_else(|| panic!("no task {path}")).message
}

fn file(dir: &Path) -> PathBuf {
    dir.join("state/nightly.ckpt")
}

/// Runs the package as `switchyard run` does: plan the start, run, settle the file.
async fn run(package: &Arc<Package>, fail: bool, usage: Option<CheckpointUsage>) -> (PackageRun, Settled) {
    let resume = match plan_restart(package, usage).expect("the restart is possible") {
        Restart::FromStart(_) => None,
        Restart::FromCheckpoint { checkpoint, .. } => Some(Arc::new(checkpoint.resume())),
    };
    let mut parameters = switchyard_package::expr::Map::new();
    parameters.insert("fail".into(), serde_json::Value::Bool(fail));
    let run = run_package(package.clone(), RunOptions { parameters, resume, ..RunOptions::default() }).await;
    let settled = settle(package, &run).expect("the checkpoint file settles");
    (run, settled)
}

#[tokio::test]
async fn a_restart_after_a_forced_failure_runs_only_what_had_not_succeeded_with_variables_restored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let package = load(dir.path(), NIGHTLY);

    let (first, settled) = run(&package, true, None).await;
    assert_eq!(first.status, ExecutionStatus::Failed);
    assert_eq!(result_of(&first, "Transform"), TaskResult::Failure);
    assert_eq!(settled, Settled::Written(file(dir.path()), 3), "Extract, Stage/Copy and the loop whole");
    let checkpoint = Checkpoint::read(&file(dir.path())).expect("readable").expect("written");
    let kept: Vec<&str> = checkpoint.tasks.iter().map(|t| t.path.as_str()).collect();
    assert_eq!(kept, ["Extract", "Stage/Copy", "Per file"], "what succeeded, in file order");
    assert_eq!(checkpoint.execution_id, first.execution_id);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state")).expect("list").flatten().collect();
    assert_eq!(leftovers.len(), 1, "the atomic write leaves no temporary file: {leftovers:?}");

    // A package variable the failed run held (what a `sql` task's `result` sets) is in the file;
    // this build has no task that sets one, so the test puts it there.
    let mut checkpoint = checkpoint;
    checkpoint.variables.insert("batch".into(), serde_json::json!(7));
    checkpoint.write(&file(dir.path())).expect("rewrite");

    let (second, settled) = run(&package, true, None).await;
    assert_eq!(second.status, ExecutionStatus::Failed, "Transform is still forced to fail");
    assert_eq!(lines(dir.path(), "extract.txt").len(), 1, "Extract was kept, not run again");
    assert_eq!(lines(dir.path(), "copy.txt").len(), 1, "Stage/Copy was kept");
    assert_eq!(lines(dir.path(), "load.txt"), ["1", "2"], "the loop that succeeded was kept whole");
    assert_eq!(
        lines(dir.path(), "transform.txt"),
        ["extracted none", "extracted 7"],
        "Transform ran again, seeing Extract's kept output and the restored variable"
    );
    for path in ["Extract", "Stage/Copy", "Per file", "Per file[0]/Load", "Per file[1]/Load"] {
        assert_eq!(result_of(&second, path), TaskResult::Success, "{path} is reported with its kept result");
    }
    assert!(
        message_of(&second, "Extract").ends_with("(kept from the checkpoint)"),
        "{}",
        message_of(&second, "Extract")
    );
    assert!(
        second.events.iter().any(|e| e.path == "Extract"),
        "a restart is a new execution: its log records the kept task's end"
    );
    assert_eq!(settled, Settled::Written(file(dir.path()), 3));
    let again = Checkpoint::read(&file(dir.path())).expect("readable").expect("written");
    assert_eq!(again.variables.get("batch"), Some(&serde_json::json!(7)), "variables carry to the next checkpoint");
    assert_eq!(
        again.tasks.iter().find(|t| t.path == "Extract").map(|t| t.message.matches("kept").count()),
        Some(0),
        "notes do not pile up"
    );

    let (third, settled) = run(&package, false, None).await;
    assert_eq!(third.status, ExecutionStatus::Succeeded, "{:?}", third.tasks);
    assert_eq!(lines(dir.path(), "extract.txt").len(), 1);
    assert_eq!(lines(dir.path(), "transform.txt").len(), 3, "only Transform ran");
    assert_eq!(settled, Settled::Deleted(file(dir.path())));
    assert!(!file(dir.path()).exists(), "the file is deleted when the package succeeds");

    let (fourth, _) = run(&package, false, None).await;
    assert_eq!(fourth.status, ExecutionStatus::Succeeded);
    assert_eq!(lines(dir.path(), "extract.txt").len(), 2, "without a checkpoint the package runs whole");
}

/// Loops and transacted containers are restart units (SSIS: "a Foreach Loop container and any
/// transacted container are treated as atomic units"): one that failed runs again whole, while
/// a plain sequence keeps the tasks inside it that succeeded.
#[tokio::test]
async fn a_failed_loop_or_transacted_container_restarts_whole() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = r#"[package]
name = "units"
checkpoint = { file = "units.ckpt", usage = "always" }

[parameters]
fail = true

[[tasks]]
name = "Plain"
kind = "sequence"
  [[tasks.tasks]]
  name = "A"
  kind = "process"
  command = ["sh", "-c", "echo x >> plain.txt"]
  [[tasks.tasks]]
  name = "B"
  kind = "process"
  command = ["test", "{{ params.fail }}", "=", "false"]
  after = ["A"]

[[tasks]]
name = "Tx"
kind = "sequence"
  [[tasks.tasks]]
  name = "A"
  kind = "process"
  command = ["sh", "-c", "echo x >> tx.txt"]
  [[tasks.tasks]]
  name = "B"
  kind = "process"
  command = ["test", "{{ params.fail }}", "=", "false"]
  after = ["A"]

[[tasks]]
name = "Loop"
kind = "foreach"
items = [1, 2]
var = "n"
  [[tasks.tasks]]
  name = "Item"
  kind = "process"
  command = ["sh", "-c", "echo {{ vars.n }} >> loop.txt; test {{ vars.n }} = 1 || test {{ params.fail }} = false"]
"#;
    let path = dir.path().join("units.toml");
    std::fs::write(&path, text).expect("write");
    let loaded = load_package(&path).expect("loads").package;
    // `transaction = "required"` comes with transactions (another branch); the engine treats a
    // container marked so as transacted, which is what this test needs.
    let mut package = (*loaded).clone();
    package.tasks[1].transaction = TransactionOption::Required;
    let package = Arc::new(package);
    std::fs::create_dir_all(dir.path().join("state")).expect("state");

    // `always` would refuse a first run without a file: `--restart never` runs it from the start.
    let (first, settled) = run(&package, true, Some(CheckpointUsage::Never)).await;
    assert_eq!(first.status, ExecutionStatus::Failed);
    assert!(matches!(settled, Settled::Written(_, 1)), "only Plain/A is kept: {settled:?}");

    let (second, _) = run(&package, false, None).await;
    assert_eq!(second.status, ExecutionStatus::Succeeded, "{:?}", second.tasks);
    assert_eq!(lines(dir.path(), "plain.txt").len(), 1, "Plain/A was kept");
    assert_eq!(lines(dir.path(), "tx.txt").len(), 2, "the transacted container ran again whole");
    assert_eq!(lines(dir.path(), "loop.txt"), ["1", "2", "1", "2"], "the failed loop ran again whole");
    assert!(!dir.path().join("units.ckpt").exists());
}

#[tokio::test]
async fn usage_decides_whether_a_run_restarts_and_a_missing_file_under_always_runs_from_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let package = load(dir.path(), NIGHTLY);
    let missing = file(dir.path());

    // DESIGN.md §3: `always` without a file to restart from runs from the start and says so.
    match plan_restart(&package, Some(CheckpointUsage::Always)).expect("always without a file runs") {
        Restart::FromStart(reason) => {
            assert!(reason.contains(&missing.display().to_string()), "names the file: {reason}");
            assert!(reason.contains("(usage \"always\"): running from the start"), "says so: {reason}");
        }
        other => panic!("{other:?}"),
    }
    match plan_restart(&package, None).expect("if_exists without a file runs") {
        Restart::FromStart(reason) => assert!(reason.contains("running from the start"), "{reason}"),
        other => panic!("{other:?}"),
    }

    run(&package, true, None).await;
    assert!(missing.exists());
    assert!(matches!(plan_restart(&package, Some(CheckpointUsage::Never)), Ok(Restart::FromStart(_))));
    assert!(matches!(plan_restart(&package, Some(CheckpointUsage::Always)), Ok(Restart::FromCheckpoint { .. })));

    std::fs::write(&missing, "{\n  \"format\": 1,\n  oops\n}").expect("corrupt");
    let text = plan_restart(&package, None).expect_err("a corrupt file is refused").to_string();
    assert!(text.starts_with(&format!("{}:3:", missing.display())), "file and line: {text}");
}

#[tokio::test]
async fn a_checkpoint_written_by_another_version_of_the_package_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let package = load(dir.path(), NIGHTLY);
    run(&package, true, None).await;

    let changed = load(dir.path(), &NIGHTLY.replace("name = \"nightly\"", "name = \"nightly\"\ndescription = \"v2\""));
    let error = plan_restart(&changed, None).expect_err("another version's checkpoint is refused");
    assert!(matches!(error, CheckpointError::OtherVersion { .. }), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("not by this version of package \"nightly\""), "{text}");
    assert!(text.contains("delete the file to run from the start"), "{text}");
    assert!(file(dir.path()).exists(), "the file is left for the user to decide");
}
