//! `switchyard run` with a package's checkpoint and `--restart` (DESIGN.md §3 Checkpoints, §5;
//! dtexec /Restart): what a user sees on stderr, the exit codes, and which tasks ran, counted in
//! files the tasks append to.

use switchyard_tests::{Workspace, switchyard, switchyard_async};

use crate::run_cli::{single_json_object, task};

/// Extract appends to extract.txt; Transform fails while `fail` is true (a failure the user
/// forces from the command line: editing the file would make it another version).
const NIGHTLY: &str = r#"[package]
name = "nightly"
checkpoint = { file = "nightly.ckpt", usage = "if_exists" }

[parameters]
fail = true

[[tasks]]
name = "Extract"
kind = "process"
command = ["sh", "-c", "echo x >> extract.txt"]

[[tasks]]
name = "Transform"
kind = "process"
after = ["Extract"]
command = ["sh", "-c", "echo x >> transform.txt; test {{ params.fail }} = false"]
"#;

fn count(ws: &Workspace, file: &str) -> usize {
    std::fs::read_to_string(ws.path(file)).unwrap_or_default().lines().count()
}

#[test]
fn a_failed_run_leaves_a_checkpoint_and_the_next_run_restarts_from_the_failed_task() {
    let ws = Workspace::new();
    let package = ws.write("nightly.toml", NIGHTLY);
    let package = package.to_str().expect("utf-8 path");
    let file = ws.path("nightly.ckpt");

    let first = switchyard(["run", package]);
    first.assert_exit(1);
    assert!(first.stderr.contains("(usage \"if_exists\"): running from the start"), "says so:\n{first}");
    assert!(first.stderr.contains(&format!("checkpoint: {} written (1 task(s) succeeded)", file.display())), "{first}");
    assert!(file.exists());

    let second = switchyard(["run", package, "--set", "fail=false", "--json"]);
    second.assert_exit(0);
    assert!(second.stderr.contains(&format!("checkpoint: restarting from {}", file.display())), "{second}");
    assert_eq!((count(&ws, "extract.txt"), count(&ws, "transform.txt")), (1, 2), "only Transform ran again");
    let report = single_json_object(&second.stdout);
    assert_eq!(report["status"], "succeeded", "{report:#}");
    let extract = task(&report, "Extract");
    assert_eq!(extract["result"], "success", "{report:#}");
    assert!(extract["message"].as_str().is_some_and(|m| m.ends_with("(kept from the checkpoint)")), "{report:#}");
    assert!(second.stderr.contains("the package succeeded;") && !file.exists(), "deleted on success:\n{second}");
}

#[test]
fn restart_usages_and_refusals_say_what_to_do() {
    let ws = Workspace::new();
    let path = ws.write("nightly.toml", NIGHTLY);
    let package = path.to_str().expect("utf-8 path");
    let file = ws.path("nightly.ckpt");

    // dtexec /Restart force without a file: DESIGN.md §3 runs from the start and says so.
    let always = switchyard(["run", package, "--restart", "always"]);
    always.assert_exit(1);
    let said = format!("no checkpoint file {} (usage \"always\"): running from the start", file.display());
    assert!(always.stderr.contains(&said), "{always}");
    assert_eq!(count(&ws, "extract.txt"), 1, "it ran from the start");
    // /Restart deny: the file is not read; the run starts over (and fails again, rewriting it).
    let never = switchyard(["run", package, "--restart", "never"]);
    never.assert_exit(1);
    assert!(never.stderr.contains("checkpoint usage is \"never\""), "{never}");
    assert_eq!(count(&ws, "extract.txt"), 2, "Extract ran again");

    // Another version of the package (the file changed) refuses the checkpoint.
    std::fs::write(&path, NIGHTLY.replace("name = \"nightly\"", "name = \"nightly\"\ndescription = \"v2\""))
        .expect("edit the package");
    let other = switchyard(["run", package, "--set", "fail=false"]);
    other.assert_exit(1);
    assert!(other.stderr.contains("not by this version of package \"nightly\""), "{other}");
    assert!(other.stderr.contains("delete the file to run from the start"), "{other}");
    assert_eq!(count(&ws, "extract.txt"), 2, "nothing ran");
    assert!(file.exists(), "the refused file is left in place");
}

