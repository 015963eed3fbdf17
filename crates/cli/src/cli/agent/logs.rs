//! `switchyard logs --agent ADDR RUN`: a run's captured stdout and stderr, per step attempt.

use serde_json::json;
use switchyard_proto::{GetRunOutputRequest, StepOutput};
use tonic::Code;

use super::connect::{Agent, request};
use super::{Failure, exit, finish, print_json};

/// Arguments of `switchyard logs`.
#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The agent's address: host:port or http://host:port.
    #[arg(long = "agent", value_name = "ADDR")]
    pub agent: String,
    /// The run id, as `start-job` and `history` print it.
    pub run: String,
    /// Print one JSON object on stdout: {"run_id": RUN, "steps": [...]}.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: 0 printed, 1 the call failed, 6 bad command line.
pub async fn run(args: LogsArgs) -> u8 {
    finish(logs(args).await)
}

async fn logs(args: LogsArgs) -> Result<u8, Failure> {
    let agent = Agent::connect(&args.agent).await?;
    let asked = GetRunOutputRequest { run_id: args.run.clone(), max_bytes: 0 };
    let response = agent.call(agent.client().get_run_output(request(asked))).await.map_err(|status| {
        if status.code() == Code::NotFound {
            let address = agent.address();
            Failure::call(format!(
                "run \"{}\" is not known to the agent at {address}; `switchyard history --agent {address}` lists recent runs",
                args.run
            ))
        } else {
            agent.explain(&status)
        }
    })?;
    if args.json {
        let steps: Vec<serde_json::Value> = response.steps.iter().map(step_json).collect();
        print_json(&json!({ "agent": agent.address(), "run_id": args.run, "steps": steps }))?;
    } else if response.steps.is_empty() {
        eprintln!("run {} has no captured output: no step has run yet", args.run);
    } else {
        print!("{}", output_text(&response.steps));
    }
    Ok(exit::SUCCESS)
}

/// Per step attempt: a header, then labelled stdout and stderr, then a note when the agent cut them.
fn output_text(steps: &[StepOutput]) -> String {
    let mut text = String::new();
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        text.push_str(&format!("step {} ({}), attempt {}\n", step.step_id, step.step_name, step.attempt));
        for (label, stream) in [("stdout", &step.stdout), ("stderr", &step.stderr)] {
            text.push_str(&format!("--- {label} ---\n"));
            if stream.is_empty() {
                text.push_str("(empty)\n");
            } else {
                text.push_str(stream);
                if !stream.ends_with('\n') {
                    text.push('\n');
                }
            }
        }
        if step.truncated {
            text.push_str("(truncated: the agent keeps a bounded amount of output per stream and step attempt)\n");
        }
    }
    text
}

fn step_json(step: &StepOutput) -> serde_json::Value {
    json!({
        "step_id": step.step_id,
        "step_name": step.step_name,
        "attempt": step.attempt,
        "stdout": step.stdout,
        "stderr": step.stderr,
        "truncated": step.truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_attempt_has_a_header_and_labelled_streams() {
        let steps = [
            StepOutput {
                step_id: 1,
                step_name: "load".to_string(),
                attempt: 0,
                stdout: "loaded 3 rows".to_string(),
                stderr: String::new(),
                truncated: true,
            },
            StepOutput { step_id: 1, step_name: "load".to_string(), attempt: 1, ..StepOutput::default() },
        ];
        let text = output_text(&steps);
        assert!(text.starts_with(
            "step 1 (load), attempt 0\n--- stdout ---\nloaded 3 rows\n--- stderr ---\n(empty)\n(truncated:"
        ));
        assert!(text.contains("\n\nstep 1 (load), attempt 1\n--- stdout ---\n(empty)\n"), "{text}");
    }
}
