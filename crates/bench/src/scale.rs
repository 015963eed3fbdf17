//! Scale: 1,000 agents registered with one coordinator, at idle and under a 10,000-task fan-out.
//!
//! Method: the agents are simulated, 250 to a process in 4 processes (this binary run again with
//! the hidden `__sim-agents` argument): each is its own tonic `switchyard.v1.Agent` server on its
//! own loopback port, answering GetLoad, WatchRuns and StartJob in memory (see [`sim`]), so the
//! coordinator holds 1,000 channels, 1,000 WatchRuns streams and 2,000 GetLoad calls a second
//! (heartbeat_interval 500 ms). The coordinator is the real `switchyard serve` process, with the
//! 1,000 agents as static `[[agents]]` in its coordinator.toml and default liveness settings.
//! Once ListAgents shows them all up and a settling pause has passed, the coordinator's CPU
//! (`/proc/PID/stat`, as % of one core) is read over `runs` idle windows, and its VmRSS at the
//! end of each. Then `runs` fan-outs, one after the other: a package of 10,000 fire-and-forget
//! `agent_job` tasks (`pool = "bench"`, `max_concurrent = 64`) submitted with StartExecution;
//! CPU from the submission to the execution's end (GetExecution polled every 100 ms), peak RSS
//! polled every 100 ms until every child's outcome is in the report (GetReport), starts/s from
//! the report's first task start to its last task end. Each run checks that the execution
//! succeeded, that every start was acknowledged and recorded once with its run id, that every
//! child succeeded, and counts the agents the starts went to. A further fan-out starts only
//! while the scenario would still end within 55 s. Last, one idle window after the fan-outs (the
//! memory kept). Figures are medians; the processes are started once for the whole scenario.

mod coordinator;
mod sim;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard_package::engine::ChildStatus;
use switchyard_package::{ExecutionStatus, TaskResult};

use crate::cluster::{POOL, binary, cpu_seconds, rss_kib};
use coordinator::Client;
use sim::SimAgents;

pub use sim::serve;

/// The hidden argument that makes this binary a process of simulated agents.
pub const SERVER_ARG: &str = "__sim-agents";

const PROCESSES: usize = 4;
const AGENTS_PER_PROCESS: usize = 250;
const AGENTS: usize = PROCESSES * AGENTS_PER_PROCESS;
/// Slots of each simulated agent.
const SLOTS: u32 = 4;
const TASKS: usize = 10_000;
const IN_FLIGHT: i64 = 64;
/// How long the agents may take to all come up.
const UP_DEADLINE: Duration = Duration::from_secs(30);
/// The pause between all agents up (or a fan-out's end) and an idle window.
const SETTLE: Duration = Duration::from_secs(2);
const IDLE_WINDOW: Duration = Duration::from_secs(3);
/// Further fan-out runs are skipped when they would end the scenario after this.
const BUDGET: Duration = Duration::from_secs(55);
/// Targets: idle CPU in % of one core, and resident memory.
const TARGET_IDLE_CPU_PCT: f64 = 5.0;
const TARGET_RSS_MIB: f64 = 150.0;

/// One idle window's figures.
struct Idle {
    /// The coordinator's CPU, % of one core.
    cpu_pct: f64,
    rss_mib: f64,
    /// The simulated agents' CPU, all processes, % of one core.
    sim_cpu_pct: f64,
}

/// One fan-out's figures.
struct FanOut {
    /// The coordinator's CPU from StartExecution to the execution's end, % of one core.
    cpu_pct: f64,
    cpu_us_per_start: f64,
    sim_cpu_pct: f64,
    /// Peak VmRSS from StartExecution until every outcome was recorded.
    peak_rss_mib: f64,
    starts_per_s: f64,
    /// StartExecution to the execution's end, as polled.
    wall_ms: f64,
    /// Then until every child's outcome is in the report.
    outcomes_ms: f64,
    /// Agents that got at least one start, and the most one got.
    agents_used: usize,
    max_per_agent: usize,
}

/// The processes under test and this process's client of the coordinator. The coordinator
/// comes first so it stops before its agents (fields drop in order).
struct Setup {
    coordinator: crate::cluster::Process,
    client: Client,
    sims: Vec<SimAgents>,
    up_after: Duration,
    _dir: tempfile::TempDir,
}

impl Setup {
    fn coordinator_pid(&self) -> String {
        self.coordinator.pid.to_string()
    }

    fn sim_cpu_seconds(&self) -> f64 {
        self.sims.iter().map(|s| cpu_seconds(&s.pid.to_string())).sum()
    }
}

