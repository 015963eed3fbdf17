//! `cargo run --release -p switchyard-bench -- <scenario> [--runs N]`: prints a table and a
//! JSON line of figures. Scenarios: `engine`.

mod engine;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenario = args.first().map(String::as_str).unwrap_or("engine");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(7usize);
    match scenario {
        "engine" => engine::run(runs),
        other => {
            eprintln!("unknown scenario `{other}`; scenarios: engine");
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
