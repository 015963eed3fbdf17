//! `switchyard watch ID`: follow an execution's events until it ends; exit by its final status.

use super::connect::{Coordinator, CoordinatorArg};
use super::follow::follow_execution;
use super::{Failure, exit_code_for_status, finish};
use crate::cli::live::Live;
use crate::cli::progress::format_ms;

/// Arguments of `switchyard watch`.
///
/// Events since the execution started come first, then live ones, one line each on stderr;
/// the final status goes to stdout. Ctrl-C stops watching, not the execution
/// (`switchyard cancel ID` cancels it).
#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// The execution id (`switchyard executions` lists them).
    pub execution_id: String,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 succeeded, 1 failed or the call failed, 3 canceled, 6 bad command line.
pub async fn run(args: WatchArgs) -> u8 {
    finish(watch(args).await)
}

async fn watch(args: WatchArgs) -> Result<u8, Failure> {
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    // The package is not at hand: the total grows as tasks are seen.
    let live = Live::new(0);
    let execution = follow_execution(&coordinator, &args.execution_id, &live).await;
    live.finish();
    let execution = execution?;
    println!(
        "execution {} ({}) {} in {}",
        execution.execution_id,
        execution.package,
        execution.status,
        format_ms(execution.duration_ms)
    );
    Ok(exit_code_for_status(&execution.status))
}