/// Runs the scenario and prints its figures.
pub fn run(runs: usize) {
    let runs = runs.max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let coordinator_binary = binary("switchyard");
    println!(
        "scale: {AGENTS} simulated agents ({PROCESSES} processes x {AGENTS_PER_PROCESS}, {SLOTS} slots each) in the \
         coordinator.toml of `switchyard serve`; medians of up to {runs} runs (targets: idle under \
         {TARGET_IDLE_CPU_PCT}% of a core, RSS under {TARGET_RSS_MIB} MiB)"
    );
    let started = Instant::now();
    let setup = start(&runtime, &coordinator_binary);
    eprintln!("all {AGENTS} agents up {:.1} s after the coordinator started", setup.up_after.as_secs_f64());
    std::thread::sleep(SETTLE);
    let idle: Vec<Idle> = (0..runs).map(|_| measure_idle(&setup)).collect();
    let fanouts = fan_outs(&runtime, &setup, runs, started);
    let after = measure_idle(&setup);
    let elapsed = started.elapsed();
    drop(setup);
    runtime.shutdown_timeout(Duration::from_secs(2));
    print(&idle, &fanouts, runs, &after, elapsed);
}

/// Up to `runs` fan-outs, each followed by a settling pause; a further one starts only when it
/// and the last idle window should still end within [`BUDGET`] of `started`.
fn fan_outs(runtime: &tokio::runtime::Runtime, setup: &Setup, runs: usize, started: Instant) -> Vec<FanOut> {
    let text = package_text(TASKS);
    let mut samples: Vec<FanOut> = Vec::new();
    for run in 0..runs {
        if let Some(last) = samples.last() {
            let next = Duration::from_secs_f64((last.wall_ms + last.outcomes_ms) / 1e3) + SETTLE;
            if started.elapsed() + next + SETTLE + IDLE_WINDOW > BUDGET {
                eprintln!("fan-out runs stopped at {run} of {runs}: another would end the scenario after {BUDGET:?}");
                break;
            }
        }
        let sample = runtime.block_on(fan_out(setup, &text, run));
        eprintln!(
            "fan-out {}: {:.0} starts/s, {:.1} s, coordinator {:.0}% of a core, peak RSS {:.1} MiB",
            run + 1,
            sample.starts_per_s,
            sample.wall_ms / 1e3,
            sample.cpu_pct,
            sample.peak_rss_mib
        );
        samples.push(sample);
        std::thread::sleep(SETTLE);
    }
    samples
}

/// Starts the simulated agents and the coordinator, and waits until every agent is up.
fn start(runtime: &tokio::runtime::Runtime, coordinator_binary: &std::path::Path) -> Setup {
    let sims: Vec<SimAgents> =
        (0..PROCESSES).map(|p| SimAgents::spawn(AGENTS_PER_PROCESS, p * AGENTS_PER_PROCESS, SLOTS)).collect();
    let agents: Vec<(String, SocketAddr)> = sims
        .iter()
        .flat_map(|s| s.addresses.iter().enumerate().map(move |(i, a)| (sim::name(s.first + i), *a)))
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let coordinator = coordinator::spawn(coordinator_binary, dir.path(), &agents);
    let spawned = Instant::now();
    let client = runtime.block_on(Client::connect(coordinator.address));
    runtime.block_on(client.wait_all_up(AGENTS, SLOTS, UP_DEADLINE));
    Setup { coordinator, client, sims, up_after: spawned.elapsed(), _dir: dir }
}

/// One idle window: nothing is asked of the coordinator meanwhile.
fn measure_idle(setup: &Setup) -> Idle {
    let pid = setup.coordinator_pid();
    let (cpu, sim_cpu, at) = (cpu_seconds(&pid), setup.sim_cpu_seconds(), Instant::now());
    std::thread::sleep(IDLE_WINDOW);
    let seconds = at.elapsed().as_secs_f64();
    Idle {
        cpu_pct: (cpu_seconds(&pid) - cpu) / seconds * 100.0,
        rss_mib: rss_kib(setup.coordinator.pid).unwrap_or(0) as f64 / 1024.0,
        sim_cpu_pct: (setup.sim_cpu_seconds() - sim_cpu) / seconds * 100.0,
    }
}

