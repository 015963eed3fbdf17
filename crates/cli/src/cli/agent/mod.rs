//! The commands that talk to one agent directly: `start-job`, `jobs`, `history` and `logs`.

mod connect;
mod format;
pub mod history;
pub mod jobs;
pub mod logs;
mod params;
pub mod start_job;
mod wait;

use super::exit;

/// Why an agent command stopped early: the message for stderr and the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The process exit code (1 for a failed call, 6 for a bad command line).
    pub exit_code: u8,
    /// Lowercase, says what went wrong and what to do next.
    pub message: String,
}

impl Failure {
    /// A call that failed, or a run that could not be followed: exit code 1.
    pub fn call(message: impl Into<String>) -> Self {
        Self { exit_code: exit::FAILURE, message: message.into() }
    }

    /// A command line that cannot work: exit code 6.
    pub fn usage(message: impl Into<String>) -> Self {
        Self { exit_code: exit::BAD_COMMAND_LINE, message: message.into() }
    }
}

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
