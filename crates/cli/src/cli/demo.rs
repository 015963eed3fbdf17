//! `switchyard demo`: a coordinator and three agents in this process on loopback; the example
//! jobs are deployed, the example parent package runs with live progress, and the Overview
//! report is printed. Exits 0 when everything ran as designed.
//!
//! Its data dir (`--data-dir`, or a new `switchyard-demo-*` folder in the system's temp dir) is
//! kept: it holds the report as `report.json` and `report.html`, and the coordinator's store,
//! which `switchyard serve --data-dir DIR/coordinator` serves again for `report`, `executions`.
//!
//! With `--fail-agent NAME` that agent runs as a child process instead (see `demo_agent`), and
//! is crashed once the "Per region" loop runs: the report then shows its lost children retried on
//! the other agents of the pool.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use switchyard_coordinator::config::{CoordinatorConfig, StaticAgent};
use switchyard_coordinator::executions::StartExecution;
use switchyard_coordinator::registry::AgentState;
use switchyard_coordinator::report::Report;
use switchyard_coordinator::server::{Coordinator, start};
use switchyard_package::TaskResult;
use switchyard_package::engine::{ChildStatus, ExecutionStatus};
use switchyard_proto as pb;

use super::demo_agent::{AgentProcess, CrashOutcome, REGION_TASKS, agent_config, crash_mid_run};
use super::exit;
use super::live::{Live, TaskStep, work_tasks};

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
    /// Keep the demo's stores and report here (an empty or new folder); default: a new
    /// `switchyard-demo-*` folder in the system's temp dir. It is kept either way.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs the demo; returns the exit code.
pub async fn demo(args: DemoArgs) -> u8 {
    if let Some(name) = &args.fail_agent
        && !AGENTS.contains(&name.as_str())
    {
        eprintln!("error: --fail-agent: the demo has no agent named \"{name}\"; choose {}", AGENTS.join(", "));
        return exit::BAD_COMMAND_LINE;
    }
    let shutdown = CancellationToken::new();
    let result = run(args.fail_agent.as_deref(), args.data_dir, shutdown.clone()).await;
    shutdown.cancel();
    match result {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            eprintln!("error: the demo did not run as designed: {e:#}");
            exit::FAILURE
        }
    }
}

async fn run(fail_agent: Option<&str>, data_dir: Option<PathBuf>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let dir = kept_data_dir(data_dir)?;
    let started = Instant::now();
    say(started, &format!("data dir {} (kept)", dir.display()));
    let mut crashable = None;
    let result = demonstrate(&dir, fail_agent, &mut crashable, started, shutdown).await;
    // Reaped before the data dir goes, whatever happened.
    if let Some(process) = crashable {
        process.stop().await;
    }
    result
}

async fn demonstrate(
    root: &Path,
    fail_agent: Option<&str>,
    crashable: &mut Option<AgentProcess>,
    started: Instant,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut agents = Vec::new();
    for name in AGENTS {
        let address = if fail_agent == Some(name) {
            let process = AgentProcess::spawn(root, name).await?;
            let (address, pid) = (process.address, process.pid);
            *crashable = Some(process);
            say(started, &format!("agent {name} listening on {address} (labels: etl, 4 slots; pid {pid}, crashable)"));
            address
        } else {
            let address = start_agent(root, name, shutdown.child_token()).await?;
            say(started, &format!("agent {name} listening on {address} (labels: etl, 4 slots)"));
            address
        };
        agents.push(StaticAgent { name: name.to_string(), address: address.to_string(), labels: None });
    }
    let config = CoordinatorConfig { data_dir: root.join("coordinator"), agents, ..CoordinatorConfig::default() };
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
    let id = coordinator.executions.start(request).await.context("starting the parent package")?.execution_id;
    say(started, &format!("execution {id} of package \"nightly-demo\" started"));
    let crash = match crashable.as_ref() {
        None => {
            follow(&coordinator, &id, started, None).await?;
            None
        }
        Some(agent) => {
            let (region_started, trigger) = oneshot::channel();
            let (followed, crashed) = tokio::join!(
                follow(&coordinator, &id, started, Some(region_started)),
                crash_mid_run(&coordinator, &id, agent, trigger, started),
            );
            followed?;
            Some((agent.name.clone(), crashed))
        }
    };
    coordinator.executions.wait_finished(&id).await;
    let report = wait_for_children(&coordinator, &id).await?;
    print!("{}", report.to_text());
    let _ = std::io::stdout().flush();
    keep_report(root, &id, &report)?;
    match crash {
        None => check(&report),
        Some((name, crashed)) => {
            let states: Vec<String> =
                coordinator.registry.agents().iter().map(|a| format!("{} {}", a.name, a.state)).collect();
            eprintln!("\nagents now: {}", states.join(", "));
            let state = coordinator.registry.agent(&name).map(|a| a.state);
            check_failover(&report, &name, state, crashed)
        }
    }
}