/// A package of `tasks` fire-and-forget agent_job tasks over the pool, no constraints.
fn package_text(tasks: usize) -> String {
    let mut text = String::from("[package]\nname = \"scale\"\nmax_errors = 0\n\n");
    for i in 0..tasks {
        let _ = write!(
            text,
            "[[tasks]]\nname = \"t{i}\"\nkind = \"agent_job\"\npool = \"{POOL}\"\njob = \"{}\"\n\n",
            sim::JOB
        );
    }
    text
}

/// The highest VmRSS of a process, polled every 100 ms on a thread until stopped.
struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl PeakRss {
    fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !stopped.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak.max(rss_kib(pid).unwrap_or(0))
        });
        Self { stop, thread }
    }

    /// The peak, in MiB.
    fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the RSS sampler") as f64 / 1024.0
    }
}

/// One execution of the fan-out package, checked.
async fn fan_out(setup: &Setup, text: &str, run: usize) -> FanOut {
    let pid = setup.coordinator_pid();
    let peak = PeakRss::start(setup.coordinator.pid);
    let (cpu, sim_cpu, at) = (cpu_seconds(&pid), setup.sim_cpu_seconds(), Instant::now());
    let request_id = format!("scale-{}-{run}", std::process::id());
    let id = setup.client.start_execution(text.to_string(), IN_FLIGHT, request_id).await;
    let execution = setup.client.wait_ended(&id, Duration::from_secs(60)).await;
    let wall = at.elapsed();
    let cpu_used = cpu_seconds(&pid) - cpu;
    let sim_cpu_used = setup.sim_cpu_seconds() - sim_cpu;
    let ended = Instant::now();
    let report = setup.client.wait_for_outcomes(&id, TASKS, Duration::from_secs(30)).await;
    let outcomes = ended.elapsed();
    let peak_rss_mib = peak.finish();
    assert_eq!(execution.status, "succeeded", "the fan-out package must succeed");
    let (agents_used, max_per_agent) = check(&report);
    FanOut {
        cpu_pct: cpu_used / wall.as_secs_f64() * 100.0,
        cpu_us_per_start: cpu_used * 1e6 / TASKS as f64,
        sim_cpu_pct: sim_cpu_used / wall.as_secs_f64() * 100.0,
        peak_rss_mib,
        starts_per_s: TASKS as f64 / crate::cluster::start_window_s(&report),
        wall_ms: wall.as_secs_f64() * 1e3,
        outcomes_ms: outcomes.as_secs_f64() * 1e3,
        agents_used,
        max_per_agent,
    }
}

/// Checks a fan-out's report: succeeded, every start acknowledged and recorded once with its run
/// id, every child succeeded. Returns the agents used and the most starts one agent got.
fn check(report: &switchyard_coordinator::report::Report) -> (usize, usize) {
    assert_eq!(report.execution.status, ExecutionStatus::Succeeded, "the fan-out package must succeed");
    assert_eq!(report.tasks.len(), TASKS);
    assert!(report.tasks.iter().all(|t| t.result == TaskResult::Success), "every start must be acknowledged");
    let run_ids: HashSet<&str> = report.children.iter().filter_map(|c| c.run_id.as_deref()).collect();
    assert_eq!(run_ids.len(), TASKS, "one recorded child run per start");
    let unfinished = report.children.iter().filter(|c| c.status != ChildStatus::Succeeded).count();
    assert_eq!(unfinished, 0, "every child's outcome must be recorded as succeeded");
    let mut per_agent: HashMap<&str, usize> = HashMap::new();
    for child in &report.children {
        *per_agent.entry(child.agent.as_deref().unwrap_or("-")).or_default() += 1;
    }
    (per_agent.len(), per_agent.values().copied().max().unwrap_or(0))
}

