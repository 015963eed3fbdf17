//! Round trip: `wait = true` agent_job tasks one at a time (a chain: each `after` the previous),
//! run by a coordinator in this process over 4 agent processes; each task's time from its start to
//! its outcome (the engine's TaskStarted and TaskFinished events, read live at full precision).
//! Two children: a package run in process on the agent (one zero-length `sleep`), and the command
//! `true`. Next to them, measured in the same process run: the floor (one bare unary call at a
//! time) and what starting and reaping `true` costs here.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use switchyard_package::ExecutionStatus;
use switchyard_package::engine::EventKind;

use crate::cluster::{Cluster, JOB_COMMAND, JOB_PACKAGE, POOL};
use crate::floor::{self, percentile};

const AGENTS: usize = 4;
const SLOTS: u32 = 64;
const DEFAULT_TASKS: usize = 100;
/// Targets: p50 and p99 from start to outcome, in ms.
const TARGET_P50_MS: f64 = 1.0;
const TARGET_P99_MS: f64 = 5.0;

/// A warm-up sleep (the bench subscribes to the events meanwhile), then the chain.
fn package_text(tasks: usize, job: &str) -> String {
    let mut text = String::from(
        "[package]\nname = \"roundtrip\"\nmax_errors = 0\n\n\
         [[tasks]]\nname = \"warm-up\"\nkind = \"sleep\"\nduration = \"100ms\"\n\n",
    );
    for i in 0..tasks {
        let previous = if i == 0 { "warm-up".to_string() } else { format!("t{}", i - 1) };
        let _ = write!(
            text,
            "[[tasks]]\nname = \"t{i}\"\nkind = \"agent_job\"\npool = \"{POOL}\"\njob = \"{job}\"\nwait = true\n\
             after = [\"{previous}\"]\n\n"
        );
    }
    text
}

/// Runs the scenario and prints its figures.
pub fn run(runs: usize, tasks: Option<usize>, only: Option<&str>) {
    let tasks = tasks.unwrap_or(DEFAULT_TASKS);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!(
        "roundtrip: {tasks} wait = true agent_job tasks one at a time over {AGENTS} agent processes, start to outcome; \
         median of {runs} runs (targets: p50 under {TARGET_P50_MS} ms, p99 under {TARGET_P99_MS} ms)"
    );
    let floor = floor::measure_with_servers(&runtime, runs.clamp(1, 3));
    let spawn = spawn_true(200);
    let cluster = runtime.block_on(Cluster::start(AGENTS, SLOTS));
    println!("{:<40} {:>10} {:>10} {:>10} {:>10}", "what", "p50 ms", "p99 ms", "mean ms", "per s");
    println!(
        "{:<40} {:>10.3} {:>10.3} {:>10.3} {:>10.0}",
        "floor: one bare unary call",
        floor.serial_p50_us / 1e3,
        floor.serial_p99_us / 1e3,
        floor.serial_mean_us() / 1e3,
        floor.serial_per_s
    );
    println!(
        "{:<40} {:>10.3} {:>10.3} {:>10.3} {:>10.0}",
        "spawn and reap `true` here (no agent)",
        spawn.0,
        spawn.1,
        spawn.2,
        1e3 / spawn.2
    );
    let mut json = serde_json::Map::new();
    json.insert("floor".into(), floor.to_json());
    json.insert("spawn_true_ms".into(), serde_json::json!({ "p50": spawn.0, "p99": spawn.1, "mean": spawn.2 }));
    let jobs = [(JOB_PACKAGE, "noop package, in process"), (JOB_COMMAND, "command `true`")];
    for (job, what) in jobs.into_iter().filter(|(job, _)| only.is_none_or(|o| o == *job)) {
        let text = package_text(tasks, job);
        let (mut p50s, mut p99s, mut means) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let mut durations = runtime.block_on(one_run(&cluster, &text, tasks));
            means.push(durations.iter().sum::<f64>() / durations.len().max(1) as f64);
            durations.sort_by(f64::total_cmp);
            p50s.push(percentile(&durations, 0.50));
            p99s.push(percentile(&durations, 0.99));
        }
        let (p50, p99, mean) = (crate::median(&mut p50s), crate::median(&mut p99s), crate::median(&mut means));
        println!("{:<40} {p50:>10.3} {p99:>10.3} {mean:>10.3} {:>10.0}", format!("{job} ({what})"), 1e3 / mean);
        json.insert(
            job.to_string(),
            serde_json::json!({
                "tasks": tasks, "p50_ms": p50, "p99_ms": p99, "mean_ms": mean,
                "p50_met": p50 < TARGET_P50_MS, "p99_met": p99 < TARGET_P99_MS,
                "runs_p50_ms": p50s, "runs_p99_ms": p99s,
            }),
        );
    }
    drop(cluster);
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!("{}", serde_json::Value::Object(json));
}

/// One execution; returns each agent_job task's time from start to outcome, in ms.
async fn one_run(cluster: &Cluster, text: &str, tasks: usize) -> Vec<f64> {
    let id = cluster.start_package(text.to_string(), 4).await;
    let mut feed = cluster.coordinator.executions.subscribe(&id).expect("the execution runs");
    let mut started: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    let mut durations = Vec::with_capacity(tasks);
    loop {
        let stored = match feed.recv().await {
            Ok(stored) => stored,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => panic!("the event feed lagged by {n}"),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        };
        let event = stored.event;
        match event.kind {
            EventKind::TaskStarted { .. } if event.path.starts_with('t') => {
                started.insert(event.path, event.at);
            }
            EventKind::TaskFinished { .. } => {
                if let Some(at) = started.remove(&event.path) {
                    durations.push((event.at - at).num_nanoseconds().unwrap_or(0) as f64 / 1e6);
                }
            }
            EventKind::PackageFinished { .. } if event.path.is_empty() => break,
            _ => {}
        }
    }
    cluster.coordinator.executions.wait_finished(&id).await;
    let report = cluster.coordinator.executions.report(&id).await.expect("the report");
    assert_eq!(report.execution.status, ExecutionStatus::Succeeded, "the round-trip package must succeed");
    assert_eq!(durations.len(), tasks, "every task's start and end were seen");
    durations
}

/// Starting and reaping `true` from this process: (p50, p99, mean) in ms.
fn spawn_true(times: usize) -> (f64, f64, f64) {
    let mut samples: Vec<f64> = (0..times)
        .map(|_| {
            let at = Instant::now();
            let status = std::process::Command::new("true").status().expect("run true");
            assert!(status.success());
            at.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let mean = samples.iter().sum::<f64>() / times as f64;
    samples.sort_by(f64::total_cmp);
    (percentile(&samples, 0.50), percentile(&samples, 0.99), mean)
}
