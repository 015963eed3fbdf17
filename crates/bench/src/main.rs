//! `cargo run --release -p switchyard-bench -- <scenario> [--runs N] [--tasks N] [--job JOB]`:
//! prints a table and a JSON line of figures. Scenarios: `engine`, `floor`, `fanout`, `roundtrip`,
//! `cost`, `detection`, `scale`, `peers`, `pages`, `nemesis` (its own options: see `nemesis.rs`).
//! `--tasks` applies to `fanout` and `roundtrip`; `--job` runs one row of them only:
//! `noop_package` or `noop_command`, and for `fanout` also `hold` or `direct`.

/// mimalloc: the allocator-heavy paths (gRPC, SQLite rows, the engine) spend markedly less time
/// in it than in glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cluster;
mod cost;
mod detection;
mod engine;
mod fanout;
mod floor;
mod nemesis;
mod pages;
mod peers;
mod roundtrip;
mod scale;

use std::process::ExitCode;

const SCENARIOS: &str = "engine, floor, fanout, roundtrip, cost, detection, scale, peers, pages, nemesis";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("engine");
    let runs: Option<usize> =
        args.iter().position(|a| a == "--runs").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok());
    let tasks: Option<usize> =
        args.iter().position(|a| a == "--tasks").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok());
    let job = args.iter().position(|a| a == "--job").and_then(|i| args.get(i + 1)).cloned();
    match scenario {
        "engine" => engine::run(runs.unwrap_or(7)),
        "floor" => floor::run(runs.unwrap_or(7)),
        "fanout" => fanout::run(runs.unwrap_or(3), tasks, job.as_deref()),
        "roundtrip" => roundtrip::run(runs.unwrap_or(3), tasks, job.as_deref()),
        "cost" => cost::run(runs.unwrap_or(3)),
        "detection" => detection::run(runs.unwrap_or(3)),
        "scale" => scale::run(runs.unwrap_or(3)),
        "peers" => peers::run(runs.unwrap_or(3)),
        "pages" => pages::run(runs.unwrap_or(5)),
        "nemesis" => return nemesis::run(&args[1..]),
        // The floor's server process, started by the scenarios that measure the floor.
        floor::SERVER_ARG => return floor::serve(),
        // A process of simulated agents, started by the `scale` scenario.
        scale::SERVER_ARG => return scale::serve(),
        other => {
            eprintln!("unknown scenario `{other}`; scenarios: {SCENARIOS}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// The median of some samples.
pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}
