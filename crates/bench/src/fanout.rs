//! Fan-out: a parent package of N fire-and-forget `agent_job` tasks (no constraints, so bounded
//! by `max_concurrent = 64`: 64 starts in flight) run by a coordinator in this process over a pool
//! of 4 agent processes. Each start is acknowledged only after the agent committed it, and the
//! coordinator records each child run; the figure is starts acknowledged per second, next to the
//! floor's 64-in-flight figure measured first in the same process run.
//!
//! Rows: the headline child is a package run in process on the agent (one zero-length `sleep`);
//! then the command `true` (a process per run); then, for diagnosis, a package that sleeps for an
//! hour (its runs hold their slots and never finish, so the agents only accept starts; a fresh
//! cluster each run), and the same StartJob calls sent straight from this process to the agents
//! (16 in flight on one channel per agent, no coordinator): the agents' share of a start.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchyard_package::engine::ChildStatus;
use switchyard_package::{ExecutionStatus, TaskResult};
use switchyard_proto as pb;

use crate::cluster::{Cluster, JOB_COMMAND, JOB_HOLD, JOB_PACKAGE, POOL, cpu_seconds, writes};
use crate::floor;

const AGENTS: usize = 4;
const SLOTS: u32 = 256;
const IN_FLIGHT: usize = 64;
const DEFAULT_TASKS: usize = 10_000;
/// Tasks of the diagnostic rows (and of the `true` row), which need not be as long.
const DIAGNOSTIC_TASKS: usize = 2_000;
/// What the scenario compares with the floor.
const TARGET: f64 = 0.6;

/// How a row starts its children.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// A package through the coordinator, on the cluster the rows share; children run to the end.
    Package,
    /// A package through the coordinator whose children never end: a fresh cluster each run.
    Holding,
    /// StartJob calls from this process, no coordinator: a fresh cluster each run.
    Direct,
}

struct Row {
    key: &'static str,
    label: &'static str,
    job: &'static str,
    mode: Mode,
    tasks: usize,
}

fn package_text(tasks: usize, job: &str) -> String {
    let mut text = String::from("[package]\nname = \"fanout\"\nmax_errors = 0\n\n");
    for i in 0..tasks {
        let _ =
            write!(text, "[[tasks]]\nname = \"t{i}\"\nkind = \"agent_job\"\npool = \"{POOL}\"\njob = \"{job}\"\n\n");
    }
    text
}

/// One run's figures. Resources are counted from the StartExecution call (or the first direct
/// start) to the execution's end (or the last acknowledgement).
struct Sample {
    /// Starts acknowledged per second.
    starts_per_s: f64,
    /// From the StartExecution call to the execution's end (load and final writes included).
    wall_ms: f64,
    /// From the execution's end until every child's outcome was recorded.
    outcomes_ms: f64,
    /// Each start's latency: median and 99th percentile (through the coordinator: its task's
    /// duration, in whole milliseconds).
    p50_ms: f64,
    p99_ms: f64,
    /// Per start: CPU of this process (the coordinator, or the bare client) and of the agents,
    /// and the agents' write calls and KiB written (the children's runs included, as far as they
    /// happened meanwhile).
    coordinator_cpu_us: f64,
    agents_cpu_us: f64,
    agents_write_calls: f64,
    agents_write_kib: f64,
    per_agent: Vec<usize>,
}

/// Counts CPU and writes of this process and the agents over a stretch of time.
struct Meter {
    agent_pids: Vec<String>,
    coordinator: f64,
    agents: f64,
    writes: (f64, f64),
}

impl Meter {
    fn start(cluster: &Cluster) -> Self {
        let agent_pids: Vec<String> = cluster.agents.iter().map(|a| a.pid.to_string()).collect();
        let (agents, writes) = Self::agents(&agent_pids);
        Self { coordinator: cpu_seconds("self"), agents, writes, agent_pids }
    }

    fn agents(pids: &[String]) -> (f64, (f64, f64)) {
        let cpu = pids.iter().map(|p| cpu_seconds(p)).sum();
        let written = pids.iter().map(|p| writes(p)).fold((0.0, 0.0), |a, w| (a.0 + w.0, a.1 + w.1));
        (cpu, written)
    }

    /// Per start: (this process's CPU µs, the agents' CPU µs, write calls, KiB written).
    fn per_start(&self, starts: usize) -> (f64, f64, f64, f64) {
        let n = starts as f64;
        let (agents, written) = Self::agents(&self.agent_pids);
        (
            (cpu_seconds("self") - self.coordinator) * 1e6 / n,
            (agents - self.agents) * 1e6 / n,
            (written.0 - self.writes.0) / n,
            (written.1 - self.writes.1) / 1024.0 / n,
        )
    }
}

