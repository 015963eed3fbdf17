//! `switchyard report ID`: an execution's Overview report (DESIGN.md §7) as text, JSON (§9) or
//! an HTML page, read from the coordinator's GetReport stream.

use std::path::PathBuf;

use switchyard_coordinator::report::Report;
use switchyard_proto::{GetReportRequest, ReportPart, report_part};
use tonic::Code;

use super::connect::{CALL_DEADLINE, Coordinator, CoordinatorArg, request};
use super::{Failure, exit, finish, print_json};

/// Arguments of `switchyard report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The execution id (`switchyard executions` lists them).
    pub execution_id: String,
    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the report as an HTML page with a timeline to FILE (instead of the text on stdout).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 shown, 1 the call failed or the page could not be written, 6 bad command line.
pub async fn run(args: ReportArgs) -> u8 {
    finish(show_report(args).await)
}

/// A report and the status of its execution, as the coordinator sent them.
pub struct FetchedReport {
    /// The report.
    pub report: Report,
    /// The execution's status (`succeeded`, `failed`, ...).
    pub status: String,
}

/// Reads the whole report of an execution, part by part.
pub async fn fetch_report(coordinator: &Coordinator, execution_id: &str) -> Result<FetchedReport, Failure> {
    let explain = |status: &tonic::Status| match status.code() {
        Code::NotFound => Failure::call(format!(
            "the coordinator at {} knows no execution {execution_id}; `switchyard executions` lists them",
            coordinator.address()
        )),
        _ => coordinator.explain(status),
    };
    let get = GetReportRequest { execution_id: execution_id.to_string(), page_size: 0 };
    let mut stream = coordinator.call(coordinator.client().get_report(request(get))).await.map_err(|s| explain(&s))?;
    let mut parts: Vec<ReportPart> = Vec::new();
    loop {
        // Each part within the deadline, so a 10,000-task report may take longer in all.
        let part = match tokio::time::timeout(CALL_DEADLINE, stream.message()).await {
            Ok(Ok(Some(part))) => part,
            Ok(Ok(None)) => break,
            Ok(Err(status)) => return Err(explain(&status)),
            Err(_) => {
                return Err(Failure::call(format!(
                    "the coordinator at {} stopped sending the report of execution {execution_id} for {} s; try again",
                    coordinator.address(),
                    CALL_DEADLINE.as_secs()
                )));
            }
        };
        parts.push(part);
    }
    let status = parts
        .iter()
        .find_map(|p| match &p.part {
            Some(report_part::Part::Execution(execution)) => Some(execution.status.clone()),
            _ => None,
        })
        .unwrap_or_default();
    let report = Report::from_proto_parts(parts).map_err(|e| {
        Failure::call(format!(
            "the report of execution {execution_id} from the coordinator at {} cannot be read: {e}",
            coordinator.address()
        ))
    })?;
    Ok(FetchedReport { report, status })
}

async fn show_report(args: ReportArgs) -> Result<u8, Failure> {
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let fetched = fetch_report(&coordinator, &args.execution_id).await?;
    if let Some(file) = &args.html {
        std::fs::write(file, fetched.report.to_html())
            .map_err(|e| Failure::call(format!("cannot write the HTML report to {}: {e}", file.display())))?;
        eprintln!("wrote the report of execution {} to {}", args.execution_id, file.display());
    }
    if args.json {
        print_json(&fetched.report.to_json())?;
    } else if args.html.is_none() {
        print!("{}", fetched.report.to_text());
    }
    Ok(exit::SUCCESS)
}
