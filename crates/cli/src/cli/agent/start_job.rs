//! `switchyard start-job --agent ADDR JOB`: sp_start_job on one agent, optionally waiting for the outcome.

use serde_json::json;
use switchyard_proto::{GetRunRequest, Run, RunStatus, StartJobRequest, StartJobResponse};
use tonic::{Code, Status};

use super::connect::{Agent, request};
use super::format::{hhmmss, run_status_name, time_json};
use super::params::{parse_sets, struct_to_json};
use super::wait::{Outcome, wait_for_run};
use super::{Failure, exit, finish, print_json};

/// Arguments of `switchyard start-job`.
#[derive(Debug, clap::Args)]
pub struct StartJobArgs {
    /// The agent's address: host:port or http://host:port.
    #[arg(long = "agent", value_name = "ADDR")]
    pub agent: String,
    /// The job to start, as the agent names it (`switchyard jobs --agent ADDR` lists them).
    pub job: String,
    /// Sets a job parameter: --set name=value (repeatable; a later one wins).
    ///
    /// A value that parses as JSON (a number, true/false, null, a list, an object or a quoted
    /// string) is sent as that JSON value; anything else is sent as text: `--set region=emea` is
    /// the text "emea", `--set batch=500` the number 500, `--set code='"042"'` the text "042".
    /// Integers beyond 2^53 stay text. The agent binds the values to its packages' parameters.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Wait for the run to finish, printing its steps as they go (Ctrl-C stops waiting, not the run).
    #[arg(long)]
    pub wait: bool,
    /// Print one JSON object on stdout: the start's answer, or with --wait the finished run.
    #[arg(long)]
    pub json: bool,
    /// Who asks, as the agent's history records it ("from User X"); $USER by default.
    #[arg(long, value_name = "USER", env = "USER", hide_env_values = true, default_value = "switchyard")]
    pub requested_by: String,
}

/// Runs the command: 0 started (with --wait: succeeded), 1 failed, 3 canceled, 6 bad command line.
pub async fn run(args: StartJobArgs) -> u8 {
    finish(start_job(args).await)
}

async fn start_job(args: StartJobArgs) -> Result<u8, Failure> {
    let params = parse_sets(&args.sets)?;
    let agent = Agent::connect(&args.agent).await?;
    let requested_by = match args.requested_by.trim() {
        "" => "switchyard".to_string(),
        user => user.to_string(),
    };
    let start = StartJobRequest { job: args.job.clone(), params: Some(params), requested_by, ..Default::default() };
    let started =
        agent.call(agent.client().start_job(request(start))).await.map_err(|s| refused(&agent, &args.job, &s))?;
    let message = match started.message.as_str() {
        "" => format!("Job '{}' started successfully.", args.job),
        text => text.to_string(),
    };
    if !args.wait {
        if args.json {
            print_json(&started_json(&started, &message))?;
        } else {
            println!("{message}");
            println!("run id: {}", started.run_id);
        }
        return Ok(exit::SUCCESS);
    }
    eprintln!("{message} (run id {}); waiting for it to finish", started.run_id);
    let outcome = wait_for_run(&agent, &started, &args.job).await?;
    if args.json {
        let run = agent
            .call(
                agent.client().get_run(request(GetRunRequest { run_id: started.run_id.clone(), ..Default::default() })),
            )
            .await;
        match run {
            Ok(run) => print_json(&run_json(&run))?,
            Err(status) => {
                eprintln!(
                    "warning: cannot read the finished run back ({}); printing its outcome only",
                    status.message()
                );
                print_json(&outcome_json(&started.run_id, &args.job, &outcome))?;
            }
        }
    } else {
        if !outcome.message.is_empty() {
            println!("{}", outcome.message);
        }
        let status = run_status_name(outcome.status);
        println!("run {}: {status} in {}", started.run_id, hhmmss(outcome.duration_ms));
    }
    Ok(match RunStatus::try_from(outcome.status) {
        Ok(RunStatus::Succeeded) => exit::SUCCESS,
        Ok(RunStatus::Canceled) => exit::CANCELED,
        _ => exit::FAILURE,
    })
}

/// Why a start was refused, with what to do next.
fn refused(agent: &Agent, job: &str, status: &Status) -> Failure {
    let address = agent.address();
    match status.code() {
        Code::NotFound => Failure::call(format!(
            "job \"{job}\" is not defined on the agent at {address}; `switchyard jobs --agent {address}` lists them"
        )),
        Code::FailedPrecondition => {
            Failure::call(format!("{} (`switchyard jobs --agent {address}` shows what is running)", status.message()))
        }
        _ => agent.explain(status),
    }
}

fn started_json(started: &StartJobResponse, message: &str) -> serde_json::Value {
    json!({
        "run_id": started.run_id,
        "sequence": started.sequence,
        "incarnation": started.incarnation,
        "message": message,
        "existing": started.existing,
        "status": run_status_name(started.status),
    })
}

/// A finished run as `--json` prints it.
fn run_json(run: &Run) -> serde_json::Value {
    json!({
        "run_id": run.run_id,
        "job": run.job,
        "status": run_status_name(run.status),
        "accepted_at": time_json(run.accepted_at.as_ref()),
        "started_at": time_json(run.started_at.as_ref()),
        "ended_at": time_json(run.ended_at.as_ref()),
        "duration_ms": run.duration_ms,
        "message": run.message,
        "requested_by": run.requested_by,
        "params": struct_to_json(run.params.as_ref()),
        "idempotency_key": run.idempotency_key,
        "epoch": run.epoch,
        "execution_id": run.execution_id,
        "task_path": run.task_path,
        "attempt": run.attempt,
        "job_hash": run.job_hash,
        "package_hashes": run.package_hashes,
        "accepted_sequence": run.accepted_sequence,
    })
}

fn outcome_json(run_id: &str, job: &str, outcome: &Outcome) -> serde_json::Value {
    json!({
        "run_id": run_id,
        "job": job,
        "status": run_status_name(outcome.status),
        "duration_ms": outcome.duration_ms,
        "message": outcome.message,
    })
}