/// Runs the scenario and prints its figures.
pub fn run(runs: usize, tasks: Option<usize>, only: Option<&str>) {
    let tasks = tasks.unwrap_or(DEFAULT_TASKS);
    let diagnostic = tasks.min(DIAGNOSTIC_TASKS);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!(
        "fanout: fire-and-forget agent_job tasks, {IN_FLIGHT} in flight, over {AGENTS} agent processes; \
         median of {runs} runs (target: at least {TARGET} of the floor at {IN_FLIGHT} in flight)"
    );
    let floor = floor::measure_with_servers(&runtime, runs.clamp(1, 3));
    let rows = [
        Row { key: JOB_PACKAGE, label: "noop package, in process", job: JOB_PACKAGE, mode: Mode::Package, tasks },
        Row { key: JOB_COMMAND, label: "command `true`", job: JOB_COMMAND, mode: Mode::Package, tasks: diagnostic },
        Row { key: "hold", label: "1 h sleep: starts only", job: JOB_HOLD, mode: Mode::Holding, tasks: diagnostic },
        Row {
            key: "direct",
            label: "StartJob direct, no coord.",
            job: JOB_HOLD,
            mode: Mode::Direct,
            tasks: diagnostic,
        },
    ];
    println!(
        "{:<28} {:>6} {:>9} {:>8} {:>11} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>20}",
        "child job",
        "tasks",
        "starts/s",
        "of floor",
        "p50/p99 ms",
        "wall ms",
        "outc ms",
        "coord µs",
        "agent µs",
        "writes",
        "KiB",
        "starts per agent"
    );
    let in_flight_mean_ms = IN_FLIGHT as f64 * 1e3 / floor.parallel_per_s;
    println!(
        "{:<28} {:>6} {:>9.0} {:>8} {:>11} {:>8} {:>8} {:>9} {:>9} {:>7} {:>7} {:>20}",
        "floor: health Check",
        "-",
        floor.parallel_per_s,
        "1.00",
        format!("{in_flight_mean_ms:.1} mean"),
        "-",
        "-",
        "-",
        "-",
        "-",
        "-",
        "-"
    );
    let mut json = serde_json::Map::new();
    json.insert("floor".into(), floor.to_json());
    let mut shared: Option<Cluster> = None;
    for row in rows.iter().filter(|r| only.is_none_or(|o| o == r.key)) {
        let text = package_text(row.tasks, row.job);
        let mut samples: Vec<Sample> = Vec::new();
        for run in 0..runs {
            let sample = match row.mode {
                Mode::Package => {
                    let cluster = shared.get_or_insert_with(|| runtime.block_on(Cluster::start(AGENTS, SLOTS)));
                    runtime.block_on(through_coordinator(cluster, &text, row.tasks, true))
                }
                Mode::Holding => {
                    // Every run keeps its slot: a cluster of its own, with room for all of them.
                    let cluster = runtime.block_on(Cluster::start(AGENTS, row.tasks as u32));
                    runtime.block_on(through_coordinator(&cluster, &text, row.tasks, false))
                }
                Mode::Direct => {
                    let cluster = runtime.block_on(Cluster::start(AGENTS, row.tasks as u32));
                    runtime.block_on(direct(&cluster, row.job, row.tasks, run))
                }
            };
            samples.push(sample);
        }
        let median = |f: fn(&Sample) -> f64| crate::median(&mut samples.iter().map(f).collect::<Vec<f64>>());
        let rate = median(|s| s.starts_per_s);
        let ratio = rate / floor.parallel_per_s;
        let (p50, p99) = (median(|s| s.p50_ms), median(|s| s.p99_ms));
        let (wall, outcomes) = (median(|s| s.wall_ms), median(|s| s.outcomes_ms));
        let (coordinator_cpu, agents_cpu) = (median(|s| s.coordinator_cpu_us), median(|s| s.agents_cpu_us));
        let (write_calls, write_kib) = (median(|s| s.agents_write_calls), median(|s| s.agents_write_kib));
        let spread = samples.last().map(|s| s.per_agent.clone()).unwrap_or_default();
        let spread_text = spread.iter().map(usize::to_string).collect::<Vec<_>>().join("/");
        let shown = |v: f64, used: bool| if used { format!("{v:.0}") } else { "-".to_string() };
        println!(
            "{:<28} {:>6} {rate:>9.0} {ratio:>8.2} {:>11} {:>8} {:>8} {coordinator_cpu:>9.0} {agents_cpu:>9.0} \
             {write_calls:>7.1} {write_kib:>7.1} {spread_text:>20}",
            row.label,
            row.tasks,
            if row.mode == Mode::Direct { format!("{p50:.1}/{p99:.1}") } else { format!("{p50:.0}/{p99:.0}") },
            shown(wall, row.mode != Mode::Direct),
            shown(outcomes, row.mode == Mode::Package),
        );
        json.insert(
            row.key.to_string(),
            serde_json::json!({
                "job": row.job, "tasks": row.tasks, "in_flight": IN_FLIGHT, "starts_per_s": rate,
                "ratio_to_floor": ratio, "target_met": ratio >= TARGET, "start_p50_ms": p50, "start_p99_ms": p99,
                "wall_ms": wall, "outcomes_ms": outcomes, "coordinator_cpu_us_per_start": coordinator_cpu,
                "agents_cpu_us_per_start": agents_cpu, "agents_write_calls_per_start": write_calls,
                "agents_write_kib_per_start": write_kib, "per_agent": spread,
                "runs_starts_per_s": samples.iter().map(|s| s.starts_per_s).collect::<Vec<_>>(),
            }),
        );
    }
    drop(shared);
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!(
        "wall: StartExecution to the execution's end; outc: then until every outcome is recorded; coord µs: CPU of \
         this process per start (the coordinator, or the bare client); agent µs, writes, KiB: the agents' CPU, \
         write calls and KiB written per start"
    );
    println!("{}", serde_json::Value::Object(json));
}

