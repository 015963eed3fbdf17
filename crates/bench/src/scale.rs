//! The `scale` scenario (being built).

/// Runs the scenario and prints its figures.
pub fn run(_runs: usize) {
    eprintln!("the scale scenario is not built yet");
    std::process::exit(2);
}

/// The hidden argument that makes this binary a process of simulated agents.
pub const SERVER_ARG: &str = "__sim-agents";

/// Serves simulated agents (being built).
pub fn serve() -> std::process::ExitCode {
    std::process::ExitCode::from(2)
}