async fn start_agent(root: &Path, name: &str, shutdown: CancellationToken) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding an agent's port")?;
    let address = listener.local_addr()?;
    let config = agent_config(name, address, &root.join(name), vec!["etl".to_string()], 4);
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

/// Prints the execution's events as they are stored, until the package ends; fires
/// `region_started` when the first "Per region" iteration starts.
async fn follow(
    coordinator: &Coordinator,
    id: &str,
    started: Instant,
    mut region_started: Option<oneshot::Sender<()>>,
) -> anyhow::Result<()> {
    use switchyard_package::engine::EventKind;
    let parent = switchyard_package::load::load_package_text(Path::new(PARENT.0), PARENT.1);
    let progress = Live::new(parent.map_or(0, |loaded| work_tasks(&loaded.package)));
    let mut live = coordinator.executions.subscribe(id);
    let mut last = 0;
    loop {
        let page = coordinator.executions.store().events_after(id, last, 0).await?;
        for stored in &page {
            last = stored.sequence;
            let e = &stored.event;
            match &e.kind {
                EventKind::TaskStarted { kind } => progress.record(TaskStep::Started { kind }),
                EventKind::TaskFinished { kind, agent, result, .. } => {
                    progress.record(TaskStep::Finished { kind, agent: agent.as_deref(), result: result.as_str() })
                }
                EventKind::TaskNotRun { .. } => progress.record(TaskStep::NotRun),
                _ => {}
            }
            let line = match &e.kind {
                EventKind::TaskStarted { kind } => format!("started   {} ({kind})", e.path),
                EventKind::TaskFinished { result, duration_ms, message, .. } => {
                    format!("{:<9} {} in {duration_ms} ms: {message}", result.as_str(), e.path)
                }
                EventKind::TaskNotRun { reason } => format!("not run   {}: {reason}", e.path),
                EventKind::PackageFinished { status, .. } if e.path.is_empty() => {
                    progress.finish();
                    say(started, &format!("package {status}"));
                    return Ok(());
                }
                _ => continue,
            };
            progress.println(&stamped(started, &line));
            if matches!(e.kind, EventKind::TaskStarted { .. })
                && e.path.starts_with(REGION_TASKS)
                && let Some(region_started) = region_started.take()
            {
                let _ = region_started.send(());
            }
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
    let mut problems = package_problems(report);
    let regions = report.children.iter().filter(|c| c.task.starts_with(REGION_TASKS)).count();
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

/// What "ran as designed" means with `--fail-agent`: the package still succeeded, every region
/// succeeded (on another agent where its child was lost), and the crashed agent shows down.
fn check_failover(
    report: &Report,
    crashed: &str,
    state: Option<AgentState>,
    crash: anyhow::Result<CrashOutcome>,
) -> anyhow::Result<()> {
    let mut problems = package_problems(report);
    let outcome = match crash {
        Ok(outcome) if outcome.crashed => outcome,
        Ok(_) => {
            problems.push(format!("agent {crashed} was never crashed: the \"Per region\" loop did not start"));
            CrashOutcome::default()
        }
        Err(e) => {
            problems.push(format!("crashing agent {crashed}: {e:#}"));
            CrashOutcome::default()
        }
    };
    if state != Some(AgentState::Down) {
        let shown = state.map_or("unknown", |s| s.as_str());
        problems.push(format!("agent {crashed} shows {shown} instead of down"));
    }
    let region_tasks: Vec<&str> =
        report.tasks.iter().map(|t| t.path.as_str()).filter(|p| p.starts_with(REGION_TASKS)).collect();
    if region_tasks.len() != 4 {
        problems.push(format!("expected 4 region iterations, found {}", region_tasks.len()));
    }
    for task in &region_tasks {
        let result = report.tasks.iter().find(|t| t.path == *task).map(|t| t.result);
        let succeeded = report.children.iter().any(|c| c.task == *task && c.status == ChildStatus::Succeeded);
        if result != Some(TaskResult::Success) || !succeeded {
            problems.push(format!("region iteration \"{task}\" ended {result:?} without a child that succeeded"));
        }
    }
    let on_crashed: Vec<_> = report.children.iter().filter(|c| c.agent.as_deref() == Some(crashed)).collect();
    for child in on_crashed.iter().filter(|c| c.status == ChildStatus::Running) {
        problems.push(format!("the child of \"{}\" on crashed agent {crashed} still shows running", child.task));
    }
    let lost: Vec<&str> =
        on_crashed.iter().filter(|c| c.status == ChildStatus::Lost).map(|c| c.task.as_str()).collect();
    for task in &lost {
        let elsewhere = report
            .children
            .iter()
            .any(|c| c.task == *task && c.status == ChildStatus::Succeeded && c.agent.as_deref() != Some(crashed));
        if !elsewhere {
            problems.push(format!("the lost child of \"{task}\" did not succeed on another agent"));
        }
    }
    let finished_first = on_crashed
        .iter()
        .filter(|c| c.run_id.as_ref().is_some_and(|r| outcome.running_then.contains(r)))
        .filter(|c| c.status != ChildStatus::Lost)
        .count();
    if !problems.is_empty() {
        bail!(problems.join("; "));
    }
    let what = match (lost.as_slice(), finished_first) {
        ([], 0) => "it ran no region child when it crashed (placement is by load), so no child was lost; \
                    try another agent to see a child lost and retried"
            .to_string(),
        ([], _) => "its region child finished just before the crash landed, so no child was lost".to_string(),
        (tasks, _) => {
            format!("the child(ren) it ran for {} were lost and succeeded on another agent", tasks.join(", "))
        }
    };
    eprintln!(
        "\nthe demo ran as designed: agent {crashed} crashed mid-run and was declared down; {what}; every region \
         succeeded and the package succeeded; the fire-and-forget child failed and the report shows it"
    );
    Ok(())
}

/// The checks both forms of the demo share: the package's tasks and its fire-and-forget child.
fn package_problems(report: &Report) -> Vec<String> {
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
    problems
}

/// The folder the demo keeps: `given` (created; refused when it holds anything already, so
/// an earlier demo's store is never resumed), or a new folder in the system's temp dir.
fn kept_data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let Some(dir) = given else {
        let dir =
            tempfile::Builder::new().prefix("switchyard-demo-").tempdir().context("creating the demo's data dir")?;
        return Ok(dir.keep());
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("--data-dir: cannot create {}", dir.display()))?;
    let mut entries = std::fs::read_dir(&dir).with_context(|| format!("--data-dir: cannot read {}", dir.display()))?;
    if entries.next().is_some() {
        bail!("--data-dir: {} is not empty; give a new or empty folder", dir.display());
    }
    Ok(std::path::absolute(&dir).unwrap_or(dir))
}

/// Writes the report as `report.json` and `report.html` in the data dir and says how to see
/// the execution again.
fn keep_report(root: &Path, id: &str, report: &Report) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(&report.to_json()).context("writing the report as JSON")?;
    for (file, text) in [("report.json", json), ("report.html", report.to_html())] {
        let path = root.join(file);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!(
        "
kept in {root}: report.json, report.html, and the coordinator's store; to see execution {id} again run          `switchyard serve --data-dir {root}/coordinator` and `switchyard report {id} --html report.html`",
        root = root.display()
    );
    Ok(())
}

/// One progress line on stderr, stamped with the time since the demo started.
pub(super) fn say(started: Instant, line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{}", stamped(started, line));
}

/// A line stamped with the time since the demo started.
fn stamped(started: Instant, line: &str) -> String {
    format!("[{:>8.3}s] {line}", started.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_data_dir_is_created_and_must_be_new_or_empty() {
        let root = tempfile::tempdir().expect("tempdir");
        let new = root.path().join("demo");
        assert_eq!(kept_data_dir(Some(new.clone())).expect("a new folder"), new);
        assert!(new.is_dir());
        std::fs::write(new.join("coordinator.db"), "").expect("write");
        let error = kept_data_dir(Some(new.clone())).expect_err("an earlier demo's folder is refused");
        assert!(error.to_string().contains("is not empty"), "{error}");
    }
}
