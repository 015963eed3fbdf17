//! Findings from outside about unbounded work and input (issue 12; DESIGN.md §11), each kept as
//! a test against a real coordinator: an expression's budget, confined package paths, bounded
//! request fields, no files left by a rejected start, and idle connections closed.

use std::collections::HashMap;
use std::time::Duration;

use switchyard_proto::coordinator_client::CoordinatorClient;
use switchyard_proto::report_part::Part;
use switchyard_proto::{
    CancelExecutionRequest, CoordinatorStartJobRequest, DeployJobRequest, DrainAgentRequest, GetExecutionRequest,
    GetReportRequest, ListAgentsRequest, PackageFile, StartExecutionRequest, WatchExecutionRequest,
};
use switchyard_tests::{CoordinatorProcess, Workspace, eventually_async, within};
use tokio::io::AsyncReadExt;
use tonic::transport::Channel;

/// How long any one answer may take here.
const PROMPT: Duration = Duration::from_secs(10);

fn start(package: &str, files: Vec<(&str, String)>, parameters: HashMap<String, String>) -> StartExecutionRequest {
    StartExecutionRequest {
        package: package.to_string(),
        files: files.into_iter().map(|(path, content)| PackageFile { path: path.into(), content }).collect(),
        parameters,
        ..Default::default()
    }
}

