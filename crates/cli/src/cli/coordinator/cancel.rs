//! `switchyard cancel ID`: cancel an execution; the coordinator cancels its children too.

use switchyard_proto::CancelExecutionRequest;
use tonic::Code;

use super::connect::{Coordinator, CoordinatorArg, request, status_text};
use super::{Failure, exit, finish};

/// Arguments of `switchyard cancel`.
#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The execution id (`switchyard executions` lists them).
    pub execution_id: String,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 cancel requested (the status printed says where it stands), 1 the call
/// failed, 6 bad command line.
pub async fn run(args: CancelArgs) -> u8 {
    finish(cancel(args).await)
}

async fn cancel(args: CancelArgs) -> Result<u8, Failure> {
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let id = &args.execution_id;
    let cancel = CancelExecutionRequest { execution_id: id.clone() };
    let answer =
        coordinator.call(coordinator.client().cancel_execution(request(cancel))).await.map_err(
            |status| match status.code() {
                Code::NotFound => Failure::call(format!(
                    "the coordinator at {} knows no execution {id}; `switchyard executions` lists them",
                    coordinator.address()
                )),
                Code::FailedPrecondition => Failure::call(format!(
                    "execution {id} cannot be canceled: {}; `switchyard report {id}` shows how it ended",
                    status_text(&status)
                )),
                _ => coordinator.explain(&status),
            },
        )?;
    println!("execution {id}: {}", answer.status);
    if !answer.message.is_empty() {
        eprintln!("{}", answer.message);
    }
    Ok(exit::SUCCESS)
}