/// One execution of the fan-out package. With `ended`, waits for every child to succeed.
async fn through_coordinator(cluster: &Cluster, text: &str, tasks: usize, ended: bool) -> Sample {
    let meter = Meter::start(cluster);
    let started = Instant::now();
    let id = cluster.start_package(text.to_string(), IN_FLIGHT as i64).await;
    cluster.coordinator.executions.wait_finished(&id).await;
    let wall_ms = started.elapsed().as_secs_f64() * 1e3;
    let (coordinator_cpu_us, agents_cpu_us, agents_write_calls, agents_write_kib) = meter.per_start(tasks);
    let finished = Instant::now();
    let report = cluster.wait_for_children(&id, tasks, ended, Duration::from_secs(60)).await;
    let outcomes_ms = finished.elapsed().as_secs_f64() * 1e3;
    // Every start acknowledged (its task succeeded) and recorded by the coordinator with the run id
    // the agent gives only once it committed the run; with `ended`, every child ran to success.
    assert_eq!(report.execution.status, ExecutionStatus::Succeeded, "the fan-out package must succeed");
    assert_eq!(report.tasks.len(), tasks);
    assert!(report.tasks.iter().all(|t| t.result == TaskResult::Success), "every start must be acknowledged");
    let run_ids: HashSet<&str> = report.children.iter().filter_map(|c| c.run_id.as_deref()).collect();
    assert_eq!(run_ids.len(), tasks, "one recorded child run per start");
    if ended {
        assert!(report.children.iter().all(|c| c.status == ChildStatus::Succeeded), "every child must succeed");
    }
    let window_s = crate::cluster::start_window_s(&report);
    let mut latencies: Vec<f64> = report.tasks.iter().filter_map(|t| t.duration_ms).map(|d| d as f64).collect();
    latencies.sort_by(f64::total_cmp);
    let mut per_agent: HashMap<&str, usize> = HashMap::new();
    for child in &report.children {
        *per_agent.entry(child.agent.as_deref().unwrap_or("-")).or_default() += 1;
    }
    let mut per_agent: Vec<(&str, usize)> = per_agent.into_iter().collect();
    per_agent.sort();
    Sample {
        starts_per_s: tasks as f64 / window_s,
        wall_ms,
        outcomes_ms,
        p50_ms: floor::percentile(&latencies, 0.50),
        p99_ms: floor::percentile(&latencies, 0.99),
        coordinator_cpu_us,
        agents_cpu_us,
        agents_write_calls,
        agents_write_kib,
        per_agent: per_agent.into_iter().map(|(_, n)| n).collect(),
    }
}

/// StartJob calls straight to the agents, 16 in flight on one channel per agent.
async fn direct(cluster: &Cluster, job: &str, tasks: usize, run: usize) -> Sample {
    let mut clients = Vec::new();
    for agent in &cluster.agents {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", agent.address))
            .expect("an endpoint")
            .tcp_nodelay(true)
            .connect()
            .await
            .expect("connect to an agent");
        clients.push(pb::agent_client::AgentClient::new(channel));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let meter = Meter::start(cluster);
    let started = Instant::now();
    let mut loops = Vec::new();
    for (a, client) in clients.iter().enumerate() {
        for _ in 0..IN_FLIGHT / AGENTS {
            let (mut client, next, job) = (client.clone(), next.clone(), job.to_string());
            loops.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= tasks {
                        return latencies;
                    }
                    let request = pb::StartJobRequest {
                        job: job.clone(),
                        idempotency_key: format!("direct/{run}/{a}/{i}"),
                        requested_by: "bench".into(),
                        task_path: format!("t{i}"),
                        ..pb::StartJobRequest::default()
                    };
                    let at = Instant::now();
                    client.start_job(request).await.expect("the agent accepts the start");
                    latencies.push(at.elapsed().as_secs_f64() * 1e3);
                }
            }));
        }
    }
    let mut latencies = Vec::with_capacity(tasks);
    for l in loops {
        latencies.extend(l.await.expect("a start loop"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (coordinator_cpu_us, agents_cpu_us, agents_write_calls, agents_write_kib) = meter.per_start(tasks);
    latencies.sort_by(f64::total_cmp);
    Sample {
        starts_per_s: tasks as f64 / elapsed,
        wall_ms: elapsed * 1e3,
        outcomes_ms: 0.0,
        p50_ms: floor::percentile(&latencies, 0.50),
        p99_ms: floor::percentile(&latencies, 0.99),
        coordinator_cpu_us,
        agents_cpu_us,
        agents_write_calls,
        agents_write_kib,
        per_agent: vec![tasks / AGENTS; AGENTS],
    }
}