/// The (result, message) of each task of an execution once it has ended.
async fn ended_tasks(client: &CoordinatorClient<Channel>, id: &str) -> Vec<(String, String, String)> {
    eventually_async(Duration::from_secs(30), "the execution to end", || {
        let mut client = client.clone();
        let id = id.to_string();
        async move {
            let e = client.get_execution(GetExecutionRequest { execution_id: id }).await.ok()?.into_inner();
            ["succeeded", "failed", "completed", "canceled"].contains(&e.status.as_str()).then_some(())
        }
    })
    .await;
    let mut client = client.clone();
    let mut parts = client
        .get_report(GetReportRequest { execution_id: id.into(), page_size: 0 })
        .await
        .expect("report")
        .into_inner();
    let mut rows = Vec::new();
    while let Some(part) = parts.message().await.expect("part") {
        if let Some(Part::Tasks(tasks)) = part.part {
            rows.extend(tasks.rows.into_iter().map(|r| (r.path, r.result, r.message)));
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_comprehension_fails_its_task_naming_the_budget_while_the_coordinator_keeps_answering() {
    let workspace = Workspace::new();
    let coordinator = CoordinatorProcess::setup(&workspace).start().await;
    let mut client = coordinator.client().await;
    let package = r#"[package]
name = "heavy"
[parameters]
xs = []
[[tasks]]
name = "a"
kind = "sleep"
duration = "0s"
[[tasks]]
name = "b"
kind = "sleep"
duration = "0s"
timeout = "1s"
after = [{ task = "a", when = "params.xs.all(x, params.xs.all(y, params.xs.all(z, x + y + z >= 0)))" }]
"#;
    let xs = format!("[{}]", (0..500).map(|i| i.to_string()).collect::<Vec<_>>().join(","));
    let parameters = HashMap::from([("xs".to_string(), xs)]);
    let id = client
        .start_execution(start("heavy.toml", vec![("heavy.toml", package.into())], parameters))
        .await
        .expect("started")
        .into_inner()
        .execution_id;
    // The coordinator answers health checks and ListAgents meanwhile.
    let mut health = tonic_health::pb::health_client::HealthClient::new(coordinator.channel().await);
    within(PROMPT, "a health check", health.check(tonic_health::pb::HealthCheckRequest::default()))
        .await
        .expect("health answers");
    within(PROMPT, "ListAgents", client.list_agents(ListAgentsRequest::default())).await.expect("ListAgents answers");
    let tasks = ended_tasks(&client, &id).await;
    let b = tasks.iter().find(|t| t.0 == "b").expect("task b");
    assert_eq!(b.1, "failure", "{tasks:?}");
    assert!(b.2.contains("expression_steps = 1000000"), "{tasks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_package_task_outside_the_execution_files_is_refused_without_echoing_the_file() {
    let workspace = Workspace::new();
    let secret = workspace.write("secret.toml", "[package]\nname = \"hunter2\"\n");
    let coordinator = CoordinatorProcess::setup(&workspace).start().await;
    let mut client = coordinator.client().await;
    for path in [secret.display().to_string(), "../../../secret.toml".to_string()] {
        // A literal path is refused at load.
        let parent =
            format!("[package]\nname = \"p\"\n[[tasks]]\nname = \"c\"\nkind = \"package\"\npath = \"{path}\"\n");
        let refused = client.start_execution(start("p.toml", vec![("p.toml", parent)], HashMap::new())).await;
        let status = refused.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains("is refused"), "{status:?}");
        assert!(!status.message().contains("hunter2"), "{status:?}");
        // A path computed at run time is refused when the task runs.
        let parent = "[package]\nname = \"p\"\n[parameters]\nchild = \"x.toml\"\n[[tasks]]\nname = \"c\"\nkind = \"package\"\npath = \"{{ params.child }}\"\n".to_string();
        let parameters = HashMap::from([("child".to_string(), path.clone())]);
        let id = client
            .start_execution(start("p.toml", vec![("p.toml", parent)], parameters))
            .await
            .expect("started")
            .into_inner()
            .execution_id;
        let tasks = ended_tasks(&client, &id).await;
        assert_eq!(tasks[0].1, "failure", "{tasks:?}");
        assert!(tasks[0].2.contains("is refused"), "{tasks:?}");
        assert!(!tasks[0].2.contains("hunter2"), "{tasks:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn over_long_fields_are_refused_naming_them_and_a_rejected_start_leaves_no_files() {
    let workspace = Workspace::new();
    let coordinator = CoordinatorProcess::setup(&workspace).start().await;
    let mut client = coordinator.client().await;
    let package = "[package]\nname = \"p\"\n[parameters]\nv = \"\"\n".to_string();
    let mut request = start("p.toml", vec![("p.toml", package.clone())], HashMap::new());
    request.caller = "x".repeat(1 << 20);
    let status = client.start_execution(request).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("caller (requested_by)") && status.message().contains("field = 1024"),
        "{status:?}"
    );

    let parameters = HashMap::from([("v".to_string(), "y".repeat(100_000))]);
    let status =
        client.start_execution(start("p.toml", vec![("p.toml", package)], parameters)).await.expect_err("refused");
    assert!(
        status.message().contains("parameter value of `v`") && status.message().contains("value = 65536"),
        "{status:?}"
    );

    // A package that fails to load is refused, and its files are removed.
    let invalid = "[package]\nname = \"p\"\n[[tasks]]\nname = \"t\"\nkind = \"nope\"\n".to_string();
    let status =
        client.start_execution(start("p.toml", vec![("p.toml", invalid)], HashMap::new())).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let executions = coordinator.data_dir().join("executions");
    let left: Vec<_> =
        std::fs::read_dir(&executions).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "rejected starts left {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_limit_while_a_client_is_served() {
    let workspace = Workspace::new();
    let coordinator =
        CoordinatorProcess::setup(&workspace).setting("limits", "{ idle_timeout = \"1s\" }").start().await;
    let mut idle = tokio::net::TcpStream::connect(coordinator.address()).await.expect("connects");
    let mut client = coordinator.client().await;
    // The server closes the silent socket: reads end (after its HTTP/2 preface) within the deadline.
    within(PROMPT, "the idle socket to be closed", async {
        let mut buf = [0u8; 1024];
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    // A client that keeps its channel answers pings and is still served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    within(PROMPT, "ListAgents", client.list_agents(ListAgentsRequest::default())).await.expect("served");
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_and_over_long_ids_are_invalid_arguments_naming_the_field() {
    let workspace = Workspace::new();
    let coordinator = CoordinatorProcess::setup(&workspace).start().await;
    let mut client = coordinator.client().await;
    let long = "x".repeat(2000);
    for id in [String::new(), long.clone()] {
        let get = client.get_execution(GetExecutionRequest { execution_id: id.clone() }).await;
        let cancel = client.cancel_execution(CancelExecutionRequest { execution_id: id.clone() }).await;
        let report = client.get_report(GetReportRequest { execution_id: id.clone(), page_size: 0 }).await;
        let watch = client.watch_execution(WatchExecutionRequest { execution_id: id, after_sequence: 0 }).await;
        for status in [get.err(), cancel.err(), report.err(), watch.err()] {
            let status = status.expect("refused");
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains("execution_id"), "{status:?}");
        }
    }
    let start = CoordinatorStartJobRequest { agent: "a".into(), job: long.clone(), ..Default::default() };
    let status = client.start_job(start).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("job is 2000 bytes") && status.message().contains("field = 1024"), "{status:?}");
    let drain = client.drain_agent(DrainAgentRequest { name: String::new(), drain: true }).await;
    assert_eq!(drain.expect_err("refused").code(), tonic::Code::InvalidArgument);
    let deploy = DeployJobRequest { pool: long, ..Default::default() };
    let status = client.deploy_job(deploy).await.expect_err("refused");
    assert!(status.message().contains("pool"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_coordinator_advertises_only_the_services_it_answers() {
    let workspace = Workspace::new();
    let coordinator = CoordinatorProcess::setup(&workspace).start().await;
    let services = crate::agent_admin::list_services_v1(coordinator.channel().await).await;
    assert!(services.iter().any(|s| s == "switchyard.v1.Coordinator"), "{services:?}");
    assert!(services.iter().any(|s| s == "grpc.health.v1.Health"), "{services:?}");
    assert!(!services.iter().any(|s| s == "switchyard.v1.Agent"), "{services:?}");
}

/// Issue 12: an error echoing a huge input exceeded the status size a client accepts (the client
/// saw a protocol error, not the refusal). Statuses are cut, saying how much was left out.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_with_a_huge_message_arrives_cut_to_fit() {
    let workspace = Workspace::new();
    let coordinator = CoordinatorProcess::setup(&workspace).start().await;
    let mut client = coordinator.client().await;
    let mut package = String::from("[package]\nname = \"p\"\n");
    for i in 0..3000 {
        package.push_str(&format!("[[tasks]]\nname = \"t{i}\"\nkind = \"sleep\"\nbogus_field_{i} = 1\n"));
    }
    let status = client.start_execution(start("p.toml", vec![("p.toml", package)], HashMap::new())).await;
    let status = status.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{:?}", status.code());
    assert!(status.message().contains("bogus_field_0"), "the first problems are shown");
    assert!(status.message().ends_with("more bytes of this message left out)"), "{}", status.message().len());
}
