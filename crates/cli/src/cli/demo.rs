//! `switchyard demo`: a coordinator and three agents in this process on loopback, with a
//! temporary data dir; the example jobs are deployed, the example parent package runs with live
//! progress, and the Overview report is printed. Exits 0 when everything ran as designed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use switchyard_agent::config::AgentConfig;
use switchyard_coordinator::config::{CoordinatorConfig, StaticAgent};
use switchyard_coordinator::executions::StartExecution;
use switchyard_coordinator::registry::AgentState;
use switchyard_coordinator::report::Report;
use switchyard_coordinator::server::{Coordinator, start};
use switchyard_package::TaskResult;
use switchyard_package::engine::{ChildStatus, ExecutionStatus};
use switchyard_proto as pb;

use super::exit;

/// The demo's files, built into the binary so it runs from anywhere.
const PARENT: (&str, &str) = ("parent.toml", include_str!("../../../../examples/demo/parent.toml"));
const PACKAGES: [(&str, &str); 4] = [
    ("load_customers.toml", include_str!("../../../../examples/demo/packages/load_customers.toml")),
    ("load_orders.toml", include_str!("../../../../examples/demo/packages/load_orders.toml")),
    ("load_region.toml", include_str!("../../../../examples/demo/packages/load_region.toml")),
    ("refresh_cache.toml", include_str!("../../../../examples/demo/packages/refresh_cache.toml")),
];
const JOBS: [&str; 4] = [
    include_str!("../../../../examples/demo/jobs/load_customers.toml"),
    include_str!("../../../../examples/demo/jobs/load_orders.toml"),
    include_str!("../../../../examples/demo/jobs/load_region.toml"),
    include_str!("../../../../examples/demo/jobs/refresh_cache.toml"),
];
const AGENTS: [&str; 3] = ["server-a", "server-b", "server-c"];

/// Arguments of `switchyard demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Crash this agent mid-run to show a remote-server failure and the failover.
    #[arg(long, value_name = "NAME")]
    pub fail_agent: Option<String>,
}

/// Runs the demo; returns the exit code.
pub async fn demo(args: DemoArgs) -> u8 {
    if let Some(name) = &args.fail_agent {
        eprintln!(
            "error: `switchyard demo --fail-agent {name}` is not supported yet; run `switchyard demo` without it"
        );
        return exit::BAD_COMMAND_LINE;
    }
    let shutdown = CancellationToken::new();
    let result = run(shutdown.clone()).await;
    shutdown.cancel();
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            eprintln!("error: the demo did not run as designed: {e:#}");
            exit::FAILURE
        }
    }
}

async fn run(shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = tempfile::tempdir().context("creating the demo's temporary data dir")?;
    let started = Instant::now();
    say(started, &format!("data dir {}", dir.path().display()));
    let mut agents = Vec::new();
    for name in AGENTS {
        let address = start_agent(dir.path(), name, shutdown.child_token()).await?;
        say(started, &format!("agent {name} listening on {address} (labels: etl, 4 slots)"));
        agents.push(StaticAgent { name: name.to_string(), address: address.to_string(), labels: None });
    }
    let config = CoordinatorConfig { data_dir: dir.path().join("coordinator"), agents, ..CoordinatorConfig::default() };
    let coordinator = start(&config, shutdown.clone()).await.context("starting the coordinator")?;
    wait_until_up(&coordinator, started).await?;
    deploy(&coordinator, started).await?;

    let request = StartExecution {
        request_id: Some(uuid::Uuid::new_v4().to_string()),
        package: PARENT.0.to_string(),
        files: vec![(PARENT.0.to_string(), PARENT.1.to_string())],
        caller: "demo".into(),
        ..StartExecution::default()
    };
    let (id, _) = coordinator.executions.start(request).await.context("starting the parent package")?;
    say(started, &format!("execution {id} of package \"nightly-demo\" started"));
    follow(&coordinator, &id, started).await?;
    coordinator.executions.wait_finished(&id).await;
    let report = wait_for_children(&coordinator, &id).await?;
    print!("{}", report.to_text());
    let _ = std::io::stdout().flush();
    check(&report)
}

async fn start_agent(root: &std::path::Path, name: &str, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding an agent's port")?;
    let address = listener.local_addr()?;
    let home = root.join(name);
    let config = AgentConfig {
        name: name.to_string(),
        listen: address,
        data_dir: home.join("data"),
        jobs_dir: home.join("jobs"),
        packages_dir: home.join("packages"),
        labels: vec!["etl".to_string()],
        slots: 4,
        allow_fault_injection: true,
        shutdown_grace: Duration::from_secs(2),
        ..AgentConfig::default()
    };
    let agent = name.to_string();
    tokio::spawn(async move {
        if let Err(e) = switchyard_agent::serve(listener, config, shutdown).await {
            eprintln!("agent {agent} stopped: {e}");
        }
    });
    Ok(address)
}

