//! The services' HTTP side (DESIGN.md §12, issue 14): after a run through a coordinator, the
//! `/metrics` of the coordinator and of every agent carry the named series and pass `promtool
//! check metrics`; `/healthz` and `/readyz` answer; the dashboard lists the agents and the
//! execution; the execution's page draws its fire-and-forget child's real outcome; and
//! `Execution.tasks_total` / `tasks_failed` count the tasks.

use std::io::Write as _;
use std::process::{Command, Stdio};

use switchyard_proto::ListExecutionsRequest;
use switchyard_tests::{Workspace, eventually_async, http_get};

use crate::agent::{WAIT, quick_job};
use crate::coordinator::{AGENTS, Cluster};

/// A job whose only step fails.
pub(crate) const FAILING_JOB: &str = "name = \"fails\"\n\n[[steps]]\nname = \"false\"\ncommand = [\"false\"]\n";

/// A waited child that succeeds, a fire-and-forget child that fails, and a process that fails.
const PACKAGE: &str = r#"
[package]
name = "ops"

[[tasks]]
name = "Load"
kind = "agent_job"
pool = "etl"
job = "quick"
wait = true

[[tasks]]
name = "Kick off"
kind = "agent_job"
pool = "etl"
job = "fails"

[[tasks]]
name = "Broken"
kind = "process"
command = ["false"]
"#;

/// A cluster whose coordinator and agents all serve `http` on ports the OS picks.
pub(crate) async fn cluster_with_http(ws: Workspace) -> Cluster {
    let mut setup = Cluster::setup(ws)
        .job("quick.toml", &quick_job("quick", ""))
        .job("fails.toml", FAILING_JOB)
        .coordinator_setting("http", "\"127.0.0.1:0\"");
    for agent in AGENTS {
        setup = setup.agent_setting(agent, "http", "\"127.0.0.1:0\"");
    }
    setup.start().await
}

