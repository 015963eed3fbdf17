//! Shutdown reaches every stream (issue 10): a coordinator given SIGTERM while `switchyard
//! watch` follows a running execution ends the watch's stream at once, saying why, and exits
//! well within its grace period instead of waiting for the stream.

use std::time::Duration;

use switchyard_tests::{CoordinatorProcess, Workspace, eventually, spawn_switchyard, switchyard_async};

/// Below the coordinator's drain grace (10 s, `DRAIN_GRACE` in server.rs): a coordinator held by
/// an open stream would exit only once the grace ran out, and fail this bound.
const WITHIN_GRACE: Duration = Duration::from_secs(8);

/// How long the watch may take to show what it follows.
const WATCH_DEADLINE: Duration = Duration::from_secs(10);

/// An execution that outlives the test unless something ends it.
const LONG_PACKAGE: &str = r#"[package]
name = "long"

[[tasks]]
name = "Wait for ever"
kind = "sleep"
duration = "10m"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_an_open_watch_and_the_coordinator_exits_within_its_grace() {
    let workspace = Workspace::new();
    let mut coordinator = CoordinatorProcess::setup(&workspace).start().await;
    let address = coordinator.address().to_string();
    let package = workspace.write("long.toml", LONG_PACKAGE);
    let package = package.to_string_lossy().into_owned();
    let detached = switchyard_async(["run", package.as_str(), "--coordinator", &address, "--detach"]).await;
    detached.assert_exit(0);
    let execution_id = detached.stdout.trim().to_string();
    let watch = spawn_switchyard(["watch", execution_id.as_str(), "--coordinator", &address]);
    eventually(WATCH_DEADLINE, "the watch to show the running task", || {
        watch.stderr_so_far().contains("Wait for ever").then_some(())
    });

    coordinator.send_sigterm();
    let stopped = coordinator.wait_for_exit(WITHIN_GRACE).await;

    stopped.assert_exit(0);
    assert!(
        !stopped.stderr.contains("did not finish within the grace period"),
        "the coordinator waited for open calls instead of ending its streams\n{stopped}"
    );
    eventually(WATCH_DEADLINE, "the watch to say the coordinator is shutting down", || {
        watch.stderr_so_far().contains("the coordinator is shutting down").then_some(())
    });
}
