//! The `detection` scenario (being built).

/// Runs the scenario and prints its figures.
pub fn run(_runs: usize) {
    eprintln!("the detection scenario is not built yet");
    std::process::exit(2);
}
