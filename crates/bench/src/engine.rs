//! Engine overhead: packages of 10,000 zero-length tasks, wide (no constraints) and chained
//! (each after the previous), loaded once and run several times; figures are medians.

use std::fmt::Write as _;
use std::time::Instant;

use switchyard_package::engine::{RunOptions, run_package};
use switchyard_package::{ExecutionStatus, load_package};

const TASKS: usize = 10_000;

fn package_text(chained: bool) -> String {
    let mut text = String::from("[package]\nname = \"bench\"\nmax_errors = 0\n\n");
    for i in 0..TASKS {
        let _ = write!(text, "[[tasks]]\nname = \"t{i}\"\nkind = \"sleep\"\nduration = \"0s\"\n");
        if chained && i > 0 {
            let _ = writeln!(text, "after = [\"t{}\"]", i - 1);
        }
        text.push('\n');
    }
    text
}

/// Runs the scenario and prints its figures.
pub fn run(runs: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    println!("engine: {TASKS} zero-length tasks, median of {runs} runs (target: under 50 µs per task)");
    println!("{:<10} {:>12} {:>16} {:>14}", "shape", "load ms", "run ms", "µs per task");
    let mut json = serde_json::Map::new();
    for (shape, chained) in [("wide", false), ("chained", true)] {
        let path = dir.path().join(format!("{shape}.toml"));
        std::fs::write(&path, package_text(chained)).expect("write package");
        let mut loads = Vec::new();
        let mut package = None;
        for _ in 0..runs.clamp(1, 3) {
            let started = Instant::now();
            package = Some(load_package(&path).expect("bench package loads").package);
            loads.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let package = package.expect("loaded at least once");
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let run = runtime.block_on(run_package(package.clone(), RunOptions::default()));
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(run.status, ExecutionStatus::Succeeded, "bench package must succeed");
            assert_eq!(run.tasks.len(), TASKS);
        }
        let load_ms = crate::median(&mut loads);
        let run_ms = crate::median(&mut times);
        let per_task_us = run_ms * 1e3 / TASKS as f64;
        println!("{shape:<10} {load_ms:>12.1} {run_ms:>16.1} {per_task_us:>14.2}");
        json.insert(
            shape.to_string(),
            serde_json::json!({ "tasks": TASKS, "load_ms": load_ms, "run_ms": run_ms, "us_per_task": per_task_us }),
        );
    }
    println!("{}", serde_json::Value::Object(json));
}
