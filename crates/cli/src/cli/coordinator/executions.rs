//! `switchyard executions`: the coordinator's executions, newest first.

use serde_json::json;
use switchyard_proto::{Execution, ListExecutionsRequest};

use super::connect::{Coordinator, CoordinatorArg, request};
use super::format::{params_json, table, time_json, time_text};
use super::{Failure, exit, finish, is_finished, print_json};
use crate::cli::progress::format_ms;

/// Arguments of `switchyard executions`.
#[derive(Debug, clap::Args)]
pub struct ExecutionsArgs {
    /// At most this many executions, newest first.
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print one JSON object on stdout: {"executions": [...]}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 listed, 1 the call failed, 6 bad command line.
pub async fn run(args: ExecutionsArgs) -> u8 {
    finish(list_executions(args).await)
}

async fn list_executions(args: ExecutionsArgs) -> Result<u8, Failure> {
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let list = ListExecutionsRequest { limit: args.limit };
    let response = coordinator
        .call(coordinator.client().list_executions(request(list)))
        .await
        .map_err(|s| coordinator.explain(&s))?;
    if args.json {
        let executions: Vec<serde_json::Value> = response.executions.iter().map(execution_json).collect();
        print_json(&json!({ "executions": executions }))?;
    } else if response.executions.is_empty() {
        eprintln!("the coordinator at {} has no executions yet", coordinator.address());
    } else {
        for line in executions_table(&response.executions) {
            println!("{line}");
        }
    }
    Ok(exit::SUCCESS)
}

fn executions_table(executions: &[Execution]) -> Vec<String> {
    let rows: Vec<Vec<String>> = executions
        .iter()
        .map(|e| {
            vec![
                e.execution_id.clone(),
                e.package.clone(),
                e.status.clone(),
                e.caller.clone(),
                time_text(e.started_at.as_ref()).unwrap_or_else(|| "-".to_string()),
                if is_finished(&e.status) { format_ms(e.duration_ms) } else { "-".to_string() },
            ]
        })
        .collect();
    table(&["ID", "PACKAGE", "STATUS", "CALLER", "STARTED", "DURATION"], &rows)
}

/// An execution as `--json` prints it.
pub fn execution_json(e: &Execution) -> serde_json::Value {
    json!({
        "execution_id": e.execution_id,
        "package": e.package,
        "status": e.status,
        "caller": e.caller,
        "started_at": time_json(e.started_at.as_ref()),
        "ended_at": time_json(e.ended_at.as_ref()),
        "duration_ms": e.duration_ms,
        "parameters": params_json(e.parameters.as_ref()),
        "tasks_total": e.tasks_total,
        "tasks_failed": e.tasks_failed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_executions_have_no_duration_yet() {
        let done = Execution {
            execution_id: "e1".into(),
            package: "nightly".into(),
            status: "succeeded".into(),
            caller: "ana".into(),
            duration_ms: 1234,
            ..Default::default()
        };
        let running = Execution { execution_id: "e2".into(), status: "running".into(), ..done.clone() };
        let lines = executions_table(&[done, running]);
        assert_eq!(lines[0], "ID  PACKAGE  STATUS     CALLER  STARTED  DURATION");
        assert_eq!(lines[1], "e1  nightly  succeeded  ana     -        1234 ms");
        assert_eq!(lines[2], "e2  nightly  running    ana     -        -");
    }
}
