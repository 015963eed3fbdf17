//! `switchyard drain NAME [--undo]`: stop (or resume) placements on an agent; its running jobs go on.

use switchyard_proto::DrainAgentRequest;
use tonic::Code;

use super::connect::{Coordinator, CoordinatorArg, request};
use super::{Failure, exit, finish};

/// Arguments of `switchyard drain`.
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The agent's name (`switchyard agents` lists them).
    pub agent: String,
    /// Accept placements on the agent again.
    #[arg(long)]
    pub undo: bool,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 done, 1 the call failed, 6 bad command line.
pub async fn run(args: DrainArgs) -> u8 {
    finish(drain(args).await)
}

async fn drain(args: DrainArgs) -> Result<u8, Failure> {
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let name = &args.agent;
    let drain = DrainAgentRequest { name: name.clone(), drain: !args.undo };
    let answer =
        coordinator.call(coordinator.client().drain_agent(request(drain))).await.map_err(|status| {
            match status.code() {
                Code::NotFound => Failure::call(format!(
                    "the coordinator at {} knows no agent named \"{name}\"; `switchyard agents` lists them",
                    coordinator.address()
                )),
                _ => coordinator.explain(&status),
            }
        })?;
    if args.undo {
        println!("agent {name} is {}: it accepts new placements again", answer.state);
    } else {
        println!("agent {name} is {}: no new placements; its running jobs go on", answer.state);
    }
    Ok(exit::SUCCESS)
}