fn met(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// One table row: a label and its columns, already formatted.
fn line(label: &str, columns: [&str; 9]) {
    let [cpu, rss, sim, rate, wall, outcomes, agents, target, met] = columns;
    println!(
        "{label:<36} {cpu:>9} {rss:>10} {sim:>9} {rate:>8} {wall:>8} {outcomes:>7} {agents:>12} {target:>15} {met:>4}"
    );
}

/// Prints the table and the JSON line.
fn print(idle: &[Idle], fanouts: &[FanOut], runs: usize, after: &Idle, elapsed: Duration) {
    let median = |mut values: Vec<f64>| crate::median(&mut values);
    let idle_cpu = median(idle.iter().map(|s| s.cpu_pct).collect());
    let idle_rss = median(idle.iter().map(|s| s.rss_mib).collect());
    let idle_sim = median(idle.iter().map(|s| s.sim_cpu_pct).collect());
    let f = |field: fn(&FanOut) -> f64| median(fanouts.iter().map(field).collect());
    let (cpu, cpu_us, sim_cpu, peak) =
        (f(|s| s.cpu_pct), f(|s| s.cpu_us_per_start), f(|s| s.sim_cpu_pct), f(|s| s.peak_rss_mib));
    let (rate, wall, outcomes) = (f(|s| s.starts_per_s), f(|s| s.wall_ms), f(|s| s.outcomes_ms));
    let (used, most) = (f(|s| s.agents_used as f64), f(|s| s.max_per_agent as f64));
    let idle_target = format!("<{TARGET_IDLE_CPU_PCT}%, <{TARGET_RSS_MIB}");
    let idle_met = |cpu: f64, rss: f64| met(cpu < TARGET_IDLE_CPU_PCT && rss < TARGET_RSS_MIB);
    let none = "-";
    line(
        "coordinator",
        ["CPU %core", "RSS MiB", "sim %core", "starts/s", "wall ms", "outc ms", "agents used", "target", "met"],
    );
    line(
        &format!("idle, {AGENTS} agents up ({} runs)", idle.len()),
        [
            &fmt(idle_cpu, 2),
            &fmt(idle_rss, 1),
            &fmt(idle_sim, 1),
            none,
            none,
            none,
            none,
            &idle_target,
            idle_met(idle_cpu, idle_rss),
        ],
    );
    line(
        &format!("{TASKS}-task fan-out ({} of {runs} runs)", fanouts.len()),
        [
            &fmt(cpu, 1),
            &format!("{peak:.1} peak"),
            &fmt(sim_cpu, 1),
            &fmt(rate, 0),
            &fmt(wall, 0),
            &fmt(outcomes, 0),
            &format!("{used:.0} (max {most:.0})"),
            &format!("<{TARGET_RSS_MIB} peak"),
            met(peak < TARGET_RSS_MIB),
        ],
    );
    line(
        "idle after the fan-outs (1 run)",
        [
            &fmt(after.cpu_pct, 2),
            &fmt(after.rss_mib, 1),
            &fmt(after.sim_cpu_pct, 1),
            none,
            none,
            none,
            none,
            &idle_target,
            idle_met(after.cpu_pct, after.rss_mib),
        ],
    );
    println!(
        "CPU %core: the coordinator process, % of one core (idle: {} s windows; fan-out: StartExecution to the \
         execution's end, {cpu_us:.0} µs per start, {IN_FLIGHT} in flight); RSS: VmRSS (fan-out: peak until every \
         outcome was recorded); sim %core: the {PROCESSES} simulated-agent processes together; agents used: agents \
         that got a start (the most one got); scenario {:.1} s",
        IDLE_WINDOW.as_secs(),
        elapsed.as_secs_f64()
    );
    println!(
        "{}",
        serde_json::json!({
            "agents": AGENTS, "tasks": TASKS, "in_flight": IN_FLIGHT,
            "idle": {"cpu_pct_of_core": idle_cpu, "rss_mib": idle_rss, "sim_cpu_pct_of_core": idle_sim,
                     "cpu_met": idle_cpu < TARGET_IDLE_CPU_PCT, "rss_met": idle_rss < TARGET_RSS_MIB,
                     "runs_cpu_pct": idle.iter().map(|s| s.cpu_pct).collect::<Vec<_>>()},
            "fanout": {"runs": fanouts.len(), "cpu_pct_of_core": cpu, "cpu_us_per_start": cpu_us,
                       "sim_cpu_pct_of_core": sim_cpu, "peak_rss_mib": peak, "rss_met": peak < TARGET_RSS_MIB,
                       "starts_per_s": rate, "wall_ms": wall, "outcomes_ms": outcomes, "agents_used": used,
                       "max_per_agent": most,
                       "runs_starts_per_s": fanouts.iter().map(|s| s.starts_per_s).collect::<Vec<_>>()},
            "idle_after": {"cpu_pct_of_core": after.cpu_pct, "rss_mib": after.rss_mib,
                           "sim_cpu_pct_of_core": after.sim_cpu_pct,
                           "met": after.cpu_pct < TARGET_IDLE_CPU_PCT && after.rss_mib < TARGET_RSS_MIB},
            "targets": {"idle_cpu_pct_of_core": TARGET_IDLE_CPU_PCT, "rss_mib": TARGET_RSS_MIB},
            "scenario_s": elapsed.as_secs_f64(),
        })
    );
}

fn fmt(value: f64, decimals: usize) -> String {
    format!("{value:.decimals$}")
}