/// A variable a `sql` task's `result` set before the failure is restored on restart: the task
/// that set it is kept, not run again, and what follows reads the value it had.
#[test]
fn a_restart_restores_the_variables_sql_results_set() {
    let ws = Workspace::new();
    let package = ws.write(
        "counted.toml",
        r#"[package]
name = "counted"
checkpoint = { file = "counted.ckpt", usage = "if_exists" }

[parameters]
fail = true

[connections.db]
url = "sqlite://counted.db"

[[tasks]]
name = "Count"
kind = "sql"
connection = "db"
statement = "SELECT 41 + 1"
result = "answer"

[[tasks]]
name = "Use"
kind = "process"
after = ["Count"]
command = ["sh", "-c", "echo {{ vars.answer }} >> use.txt; test {{ params.fail }} = false"]
"#,
    );
    let package = package.to_str().expect("utf-8 path");
    switchyard(["run", package]).assert_exit(1);
    let second = switchyard(["run", package, "--set", "fail=false", "--json"]);
    second.assert_exit(0);
    let report = single_json_object(&second.stdout);
    let count = task(&report, "Count");
    assert!(count["message"].as_str().is_some_and(|m| m.ends_with("(kept from the checkpoint)")), "{report:#}");
    let used = std::fs::read_to_string(ws.path("use.txt")).expect("use.txt");
    assert_eq!(used.lines().collect::<Vec<_>>(), ["42", "42"], "the restored variable is read on the restart");
}

/// Executions on a coordinator checkpoint the same way (issue 13): the file is kept under the
/// coordinator's data_dir/checkpoints/PACKAGE/, and the next `run --coordinator` restarts from it.
#[tokio::test(flavor = "multi_thread")]
async fn an_execution_on_a_coordinator_restarts_from_the_checkpoint_the_coordinator_kept() {
    let ws = Workspace::new();
    let coordinator = switchyard_tests::CoordinatorProcess::setup(&ws).start().await;
    let address = coordinator.address().to_string();
    // The tasks append to files in the workspace, named absolutely (they run on the coordinator).
    let package = ws.write(
        "nightly.toml",
        &NIGHTLY
            .replace("extract.txt", &ws.path("extract.txt").display().to_string())
            .replace("transform.txt", &ws.path("transform.txt").display().to_string()),
    );
    let package = package.to_str().expect("utf-8 path");
    let kept = coordinator.data_dir().join("checkpoints").join("nightly").join("nightly.ckpt");

    let first = switchyard_async(["run", package, "--coordinator", &address]).await;
    first.assert_exit(1);
    assert!(first.stderr.contains("(usage \"if_exists\"): running from the start (on the coordinator)"), "{first}");
    assert!(kept.exists(), "the coordinator keeps the checkpoint at {}\n{first}", kept.display());

    let second = switchyard_async(["run", package, "--coordinator", &address, "--set", "fail=false", "--json"]).await;
    second.assert_exit(0);
    assert!(second.stderr.contains("checkpoint: restarting from"), "{second}");
    assert_eq!((count(&ws, "extract.txt"), count(&ws, "transform.txt")), (1, 2), "only Transform ran again");
    let report = single_json_object(&second.stdout);
    let extract = task(&report, "Extract");
    assert!(extract["message"].as_str().is_some_and(|m| m.ends_with("(kept from the checkpoint)")), "{report:#}");
    assert!(!kept.exists(), "deleted on success");

    // --restart on a package without a checkpoint is refused before anything is sent.
    let plain = ws.write("plain.toml", "[package]\nname = \"plain\"\n");
    let plain = plain.to_str().expect("utf-8 path");
    let refused = switchyard_async(["run", plain, "--coordinator", &address, "--restart", "always"]).await;
    refused.assert_exit(6);
    assert!(refused.stderr.contains("has no checkpoint file to restart from"), "{refused}");
}