#[tokio::test(flavor = "multi_thread")]
async fn both_services_serve_metrics_promtool_accepts_and_the_pages_show_the_run() {
    let cluster = cluster_with_http(Workspace::new()).await;
    let package = cluster.package("ops.toml", PACKAGE);
    let id = cluster.detach(&package).await;
    let execution = cluster.wait_for_end(&id).await;
    assert_eq!(execution.status, "failed", "{execution:?}");
    cluster.wait_for_child(&id, "Kick off", "failed").await;

    // Issue 14 item 7: these were always 0.
    assert_eq!((execution.tasks_total, execution.tasks_failed), (3, 1), "{execution:?}");
    let mut client = cluster.client.clone();
    let listed = client.list_executions(ListExecutionsRequest { limit: 5 }).await.expect("ListExecutions").into_inner();
    let listed = listed.executions.iter().find(|e| e.execution_id == id).expect("the execution is listed");
    assert_eq!((listed.tasks_total, listed.tasks_failed), (3, 1));

    let http = cluster.coordinator.http_address().await;
    for (path, body) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = http_get(http, path).await;
        assert_eq!((response.status, response.body.trim()), (200, body), "{path}: {response:?}");
    }

    let metrics = http_get(http, "/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.headers.to_lowercase().contains("content-type: text/plain; version=0.0.4"), "{metrics:?}");
    let text = metrics.body;
    for series in [
        "switchyard_job_starts_total{agent=\"server-",
        "switchyard_start_latency_seconds_bucket{le=\"",
        "switchyard_start_latency_seconds_count 2",
        "switchyard_tasks{state=\"running\"} 0",
        "switchyard_tasks{state=\"pending\"} 0",
        "switchyard_agents{state=\"up\"} 3",
        "switchyard_agents{state=\"down\"} 0",
        "switchyard_failovers_total 0",
        "switchyard_executions_total{status=\"failed\"} 1",
        "switchyard_placements_total{strategy=\"least_loaded\"} 2",
        "switchyard_task_retries_total 0",
        "switchyard_pending_seconds_count 2",
        "switchyard_outbox_lag{agent=\"server-a\"}",
        "switchyard_store_commit_seconds_count",
    ] {
        assert!(text.contains(series), "{series} is missing from the coordinator's /metrics:\n{text}");
    }
    let accepted: f64 = text
        .lines()
        .filter(|line| line.starts_with("switchyard_job_starts_total{") && line.contains("outcome=\"accepted\""))
        .map(|line| line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()).expect("a sample value"))
        .sum();
    assert_eq!(accepted, 2.0, "two children were started:\n{text}");
    promtool_check(&text, "the coordinator's /metrics");

    let mut runs = Vec::new();
    for name in AGENTS {
        let agent = cluster.agent(name);
        let address = agent.http_address().await;
        let health = http_get(address, "/healthz").await;
        assert_eq!((health.status, health.body.trim()), (200, "ok"), "{name}");
        // The fire-and-forget child's run may still be recording its end when the parent ended.
        let text = eventually_async(WAIT, "the agents' runs to be counted", || async {
            let text = http_get(address, "/metrics").await.body;
            text.contains("switchyard_agent_slots 4").then_some(text)
        })
        .await;
        for series in [
            "switchyard_agent_running 0",
            "switchyard_agent_queued 0",
            "switchyard_agent_draining 0",
            "switchyard_agent_outbox_unconsumed",
        ] {
            assert!(text.contains(series), "{series} is missing from {name}'s /metrics:\n{text}");
        }
        promtool_check(&text, &format!("{name}'s /metrics"));
        runs.push(text);
    }
    let counted = |job: &str, outcome: &str| {
        let series = format!("switchyard_agent_runs_total{{job=\"{job}\",outcome=\"{outcome}\"}} 1");
        runs.iter().filter(|text| text.contains(&series)).count()
    };
    assert_eq!((counted("quick", "succeeded"), counted("fails", "failed")), (1, 1), "{runs:#?}");

    let dashboard = http_get(http, "/").await;
    assert_eq!(dashboard.status, 200);
    for agent in AGENTS {
        assert!(dashboard.body.contains(&format!("<tr data-agent=\"{agent}\"><td>{agent}</td>")), "{}", dashboard.body);
    }
    assert!(dashboard.body.contains(&format!("<a href=\"/executions/{id}\">{id}</a>")), "{}", dashboard.body);
    assert!(dashboard.body.contains("3 (1 failed)"), "{}", dashboard.body);

    let page = http_get(http, &format!("/executions/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<span class=\"status failed\" id=\"status\">failed</span>"), "{}", page.body);
    assert!(page.body.contains("<rect class=\"bar failed\""), "the fire-and-forget child is drawn red: {}", page.body);
    assert!(!page.body.contains("<script>"), "an ended execution's page needs no script");
    let missing = http_get(http, "/executions/no-such-execution").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("There is no execution"), "{missing:?}");
}

/// Pipes `text` to `promtool check metrics`: it must pass. Fails when promtool is missing
/// (`.ci/run` installs it), unless `SWITCHYARD_SKIP_PROMTOOL=1` says to skip.
pub(crate) fn promtool_check(text: &str, what: &str) {
    if std::env::var("SWITCHYARD_SKIP_PROMTOOL").is_ok_and(|value| value == "1") {
        eprintln!("not checking {what} with promtool: SWITCHYARD_SKIP_PROMTOOL=1");
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "promtool is needed to check {what} ({e}): install Debian's `prometheus` package (.ci/run does), or \
                 set SWITCHYARD_SKIP_PROMTOOL=1 to skip the check"
            )
        });
    child.stdin.take().expect("stdin is piped").write_all(text.as_bytes()).expect("writing to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success(),
        "promtool check metrics refused {what} ({}):\n{}{}\n--- the text ---\n{text}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}
