//! The demo's crashable agent (`switchyard demo --fail-agent NAME`). An agent in the demo's own
//! process cannot crash without taking the demo down, so the agent to crash runs as a child
//! process: the hidden `switchyard __demo-agent` subcommand serves it, [`AgentProcess`] starts and
//! reaps it, and [`crash_mid_run`] crashes it through InjectFault once the "Per region" loop runs,
//! then narrates what the coordinator makes of it.
//!
//! Invariant: the child process never outlives the demo. It is killed when [`AgentProcess`] is
//! dropped or stopped, and it stops by itself when its stdin closes (the demo died), so even a
//! `kill -9` of the demo leaves no agent behind.

use std::collections::HashSet;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use switchyard_agent::config::AgentConfig;
use switchyard_coordinator::registry::AgentState;
use switchyard_coordinator::server::Coordinator;
use switchyard_package::engine::{ChildRecord, ChildStatus, ExecutionStatus};
use switchyard_proto as pb;
use switchyard_settings::Settings;

use super::demo::say;
use super::exit;

/// The hidden subcommand's name: what the demo runs its crashable agent with.
pub const SUBCOMMAND: &str = "__demo-agent";

/// The task paths of the foreach iterations the crash aims at.
pub const REGION_TASKS: &str = "Per region[";

/// What the agent prints on stderr once its port is bound, for the demo to read.
const LISTENING: &str = "listening on ";

/// How long the child process may take to bind its port.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// Arguments of the hidden `switchyard __demo-agent`: one demo agent, served in this process.
#[derive(Debug, clap::Args)]
pub struct DemoAgentArgs {
    /// The agent's name.
    #[arg(long)]
    pub name: String,
    /// The address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The agent's folder: its database under data/, its jobs and packages beside.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Labels (comma-separated) that pools select agents by.
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Jobs run at once.
    #[arg(long)]
    pub slots: u32,
}

/// The configuration of every demo agent, in this process or in a child process.
pub fn agent_config(name: &str, listen: SocketAddr, home: &Path, labels: Vec<String>, slots: u32) -> AgentConfig {
    AgentConfig {
        name: name.to_string(),
        listen,
        data_dir: home.join("data"),
        jobs_dir: home.join("jobs"),
        packages_dir: home.join("packages"),
        labels,
        slots,
        allow_fault_injection: true,
        shutdown_grace: Duration::from_secs(2),
        ..AgentConfig::default()
    }
}

/// Runs the hidden subcommand; returns the exit code.
pub async fn run(args: DemoAgentArgs) -> u8 {
    match serve(args).await {
        Ok(()) => exit::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit::FAILURE
        }
    }
}

async fn serve(args: DemoAgentArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let config = agent_config(&args.name, address, &args.data_dir, args.labels, args.slots);
    config.validate().context("the demo agent's config")?;
    let shutdown = CancellationToken::new();
    stop_when_stdin_closes(shutdown.clone());
    eprintln!("{LISTENING}{address}");
    switchyard_agent::serve(listener, config, shutdown).await.with_context(|| format!("agent \"{}\"", args.name))?;
    Ok(())
}

/// The demo holds the write end of our stdin: end of file means the demo is gone. A plain thread,
/// because a blocking read on the runtime's blocking pool would hold up the runtime's shutdown.
fn stop_when_stdin_closes(shutdown: CancellationToken) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buffer), Ok(n) if n > 0) {}
        shutdown.cancel();
    });
}

/// How and when the agent's process ended.
#[derive(Debug, Clone)]
pub struct Ended {
    pub at: Instant,
    pub how: String,
}

/// A demo agent running as a child process of the demo: killed on drop.
pub struct AgentProcess {
    pub name: String,
    pub address: SocketAddr,
    pub pid: u32,
    ended: watch::Receiver<Option<Ended>>,
    stop: CancellationToken,
}