async fn wait_until_up(coordinator: &Coordinator, started: Instant) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let changed = coordinator.registry.wait_changed();
        let agents = coordinator.registry.agents();
        if agents.iter().all(|a| a.state == AgentState::Up) {
            say(started, &format!("coordinator sees {} agents up", agents.len()));
            return Ok(());
        }
        if Instant::now() > deadline {
            let states: Vec<String> = agents.iter().map(|a| format!("{} {}", a.name, a.state.as_str())).collect();
            bail!("agents did not come up within 15 s ({})", states.join(", "));
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
    }
}

/// Pushes the example packages and jobs to every agent, as `switchyard deploy --pool etl` does.
async fn deploy(coordinator: &Coordinator, started: Instant) -> anyhow::Result<()> {
    for name in AGENTS {
        let mut client = coordinator.registry.client(name).context("agent client")?;
        for (path, content) in PACKAGES {
            client
                .put_package(pb::PutPackageRequest { name: path.to_string(), content: content.to_string() })
                .await
                .with_context(|| format!("pushing {path} to {name}"))?;
        }
        for job in JOBS {
            client
                .upsert_job(pb::UpsertJobRequest { definition: job.to_string() })
                .await
                .with_context(|| format!("pushing a job to {name}"))?;
        }
        say(started, &format!("deployed {} jobs and {} packages to {name}", JOBS.len(), PACKAGES.len()));
    }
    Ok(())
}

/// Prints the execution's events as they are stored, until the package ends.
async fn follow(coordinator: &Coordinator, id: &str, started: Instant) -> anyhow::Result<()> {
    use switchyard_package::engine::EventKind;
    let mut live = coordinator.executions.subscribe(id);
    let mut last = 0;
    loop {
        let page = coordinator.executions.store().events_after(id, last, 0).await?;
        for stored in &page {
            last = stored.sequence;
            let e = &stored.event;
            let line = match &e.kind {
                EventKind::TaskStarted { kind } => format!("started   {} ({kind})", e.path),
                EventKind::TaskFinished { result, duration_ms, message, .. } => {
                    format!("{:<9} {} in {duration_ms} ms: {message}", result.as_str(), e.path)
                }
                EventKind::TaskNotRun { reason } => format!("not run   {}: {reason}", e.path),
                EventKind::PackageFinished { status, .. } if e.path.is_empty() => {
                    say(started, &format!("package {status}"));
                    return Ok(());
                }
                _ => continue,
            };
            say(started, &line);
        }
        match live.as_mut() {
            Some(feed) => {
                if let Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) =
                    tokio::time::timeout(Duration::from_secs(1), feed.recv()).await
                {
                    live = None;
                }
            }
            None => {
                if page.is_empty() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Waits (bounded) until every fire-and-forget child's outcome has been reported.
async fn wait_for_children(coordinator: &Coordinator, id: &str) -> anyhow::Result<Report> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let changed = coordinator.registry.wait_changed();
        let report = coordinator.executions.report(id).await?;
        if report.children.iter().all(|c| c.status != ChildStatus::Running) || Instant::now() > deadline {
            return Ok(report);
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
    }
}

/// What "ran as designed" means for the demo package.
fn check(report: &Report) -> anyhow::Result<()> {
    let result = |path: &str| report.tasks.iter().find(|t| t.path == path).map(|t| t.result);
    let mut problems = Vec::new();
    if report.execution.status != ExecutionStatus::Succeeded {
        problems.push(format!("the execution {} instead of succeeding", report.execution.status));
    }
    for path in ["Load customers", "Load orders", "Refresh cache", "Per region", "Publish"] {
        if result(path) != Some(TaskResult::Success) {
            problems.push(format!("task \"{path}\" ended {:?}", result(path)));
        }
    }
    if result("Alert") != Some(TaskResult::NotRun) {
        problems.push("task \"Alert\" should not have run".into());
    }
    let refresh = report.children.iter().find(|c| c.task == "Refresh cache");
    if refresh.map(|c| c.status) != Some(ChildStatus::Failed) {
        problems.push("the fire-and-forget child of \"Refresh cache\" should show as failed".into());
    }
    let regions = report.children.iter().filter(|c| c.task.starts_with("Per region[")).count();
    if regions != 4 {
        problems.push(format!("expected 4 region children, found {regions}"));
    }
    if problems.is_empty() {
        eprintln!(
            "\nthe demo ran as designed: the fire-and-forget child failed and the report shows it; waited children succeeded"
        );
        Ok(())
    } else {
        bail!(problems.join("; "))
    }
}

fn say(started: Instant, line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "[{:>8.3}s] {line}", started.elapsed().as_secs_f64());
}
