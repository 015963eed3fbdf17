//! Command-line arguments and dispatch to each command.

mod agent;
mod progress;
mod run;
mod validate;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Exit codes as dtexec's.
pub mod exit {
    /// The package ran and succeeded.
    pub const SUCCESS: u8 = 0;
    /// The package failed.
    pub const FAILURE: u8 = 1;
    /// The package was canceled.
    pub const CANCELED: u8 = 3;
    /// The package file was not found.
    pub const NOT_FOUND: u8 = 4;
    /// The package could not be loaded or is invalid.
    pub const INVALID: u8 = 5;
    /// The command line is wrong.
    pub const BAD_COMMAND_LINE: u8 = 6;
}

/// Switchyard: run packages locally or across agents.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about, propagate_version = true)]
pub struct Args {
    /// More logging on stderr (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of DESIGN.md §5.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a package (like dtexec): live progress on stderr, then a summary.
    Run(run::RunArgs),
    /// Check a package and the child packages it references without running anything.
    Validate {
        /// The package file.
        package: PathBuf,
    },
    /// Start a job on an agent (sp_start_job), optionally waiting for its outcome.
    ///
    /// Exit codes: 0 started (with --wait: the run succeeded), 1 the call failed or the run
    /// failed, 3 the run was canceled, 6 bad command line.
    StartJob(agent::start_job::StartJobArgs),
    /// List an agent's jobs and what they are doing (sp_help_job).
    Jobs(agent::jobs::JobsArgs),
    /// Show an agent's job history (sysjobhistory), newest first, messages whole.
    History(agent::history::HistoryArgs),
    /// Show the captured stdout and stderr of a run, per step attempt.
    Logs(agent::logs::LogsArgs),
    /// Commands the contract defines that later work brings.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

const LATER_COMMANDS: &[&str] =
    &["demo", "serve", "agents", "executions", "report", "watch", "cancel", "drain", "deploy", "chaos", "certs"];

/// Runs a command and returns the process exit code.
pub async fn dispatch(args: Args) -> u8 {
    match args.command {
        Command::Run(run) => run::run(run).await,
        Command::Validate { package } => validate::validate(&package),
        Command::StartJob(start) => agent::start_job::run(start).await,
        Command::Jobs(jobs) => agent::jobs::run(jobs).await,
        Command::History(history) => agent::history::run(history).await,
        Command::Logs(logs) => agent::logs::run(logs).await,
        Command::Other(words) => {
            let name = words.first().map(String::as_str).unwrap_or_default();
            if LATER_COMMANDS.contains(&name) {
                eprintln!("error: `switchyard {name}` is not supported yet");
            } else {
                eprintln!("error: unknown command `{name}`; see `switchyard --help`");
            }
            exit::BAD_COMMAND_LINE
        }
    }
}
