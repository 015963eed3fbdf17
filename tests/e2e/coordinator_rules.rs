//! SSIS rules of `agent_job` tasks an audit of the tests found unproven (issue 13 item 7), on a
//! real coordinator with real agents: a fixed agent's refusals fail the task with the agent's
//! reason, with `wait = false` (the default) as with `wait = true`; and an `agent_job` task that
//! waits holds the agent's slot, not the package's (DESIGN.md §3 Concurrency).

use switchyard_tests::{Workspace, eventually_async};

use crate::agent::{WAIT, gated_job, open_gate, quick_job, start, wait_for_status};
use crate::coordinator::{Cluster, children_of, text};
use crate::run_cli::task;
use switchyard_proto::RunStatus;

/// Three independent fire-and-forget tasks on fixed agents, each refused by the agent or the
/// call: an unknown job, a job already running there, and an agent that is down.
const REFUSED: &str = r#"[package]
name = "refused"
max_errors = 0

[[tasks]]
name = "Unknown job"
kind = "agent_job"
agent = "server-a"
job = "no_such_job"

[[tasks]]
name = "Already running"
kind = "agent_job"
agent = "server-a"
job = "nightly"

[[tasks]]
name = "Agent down"
kind = "agent_job"
agent = "server-b"
job = "quick"
"#;

/// Rule: an Execute SQL Server Agent Job task "fails only when the call fails (agent down,
/// unknown job, job already running)" (DESIGN.md §3; ssis-semantics.md §3.1), and its message
/// carries the agent's reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_fixed_agents_refusals_fail_a_fire_and_forget_task_with_the_agents_reason() {
    let gate = Workspace::new();
    let gate_file = gate.path("GO");
    let mut cluster = Cluster::setup(Workspace::new())
        .job("nightly.toml", &gated_job("nightly", &gate_file, ""))
        .job("quick.toml", &quick_job("quick", ""))
        .start()
        .await;
    // nightly (concurrency forbid, the default) is already running on server-a, started by alice.
    let mut agent_a = cluster.agent_client("server-a").await;
    let running = start(&mut agent_a, "nightly", "alice").await;
    wait_for_status(&agent_a, &running.run_id, RunStatus::Running).await;
    let killed = cluster.agent_mut("server-b").kill9().await;
    assert_eq!(killed.code, None, "killed by a signal\n{killed}");
    let cluster = &cluster;
    eventually_async(WAIT, "server-b to be down", || async move {
        (cluster.agents_json().await["server-b"]["state"] == "down").then_some(())
    })
    .await;
    let package = cluster.package("refused.toml", REFUSED);

    let ran = cluster.run_expecting(&package, 0).await;

    let unknown = task(&ran, "Unknown job");
    assert_eq!(unknown["result"], "failure", "{ran:#}");
    assert!(
        text(&unknown["message"]).contains("job \"no_such_job\" is not defined on agent \"server-a\""),
        "the agent's NOT_FOUND reason: {ran:#}"
    );
    let busy = task(&ran, "Already running");
    assert_eq!(busy["result"], "failure", "{ran:#}");
    assert!(
        text(&busy["message"]).contains("Request to run job nightly (from User")
            && text(&busy["message"])
                .contains("refused because the job is already running from a request by User alice."),
        "SQL Server Agent's 22022 text from the agent: {ran:#}"
    );
    let down = task(&ran, "Agent down");
    assert_eq!(down["result"], "failure", "{ran:#}");
    assert!(text(&down["message"]).contains("server-b"), "names the agent that is down: {ran:#}");
    for path in ["Unknown job", "Already running", "Agent down"] {
        assert!(children_of(&ran, path).is_empty(), "{path} started nothing: {ran:#}");
    }
    open_gate(&gate_file);
}

/// Two waiting tasks under max_concurrent = 1: each holds the package's one slot only while it
/// starts its child, then waits on the agent's slot, so the second starts while the first waits.
const HAND_OFF: &str = r#"[package]
name = "hand-off"
max_concurrent = 1

[[tasks]]
name = "First"
kind = "agent_job"
agent = "server-a"
job = "gated_a"
wait = true

[[tasks]]
name = "Second"
kind = "agent_job"
agent = "server-b"
job = "gated_b"
wait = true
"#;

/// Rule: "An `agent_job` task holds a package slot while it starts its child; while it waits for
/// the outcome (`wait = true`) it holds the agent's slot, not the package's" (DESIGN.md §3).
#[tokio::test(flavor = "multi_thread")]
async fn waiting_agent_jobs_hand_the_package_slot_on_so_both_children_run_at_once() {
    let gates = Workspace::new();
    let (gate_a, gate_b) = (gates.path("GO_A"), gates.path("GO_B"));
    let cluster = Cluster::setup(Workspace::new())
        .job("gated_a.toml", &gated_job("gated_a", &gate_a, ""))
        .job("gated_b.toml", &gated_job("gated_b", &gate_b, ""))
        .start()
        .await;
    let package = cluster.package("hand-off.toml", HAND_OFF);
    let execution_id = cluster.detach(&package).await;

    // Neither child can end before its gate opens: both running means both started while the
    // other waited, with one package slot.
    let first = cluster.wait_for_child(&execution_id, "First", "running").await;
    let second = cluster.wait_for_child(&execution_id, "Second", "running").await;
    assert_eq!((first.agent.as_str(), second.agent.as_str()), ("server-a", "server-b"));
    open_gate(&gate_a);
    open_gate(&gate_b);
    let ended = cluster.wait_for_end(&execution_id).await;
    assert_eq!(ended.status, "succeeded", "{ended:?}");
    let report = cluster.report_json(&execution_id).await;
    for path in ["First", "Second"] {
        assert_eq!(task(&report, path)["result"], "success", "{report:#}");
    }
}
