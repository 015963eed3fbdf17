//! Command-line arguments and dispatch to each command.

mod address;
mod agent;
mod certs;
mod checkpoint;
#[cfg(test)]
mod cli_docs;
mod coordinator;
mod databases;
mod demo;
mod demo_agent;
mod grpc;
mod live;
mod local_agents;
mod progress;
mod run;
mod tls;
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
    /// Log lines on stderr as `text` or `json` (one object per line, with the execution_id,
    /// task, agent and run_id of the run they concern).
    #[arg(long, global = true, env = "SWITCHYARD_LOG_FORMAT", default_value = "text", value_name = "FORMAT")]
    pub log_format: switchyard_settings::logging::LogFormat,
    #[command(flatten)]
    pub tls: tls::TlsArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of DESIGN.md §5.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A coordinator and 3 agents in this process: deploys the example jobs, runs the example
    /// parent package with live progress, prints the Overview report; exit 0 when it ran as designed.
    Demo(demo::DemoArgs),
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
    /// Run a coordinator: registry, placement, executions and reports over gRPC.
    Serve(coordinator::serve::ServeArgs),
    /// List the agents a coordinator knows: state, labels, load.
    Agents(coordinator::agents::AgentsArgs),
    /// List a coordinator's executions, newest first.
    Executions(coordinator::executions::ExecutionsArgs),
    /// Show an execution's Overview report (text, --json, or --html FILE).
    Report(coordinator::report::ReportArgs),
    /// Follow an execution's events until it ends; exit 0 succeeded, 1 failed, 3 canceled.
    Watch(coordinator::watch::WatchArgs),
    /// Cancel an execution and the child runs it started.
    Cancel(coordinator::cancel::CancelArgs),
    /// Stop new placements on an agent (its running jobs go on); --undo resumes them.
    Drain(coordinator::drain::DrainArgs),
    /// Push a job definition and its packages to an agent or every agent of a pool.
    ///
    /// Exit codes: 0 deployed to every target, 1 any target failed or nothing was sent,
    /// 6 bad command line.
    Deploy(coordinator::deploy::DeployArgs),
    /// Make an agent crash, hang, refuse or slow down, for tests and drills.
    Chaos(coordinator::chaos::ChaosArgs),
    /// Prune finished executions past the coordinator's retention (or --older-than), with
    /// their events and files.
    Prune(coordinator::prune::PruneArgs),
    /// Certificates for mutual TLS (DESIGN.md §11).
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// One demo agent in its own process, which `switchyard demo --fail-agent` starts to crash.
    #[command(name = demo_agent::SUBCOMMAND, hide = true)]
    DemoAgent(demo_agent::DemoAgentArgs),
    /// Commands the contract defines that later work brings.
    #[command(external_subcommand)]
    Other(Vec<String>),
}

const LATER_COMMANDS: &[&str] = &["import"];

/// Runs a command and returns the process exit code.
pub async fn dispatch(args: Args) -> u8 {
    tls::remember(args.tls);
    match args.command {
        Command::Demo(demo) => demo::demo(demo).await,
        Command::Run(run) => run::run(run).await,
        Command::Validate { package } => validate::validate(&package),
        Command::StartJob(start) => agent::start_job::run(start).await,
        Command::Jobs(jobs) => agent::jobs::run(jobs).await,
        Command::History(history) => agent::history::run(history).await,
        Command::Logs(logs) => agent::logs::run(logs).await,
        Command::Serve(serve) => coordinator::serve::run(serve).await,
        Command::Agents(agents) => coordinator::agents::run(agents).await,
        Command::Executions(executions) => coordinator::executions::run(executions).await,
        Command::Report(report) => coordinator::report::run(report).await,
        Command::Watch(watch) => coordinator::watch::run(watch).await,
        Command::Cancel(cancel) => coordinator::cancel::run(cancel).await,
        Command::Drain(drain) => coordinator::drain::run(drain).await,
        Command::Deploy(deploy) => coordinator::deploy::run(deploy).await,
        Command::Chaos(chaos) => coordinator::chaos::run(chaos).await,
        Command::Prune(prune) => coordinator::prune::run(prune).await,
        Command::Certs(certs) => certs::run(certs),
        Command::DemoAgent(agent) => demo_agent::run(agent).await,
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
