//! Retention (DESIGN.md §12) on a real coordinator: executions beyond `executions_max` go with
//! their events and files as new ones finish, and `switchyard prune --older-than` removes
//! finished executions on demand.

use serde_json::Value;
use switchyard_tests::{CoordinatorProcess, Workspace, eventually_async, switchyard_async};

use crate::agent::WAIT;
use crate::run_cli::single_json_object;

const QUICK: &str = r#"[package]
name = "quick"

[[tasks]]
name = "Echo"
kind = "process"
command = ["true"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn executions_beyond_the_maximum_and_pruned_on_demand_are_gone_with_their_files() {
    let ws = Workspace::new();
    let coordinator = CoordinatorProcess::setup(&ws).setting("executions_max", "2").start().await;
    let address = coordinator.address().to_string();
    let package = ws.write("quick.toml", QUICK);
    let package = package.to_string_lossy().into_owned();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let out = switchyard_async(["run", package.as_str(), "--coordinator", &address, "--json"]).await;
        out.assert_exit(0);
        ids.push(single_json_object(&out.stdout)["execution_id"].as_str().expect("an id").to_string());
    }
    let files = |id: &str| coordinator.data_dir().join("executions").join(id);
    assert!(files(&ids[2]).is_dir(), "an execution keeps its package files");

    // executions_max = 2: the oldest goes once the third has finished.
    let kept = eventually_async(WAIT, "the oldest execution to be pruned", || async {
        let kept = listed(&address).await;
        (kept.len() == 2).then_some(kept)
    })
    .await;
    assert_eq!(kept, [ids[2].clone(), ids[1].clone()], "the newest two are kept");
    assert!(!files(&ids[0]).exists(), "the pruned execution's files are removed");
    let report = switchyard_async(["report", ids[0].as_str(), "--coordinator", &address]).await;
    assert_eq!(report.code, Some(1), "a pruned execution has no report\n{report}");

    // On demand: every finished execution started more than 0s ago.
    let pruned = switchyard_async(["prune", "--older-than", "0s", "--json", "--coordinator", &address]).await;
    pruned.assert_exit(0);
    let pruned = single_json_object(&pruned.stdout);
    assert_eq!(pruned["pruned"], serde_json::json!([ids[1], ids[2]]), "oldest first: {pruned:#}");
    assert_eq!(pruned["remaining"], 0, "{pruned:#}");
    assert!(listed(&address).await.is_empty());
    assert!(!files(&ids[1]).exists() && !files(&ids[2]).exists());

    // Nothing left to prune is no error.
    let again = switchyard_async(["prune", "--coordinator", &address]).await;
    again.assert_exit(0);
    assert!(again.stderr.contains("pruned 0 execution(s); 0 remain"), "{again}");
}

/// The execution ids `switchyard executions --json` lists, newest first.
async fn listed(address: &str) -> Vec<String> {
    let out = switchyard_async(["executions", "--json", "--coordinator", address]).await;
    out.assert_exit(0);
    let listed = single_json_object(&out.stdout);
    listed["executions"]
        .as_array()
        .unwrap_or_else(|| panic!("no executions list: {listed:#}"))
        .iter()
        .map(|e: &Value| e["execution_id"].as_str().expect("an id").to_string())
        .collect()
}