impl AgentProcess {
    /// Starts `switchyard __demo-agent` for `name` under `root` and waits (bounded) for its port.
    pub async fn spawn(root: &Path, name: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding the switchyard binary to run an agent process")?;
        let home = root.join(name);
        let mut child = tokio::process::Command::new(&exe)
            .arg(SUBCOMMAND)
            .args(["--name", name, "--listen", "127.0.0.1:0", "--labels", "etl", "--slots", "4", "--data-dir"])
            .arg(&home)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting agent {name} as a process of {}", exe.display()))?;
        let pid = child.id().context("the agent process ended at once")?;
        let stdin = child.stdin.take().context("the agent process has no stdin")?;
        let stderr = child.stderr.take().context("the agent process has no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let prefix = format!("  [{name}] ");
        let listening = tokio::time::timeout(START_DEADLINE, async {
            while let Some(line) = lines.next_line().await? {
                match line.strip_prefix(LISTENING) {
                    Some(address) => return address.trim().parse::<SocketAddr>().map_err(anyhow::Error::from),
                    None => eprintln!("{prefix}{line}"),
                }
            }
            bail!("its process ended before listening")
        })
        .await;
        // On an error `child` is dropped here, which kills it.
        let address = match listening {
            Ok(address) => address.with_context(|| format!("starting agent {name}"))?,
            Err(_) => bail!("agent {name} did not listen within {} s", START_DEADLINE.as_secs()),
        };
        // Whatever the agent logs from now on (its "simulated crash" warning) shows in the demo.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("{prefix}{line}");
            }
        });
        let (ended_tx, ended) = watch::channel(None);
        let stop = CancellationToken::new();
        let stopping = stop.clone();
        tokio::spawn(async move {
            // Closing stdin is the child's signal that the demo is gone; keep it open until then.
            let _stdin = stdin;
            let status = tokio::select! {
                status = child.wait() => status,
                _ = stopping.cancelled() => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let how = match status {
                Ok(status) => describe(status),
                Err(e) => format!("cannot be waited for: {e}"),
            };
            let _ = ended_tx.send(Some(Ended { at: Instant::now(), how }));
        });
        Ok(Self { name: name.to_string(), address, pid, ended, stop })
    }

    /// Waits (bounded) until the process has ended.
    pub async fn ended(&self, deadline: Duration) -> Option<Ended> {
        let mut ended = self.ended.clone();
        let waited = tokio::time::timeout(deadline, ended.wait_for(Option::is_some)).await;
        waited.ok().and_then(|r| r.ok()).and_then(|e| e.clone())
    }

    /// Kills the process if it still runs, and reaps it.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.ended(Duration::from_secs(5)).await;
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // The reaping task kills it; if the runtime is already gone, kill_on_drop does.
        self.stop.cancel();
    }
}

/// What the crash hit.
#[derive(Debug, Default)]
pub struct CrashOutcome {
    /// Whether the crash was asked for (the "Per region" loop started).
    pub crashed: bool,
    /// Region children that ran on the agent when it was crashed.
    pub running_then: Vec<String>,
}

