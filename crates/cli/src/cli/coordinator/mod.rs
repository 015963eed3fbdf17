//! The commands that talk to a coordinator (`run --coordinator`, `report`, `watch`,
//! `executions`, `cancel`, `agents`, `drain`, `deploy`, `chaos`, `prune`) and `serve`, which runs one.

pub mod agents;
pub mod cancel;
pub mod chaos;
mod connect;
pub mod deploy;
pub mod drain;
pub mod executions;
mod follow;
mod format;
mod package_files;
pub mod prune;
pub mod report;
pub mod run;
pub mod serve;
mod signals;
pub mod watch;

use super::agent::Failure;
use super::exit;

/// Prints a failure, if any, and returns the exit code.
fn finish(result: Result<u8, Failure>) -> u8 {
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            failure.exit_code
        }
    }
}

/// Prints one JSON document on stdout.
fn print_json(value: &serde_json::Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::call(format!("cannot write the result as JSON: {e}")))?;
    println!("{text}");
    Ok(())
}

/// Whether an execution status (DESIGN.md §3) is final: the execution will not change again.
fn is_finished(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "canceled" | "ended_unexpectedly" | "completed")
}

/// dtexec's exit code for an execution that ended with `status`: 0 succeeded (or completed),
/// 3 canceled, 1 anything else (failed, ended_unexpectedly, or not finished at all).
fn exit_code_for_status(status: &str) -> u8 {
    match status {
        "succeeded" | "completed" => exit::SUCCESS,
        "canceled" | "stopping" => exit::CANCELED,
        _ => exit::FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_statuses_map_to_dtexec_exit_codes() {
        assert_eq!(exit_code_for_status("succeeded"), 0);
        assert_eq!(exit_code_for_status("completed"), 0);
        assert_eq!(exit_code_for_status("failed"), 1);
        assert_eq!(exit_code_for_status("ended_unexpectedly"), 1);
        assert_eq!(exit_code_for_status("canceled"), 3);
        assert_eq!(exit_code_for_status("running"), 1);
    }

    #[test]
    fn only_final_statuses_count_as_finished() {
        for status in ["succeeded", "failed", "canceled", "ended_unexpectedly", "completed"] {
            assert!(is_finished(status), "{status}");
        }
        for status in ["created", "running", "pending", "stopping", ""] {
            assert!(!is_finished(status), "{status}");
        }
    }
}
