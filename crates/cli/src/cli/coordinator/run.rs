//! `switchyard run PKG --coordinator ADDR`: send a package and the child packages it references
//! to a coordinator, follow the execution, print its report, and exit as dtexec does.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_package::engine::bind_parameters;
use switchyard_package::load_package;
use switchyard_proto::{CancelExecutionRequest, StartExecutionRequest, StartExecutionResponse};
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};

use super::connect::{Coordinator, is_transient, request, status_text};
use super::follow::follow_execution;
use super::package_files::{common_folder, normalize, package_tree, read_files, wire_path};
use super::report::fetch_report;
use super::signals::Signals;
use super::{Failure, exit, exit_code_for_status, finish, print_json};
use crate::cli::live::{Live, work_tasks};
use crate::cli::run::{RunArgs, report_load_error, with_secret_env};

/// Retries of a submission that met a transport error, with the same request id.
const START_RETRIES: u32 = 3;

/// Runs the command; returns dtexec's exit code.
pub async fn run(args: RunArgs) -> u8 {
    finish(run_on_coordinator(args).await)
}

async fn run_on_coordinator(mut args: RunArgs) -> Result<u8, Failure> {
    let Some(address) = args.coordinator.as_deref() else {
        return Err(Failure::usage(
            "--detach needs --coordinator ADDR: only an execution on a coordinator can be left running",
        ));
    };
    if args.config.is_some() {
        return Err(Failure::usage(
            "--config applies to runs in this process; with --coordinator the coordinator's own \
             coordinator.toml names the agents, so leave --config out",
        ));
    }
    if let Some(n) = args.max_concurrent
        && (n == 0 || n < -1)
    {
        return Err(Failure::usage(format!(
            "--max-concurrent {n} is not allowed: use 1 or more, or -1 for logical CPUs + 2"
        )));
    }
    // Everything that can be checked here is, so a bad package or parameter never reaches the
    // coordinator and exits with the same codes as a local run.
    let loaded = match load_package(&args.package) {
        Ok(loaded) => loaded,
        Err(e) => return Ok(report_load_error(&e)),
    };
    for warning in loaded.warnings.warnings() {
        eprintln!("{warning}");
    }
    args.sets = with_secret_env(&loaded.package, std::mem::take(&mut args.sets), |name| std::env::var(name).ok());
    bind_parameters(&loaded.package, &args.sets).map_err(|e| Failure::usage(e.to_string()))?;
    if loaded.package.checkpoint.is_none()
        && let Some(usage) = args.restart.as_deref().filter(|u| *u != "never")
    {
        return Err(Failure::usage(format!(
            "--restart {usage}: package \"{name}\" has no checkpoint file to restart from; add checkpoint = {{ file = \
             \"{name}.ckpt\", usage = \"if_exists\" }} to its [package]",
            name = loaded.package.name
        )));
    }
    let start = start_request(&args, &loaded.package)?;
    let interrupted = CancellationToken::new();
    if !args.detach {
        // Listen before submitting, so an early Ctrl-C cancels the execution once it has an id.
        match Signals::listen() {
            Ok(signals) => {
                tokio::spawn(cancel_on_signal(signals, interrupted.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "cannot listen for Ctrl-C and SIGTERM; they will not cancel"),
        }
    }

    let coordinator = Coordinator::connect(address).await?;
    let started = start_execution(&coordinator, start).await?;
    let execution_id = started.execution_id;
    if args.detach {
        println!("{execution_id}");
        return Ok(exit::SUCCESS);
    }
    if !started.checkpoint.is_empty() {
        eprintln!("checkpoint: {} (on the coordinator)", started.checkpoint);
    }
    let again = if started.existing { " (this submission had already started it)" } else { "" };
    eprintln!(
        "execution {execution_id} started on the coordinator at {}{again}; Ctrl-C cancels it",
        coordinator.address()
    );
    let canceler = tokio::spawn(cancel_when_interrupted(coordinator.clone(), execution_id.clone(), interrupted));
    let live = Live::new(work_tasks(&loaded.package));
    let followed = follow_execution(&coordinator, &execution_id, &live).await;
    live.finish();
    canceler.abort();
    let execution = followed?;
    let fetched = match fetch_report(&coordinator, &execution_id).await {
        Ok(fetched) => fetched,
        Err(failure) => {
            eprintln!(
                "error: {}; the execution {}: `switchyard report {execution_id}` shows its report later",
                failure.message, execution.status
            );
            return Ok(exit_code_for_status(&execution.status));
        }
    };
    if args.json {
        print_json(&fetched.report.to_json())?;
    } else {
        print!("{}", fetched.report.to_text());
    }
    let status = if fetched.status.is_empty() { &execution.status } else { &fetched.status };
    Ok(exit_code_for_status(status))
}

/// The submission: the package's files named relative to their common folder (the package's
/// own folder unless a child lies outside it), --set values as text, the caller.
fn start_request(args: &RunArgs, package: &switchyard_package::Package) -> Result<StartExecutionRequest, Failure> {
    let tree = package_tree(package);
    for dynamic in &tree.dynamic {
        eprintln!(
            "warning: {}: task \"{}\" names its child package by an expression (`{}`), so the file cannot be \
             sent with the package; on the coordinator that task fails unless the path exists there",
            dynamic.file.display(),
            dynamic.task,
            dynamic.path
        );
    }
    let root = common_folder(&tree.files);
    let invalid = |message: String| Failure { exit_code: exit::INVALID, message };
    let files = read_files(&tree, &root).map_err(invalid)?;
    let parent = wire_path(&normalize(&args.package), &root)
        .ok_or_else(|| invalid(format!("package file {} cannot be named for sending", args.package.display())))?;
    Ok(StartExecutionRequest {
        request_id: uuid::Uuid::new_v4().to_string(),
        package: parent,
        files,
        parameters: parameter_texts(&args.sets).into_iter().collect(),
        caller: caller(std::env::var("USER").ok()),
        max_concurrent: args.max_concurrent.unwrap_or(0),
        restart: args.restart.clone().unwrap_or_default(),
    })
}

/// `--set name=value` pairs as text by name (a later one wins); the coordinator types them like
/// the parameters' defaults. Malformed pairs were refused by `bind_parameters` already.
fn parameter_texts(sets: &[String]) -> BTreeMap<String, String> {
    sets.iter()
        .filter_map(|set| set.split_once('='))
        .map(|(name, value)| (name.trim().to_string(), value.to_string()))
        .collect()
}

/// Who asks: $USER, or "switchyard" when it is unset or blank.
fn caller(user: Option<String>) -> String {
    user.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).unwrap_or_else(|| "switchyard".to_string())
}

/// Submits, retrying a transport failure with the same request id: the coordinator answers a
/// repeated id with the execution it already started, so a retry never starts a second one.
async fn start_execution(
    coordinator: &Coordinator,
    start: StartExecutionRequest,
) -> Result<StartExecutionResponse, Failure> {
    let mut retries = 0;
    loop {
        match coordinator.call(coordinator.client().start_execution(request(start.clone()))).await {
            Ok(started) => return Ok(started),
            Err(status) if is_transient(status.code()) && retries < START_RETRIES => {
                retries += 1;
                let delay = start_retry_delay(retries);
                eprintln!(
                    "starting the execution failed ({}); retrying in {} ms with the same request id (retry {retries} \
                     of {START_RETRIES})",
                    status_text(&status),
                    delay.as_millis()
                );
                tokio::time::sleep(delay).await;
            }
            Err(status) => return Err(refused(coordinator, &status)),
        }
    }
}

/// 250 ms, 500 ms, 1 s.
fn start_retry_delay(retry: u32) -> Duration {
    Duration::from_millis(250 << retry.saturating_sub(1).min(4))
}

fn refused(coordinator: &Coordinator, status: &Status) -> Failure {
    match status.code() {
        Code::InvalidArgument => Failure {
            exit_code: exit::INVALID,
            message: format!(
                "the coordinator at {} refused the package: {}",
                coordinator.address(),
                status_text(status)
            ),
        },
        // A checkpoint the coordinator cannot restart from (another version, a corrupt file):
        // the package fails, as a local run does.
        Code::FailedPrecondition => Failure {
            exit_code: exit::FAILURE,
            message: format!(
                "the coordinator at {} did not start the package: {}",
                coordinator.address(),
                status_text(status)
            ),
        },
        _ => coordinator.explain(status),
    }
}

/// The first signal asks for cancellation (the coordinator cancels the execution and its
/// children); a second exits at once with 3, leaving the execution to the coordinator.
async fn cancel_on_signal(mut signals: Signals, interrupted: CancellationToken) {
    signals.recv().await;
    eprintln!("canceling the execution (press Ctrl-C again to stop following it now)");
    interrupted.cancel();
    signals.recv().await;
    eprintln!("exiting now; the coordinator goes on canceling the execution");
    std::process::exit(i32::from(exit::CANCELED));
}

async fn cancel_when_interrupted(coordinator: Coordinator, execution_id: String, interrupted: CancellationToken) {
    interrupted.cancelled().await;
    let cancel = CancelExecutionRequest { execution_id: execution_id.clone() };
    match coordinator.call(coordinator.client().cancel_execution(request(cancel))).await {
        Ok(answer) if answer.message.is_empty() => eprintln!("execution {execution_id} is {}", answer.status),
        Ok(answer) => eprintln!("{}", answer.message),
        Err(status) => eprintln!(
            "warning: cannot cancel execution {execution_id}: {}; `switchyard cancel {execution_id}` tries again",
            status_text(&status)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_travel_as_text_and_a_later_set_wins() {
        let sets = ["run_date=2026-11-22", " region =emea=north", "run_date=2026-11-23"].map(String::from);
        let texts = parameter_texts(&sets);
        assert_eq!(texts.get("run_date").map(String::as_str), Some("2026-11-23"));
        assert_eq!(texts.get("region").map(String::as_str), Some("emea=north"));
        assert_eq!(texts.len(), 2);
    }

    #[test]
    fn the_caller_is_the_user_or_switchyard() {
        assert_eq!(caller(Some("ana".to_string())), "ana");
        assert_eq!(caller(Some("  ".to_string())), "switchyard");
        assert_eq!(caller(None), "switchyard");
    }

    #[test]
    fn submissions_retry_three_times_with_growing_delays() {
        assert_eq!(START_RETRIES, 3);
        assert_eq!(start_retry_delay(1), Duration::from_millis(250));
        assert_eq!(start_retry_delay(3), Duration::from_secs(1));
    }
}