/// Once `region_started` fires (the first "Per region" iteration started), waits briefly for a
/// region child to run on the agent, crashes the agent through InjectFault, and narrates what
/// follows: the process's end, the coordinator declaring it down, lost children and their retries.
pub async fn crash_mid_run(
    coordinator: &Coordinator,
    execution_id: &str,
    agent: &AgentProcess,
    region_started: oneshot::Receiver<()>,
    started: Instant,
) -> anyhow::Result<CrashOutcome> {
    if region_started.await.is_err() {
        // The package ended before its "Per region" loop: there was nothing to crash into.
        return Ok(CrashOutcome::default());
    }
    let name = agent.name.as_str();
    // Placement is by load: give the iterations a moment to land, and crash as soon as one runs
    // here. Each region child runs for 200 ms, so crashing at once hits it while it runs.
    let placed = Instant::now() + Duration::from_millis(150);
    let running_then = loop {
        let running = region_children(coordinator, execution_id, name, ChildStatus::Running).await?;
        if !running.is_empty() || Instant::now() > placed {
            break running;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let what = match running_then.as_slice() {
        [] => "no region child runs there right now (placement is by load)".to_string(),
        children => format!("it runs {}", children.iter().map(|c| c.task.as_str()).collect::<Vec<_>>().join(", ")),
    };
    say(started, &format!("crashing agent {name} now (simulated remote-server failure): {what}"));
    let asked = Instant::now();
    inject_crash(coordinator, name).await?;
    // Watched side by side: the registry may see the crash before this process reaps the agent.
    let down = wait_until_down(coordinator, name, started);
    tokio::pin!(down);
    let mut down_at = None;
    let ended = tokio::select! {
        ended = agent.ended(Duration::from_secs(5)) => ended,
        seen = &mut down => {
            down_at = Some(seen);
            agent.ended(Duration::from_secs(5)).await
        }
    };
    let Some(ended) = ended else {
        bail!("agent {name} (pid {}) was asked to crash but its process still runs after 5 s", agent.pid);
    };
    say(
        started,
        &format!(
            "agent {name}'s process (pid {}) ended: {}, {} ms after the crash request",
            agent.pid,
            ended.how,
            ended.at.saturating_duration_since(asked).as_millis()
        ),
    );
    let down_at = match down_at {
        Some(seen) => seen,
        None => down.await,
    };
    let down_at = down_at?;
    let why = coordinator.registry.agent(name).and_then(|a| a.last_error).unwrap_or_default();
    let latency = match down_at.checked_duration_since(ended.at) {
        Some(after) => format!("{} ms after its process ended", after.as_millis()),
        None => format!("{} ms before this demo reaped its process", ended.at.duration_since(down_at).as_millis()),
    };
    say(started, &format!("coordinator declared {name} down {latency} ({why})"));
    narrate_failover(coordinator, execution_id, name, started).await?;
    let running_then = running_then.into_iter().filter_map(|c| c.run_id).collect();
    Ok(CrashOutcome { crashed: true, running_then })
}

/// Asks the agent to crash. Its answer may be lost in the crash: that is no failure.
async fn inject_crash(coordinator: &Coordinator, name: &str) -> anyhow::Result<()> {
    let mut client = coordinator.registry.client(name).with_context(|| format!("no client for agent {name}"))?;
    let mut call =
        tonic::Request::new(pb::InjectFaultRequest { kind: pb::FaultKind::Crash as i32, duration_ms: 0, delay_ms: 0 });
    call.set_timeout(Duration::from_secs(2));
    match client.inject_fault(call).await {
        Ok(_) => Ok(()),
        Err(status)
            if matches!(status.code(), tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled) =>
        {
            Ok(())
        }
        Err(status) => bail!("agent {name} did not take the crash fault: {}", status.message()),
    }
}

/// Waits (bounded) until the registry shows the agent down, printing why it holds the agent in
/// doubt meanwhile; returns when it first saw it down.
async fn wait_until_down(coordinator: &Coordinator, name: &str, started: Instant) -> anyhow::Result<Instant> {
    // A refused probe declares it down in milliseconds; `down_after` (2 s) bounds a silent one.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut doubt = None;
    loop {
        let changed = coordinator.registry.wait_changed();
        let agent = coordinator.registry.agent(name);
        let state = agent.as_ref().map(|a| a.state);
        if state == Some(AgentState::Down) {
            return Ok(Instant::now());
        }
        if state == Some(AgentState::Suspect) {
            let why = agent.and_then(|a| a.last_error);
            if why.is_some() && why != doubt {
                say(started, &format!("registry holds {name} suspect: {}", why.as_deref().unwrap_or_default()));
                doubt = why;
            }
        }
        if Instant::now() > deadline {
            bail!("the coordinator did not declare agent {name} down within 10 s (it shows {state:?})");
        }
        // Woken by the registry's changes; polled too, as a changed reason alone may not notify.
        let _ = tokio::time::timeout(Duration::from_millis(5), changed).await;
    }
}

/// Prints each region child lost with the agent, then where its retry went, until every lost
/// child's task has a retry placed or the execution has ended.
async fn narrate_failover(
    coordinator: &Coordinator,
    execution_id: &str,
    name: &str,
    started: Instant,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut lost: Vec<ChildRecord> = Vec::new();
    let mut retried: HashSet<String> = HashSet::new();
    loop {
        let report = coordinator.executions.report(execution_id).await?;
        for child in report.children.iter().filter(|c| is_region_child_on(c, name) && c.status == ChildStatus::Lost) {
            if !lost.iter().any(|l| l.run_id == child.run_id) {
                say(started, &format!("lost      {} with agent {name}; retrying on another agent", child.task));
                lost.push(child.clone());
            }
        }
        for task in lost.iter().map(|c| &c.task) {
            let retry = report.children.iter().find(|c| c.task == *task && c.agent.as_deref() != Some(name));
            if let Some(retry) = retry
                && retried.insert(task.clone())
            {
                let on = retry.agent.as_deref().unwrap_or("-");
                say(started, &format!("retried   {task} on agent {on}"));
            }
        }
        let finished = report.execution.status != ExecutionStatus::Running;
        let still_running_here =
            report.children.iter().any(|c| is_region_child_on(c, name) && c.status == ChildStatus::Running);
        if (!still_running_here && retried.len() == lost.len()) || finished || Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn region_children(
    coordinator: &Coordinator,
    execution_id: &str,
    agent: &str,
    status: ChildStatus,
) -> anyhow::Result<Vec<ChildRecord>> {
    let report = coordinator.executions.report(execution_id).await?;
    Ok(report.children.into_iter().filter(|c| is_region_child_on(c, agent) && c.status == status).collect())
}

fn is_region_child_on(child: &ChildRecord, agent: &str) -> bool {
    child.task.starts_with(REGION_TASKS) && child.agent.as_deref() == Some(agent)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                6 => " (SIGABRT)",
                9 => " (SIGKILL)",
                15 => " (SIGTERM)",
                _ => "",
            };
            format!("killed by signal {signal}{name}")
        }
        (None, None) => format!("ended ({status})"),
    }
}
