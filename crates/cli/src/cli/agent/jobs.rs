//! `switchyard jobs --agent ADDR`: the agent's jobs and their activity, like sp_help_job.

use serde_json::json;
use switchyard_proto::{JobSummary, ListJobsRequest};

use super::connect::{Agent, request};
use super::format::{activity_name, hhmmss, outcome_name, table, time_json, time_text};
use super::{Failure, exit, finish, print_json};

/// Arguments of `switchyard jobs`.
#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    /// The agent's address: host:port or http://host:port.
    #[arg(long = "agent", value_name = "ADDR")]
    pub agent: String,
    /// Print one JSON object on stdout: {"agent": ADDR, "jobs": [...]}.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: 0 listed, 1 the call failed, 6 bad command line.
pub async fn run(args: JobsArgs) -> u8 {
    finish(list_jobs(args).await)
}

async fn list_jobs(args: JobsArgs) -> Result<u8, Failure> {
    let agent = Agent::connect(&args.agent).await?;
    let response =
        agent.call(agent.client().list_jobs(request(ListJobsRequest {}))).await.map_err(|s| agent.explain(&s))?;
    if args.json {
        let jobs: Vec<serde_json::Value> = response.jobs.iter().map(job_json).collect();
        print_json(&json!({ "agent": agent.address(), "jobs": jobs }))?;
    } else if response.jobs.is_empty() {
        eprintln!("no jobs are defined on the agent at {}", agent.address());
    } else {
        for line in jobs_table(&response.jobs) {
            println!("{line}");
        }
    }
    Ok(exit::SUCCESS)
}

fn jobs_table(jobs: &[JobSummary]) -> Vec<String> {
    let headers =
        ["NAME", "ACTIVITY", "RUNNING", "QUEUED", "CONCURRENCY", "LAST OUTCOME", "LAST RUN", "DURATION", "SOURCE"];
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|job| {
            let last_run = time_text(job.last_run_started_at.as_ref());
            let duration = if last_run.is_some() { hhmmss(job.last_run_duration_ms) } else { "-".to_string() };
            vec![
                job.name.clone(),
                activity_name(job.activity).to_string(),
                job.running.to_string(),
                job.queued.to_string(),
                job.concurrency.clone(),
                outcome_name(job.last_outcome).to_string(),
                last_run.unwrap_or_else(|| "-".to_string()),
                duration,
                job.source.clone(),
            ]
        })
        .collect();
    table(&headers, &rows)
}

fn job_json(job: &JobSummary) -> serde_json::Value {
    json!({
        "name": job.name,
        "description": job.description,
        "activity": activity_name(job.activity),
        "running": job.running,
        "queued": job.queued,
        "concurrency": job.concurrency,
        "steps": job.steps,
        "current_step": job.current_step,
        "last_outcome": outcome_name(job.last_outcome),
        "last_run_started_at": time_json(job.last_run_started_at.as_ref()),
        "last_run_ended_at": time_json(job.last_run_ended_at.as_ref()),
        "last_run_duration_ms": job.last_run_duration_ms,
        "last_run_id": job.last_run_id,
        "source": job.source,
        "hash": job.hash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;
    use switchyard_proto::{JobActivity, JobOutcome};

    #[test]
    fn a_job_that_never_ran_shows_dashes_and_unknown() {
        let job = JobSummary {
            name: "load_customers".to_string(),
            activity: JobActivity::Idle as i32,
            concurrency: "forbid".to_string(),
            last_outcome: JobOutcome::Unknown as i32,
            source: "file".to_string(),
            ..JobSummary::default()
        };
        let lines = jobs_table(&[job]);
        assert!(lines[0].starts_with("NAME            ACTIVITY  RUNNING"), "{}", lines[0]);
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(cells, ["load_customers", "idle", "0", "0", "forbid", "unknown", "-", "-", "file"]);
    }

    #[test]
    fn a_job_that_ran_shows_its_last_run() {
        let job = JobSummary {
            name: "load_orders".to_string(),
            activity: JobActivity::Executing as i32,
            running: 1,
            concurrency: "queue".to_string(),
            last_outcome: JobOutcome::Succeeded as i32,
            last_run_started_at: Some(Timestamp { seconds: 0, nanos: 0 }),
            last_run_duration_ms: 65_000,
            source: "pushed".to_string(),
            ..JobSummary::default()
        };
        let cells: Vec<String> = jobs_table(&[job])[1].split_whitespace().map(String::from).collect();
        assert_eq!(
            cells,
            ["load_orders", "executing", "1", "0", "queue", "succeeded", "1970-01-01T00:00:00Z", "00:01:05", "pushed"]
        );
    }
}
