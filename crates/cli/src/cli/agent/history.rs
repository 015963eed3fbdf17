//! `switchyard history --agent ADDR [JOB]`: history rows like sysjobhistory, newest first, messages whole.

use serde_json::json;
use switchyard_proto::{HistoryRow, JobHistoryRequest};
use tonic::Code;

use super::connect::{Agent, request};
use super::format::{hhmmss, history_status_name, packed_hhmmss, table, time_json, time_text};
use super::{Failure, exit, finish, print_json};

/// Arguments of `switchyard history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The agent's address: host:port or http://host:port.
    #[arg(long = "agent", value_name = "ADDR")]
    pub agent: String,
    /// Only this job's rows; every job's without it.
    pub job: Option<String>,
    /// At most this many rows, newest first.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
    /// Print one JSON object on stdout: {"agent": ADDR, "rows": [...]}.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command: 0 listed, 1 the call failed, 6 bad command line.
pub async fn run(args: HistoryArgs) -> u8 {
    finish(history(args).await)
}

async fn history(args: HistoryArgs) -> Result<u8, Failure> {
    let agent = Agent::connect(&args.agent).await?;
    let job = args.job.clone().unwrap_or_default();
    let asked = JobHistoryRequest { job: job.clone(), limit: args.limit, ..Default::default() };
    let response = agent.call(agent.client().job_history(request(asked))).await.map_err(|status| {
        if status.code() == Code::NotFound && !job.is_empty() {
            let address = agent.address();
            Failure::call(format!(
                "job \"{job}\" is not defined on the agent at {address}; `switchyard jobs --agent {address}` lists them"
            ))
        } else {
            agent.explain(&status)
        }
    })?;
    if args.json {
        let rows: Vec<serde_json::Value> = response.rows.iter().map(row_json).collect();
        print_json(&json!({ "agent": agent.address(), "rows": rows }))?;
    } else if response.rows.is_empty() {
        let whose = if job.is_empty() { String::new() } else { format!(" for job \"{job}\"") };
        eprintln!("no history{whose} on the agent at {}", agent.address());
    } else {
        print!("{}", history_text(&response.rows));
    }
    Ok(exit::SUCCESS)
}

/// One table row per history row, each followed by its whole message on indented lines.
fn history_text(rows: &[HistoryRow]) -> String {
    let headers = ["INSTANCE", "JOB", "STEP", "STEP NAME", "STATUS", "RUN DATE", "DURATION", "RUN ID"];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.instance_id.to_string(),
                row.job.clone(),
                row.step_id.to_string(),
                row.step_name.clone(),
                history_status_name(row.run_status).to_string(),
                time_text(row.started_at.as_ref()).unwrap_or_else(|| "-".to_string()),
                duration_text(row),
                row.run_id.clone(),
            ]
        })
        .collect();
    let lines = table(&headers, &cells);
    let mut text = String::new();
    let mut lines = lines.into_iter();
    if let Some(header) = lines.next() {
        text.push_str(&header);
        text.push('\n');
    }
    for (line, row) in lines.zip(rows) {
        text.push_str(&line);
        text.push('\n');
        for message_line in row.message.lines() {
            text.push_str("    ");
            text.push_str(message_line);
            text.push('\n');
        }
    }
    text
}

/// HH:MM:SS from the measured milliseconds, or from sysjobhistory's packed run_duration.
fn duration_text(row: &HistoryRow) -> String {
    if row.duration_ms > 0 || row.run_duration == 0 { hhmmss(row.duration_ms) } else { packed_hhmmss(row.run_duration) }
}

fn row_json(row: &HistoryRow) -> serde_json::Value {
    json!({
        "instance_id": row.instance_id,
        "job": row.job,
        "step_id": row.step_id,
        "step_name": row.step_name,
        "run_status": history_status_name(row.run_status),
        "run_date": row.run_date,
        "run_time": row.run_time,
        "run_duration": row.run_duration,
        "started_at": time_json(row.started_at.as_ref()),
        "duration_ms": row.duration_ms,
        "message": row.message,
        "run_id": row.run_id,
        "retries_attempted": row.retries_attempted,
        "server": row.server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_proto::HistoryStatus;

    #[test]
    fn messages_are_printed_whole_under_their_row() {
        let long = "x".repeat(500);
        let row = HistoryRow {
            instance_id: 7,
            job: "load_orders".to_string(),
            step_id: 0,
            step_name: "(Job outcome)".to_string(),
            run_status: HistoryStatus::Failed as i32,
            duration_ms: 3_723_000,
            message: format!("The job failed.\n{long}"),
            run_id: "r1".to_string(),
            ..HistoryRow::default()
        };
        let text = history_text(&[row]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("INSTANCE  JOB"), "{}", lines[0]);
        let cells: Vec<&str> = lines[1].split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
        assert_eq!(cells, ["7", "load_orders", "0", "(Job outcome)", "failed", "-", "01:02:03", "r1"]);
        assert_eq!(lines[2], "    The job failed.");
        assert_eq!(lines[3], format!("    {long}"));
    }

    #[test]
    fn the_packed_duration_is_used_when_milliseconds_are_missing() {
        let row = HistoryRow { run_duration: 10_203, ..HistoryRow::default() };
        assert_eq!(duration_text(&row), "01:02:03");
        assert_eq!(duration_text(&HistoryRow::default()), "00:00:00");
    }
}
