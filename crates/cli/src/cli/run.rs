//! `switchyard run PKG`: load, validate and run a package in this process, like dtexec.

use std::path::PathBuf;
use std::sync::Arc;

use switchyard_package::engine::{RunOptions, bind_parameters, run_package, secret_env_var};
use switchyard_package::{LoadError, load_package};
use tokio_util::sync::CancellationToken;

use super::exit;
use super::live::{Live, work_tasks};
use super::progress;

/// Arguments of `switchyard run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The package file.
    pub package: PathBuf,
    /// Overrides a parameter: --set name=value (repeatable).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Print the result as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Tasks run at once (-1 = logical CPUs + 2); overrides the package's max_concurrent.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_concurrent: Option<i64>,
    /// Run on a coordinator instead of in this process.
    #[arg(long, value_name = "ADDR")]
    pub coordinator: Option<String>,
    /// With --coordinator: print the execution id and return.
    #[arg(long)]
    pub detach: bool,
    /// A coordinator.toml whose agents `agent_job` tasks reach.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Overrides the package's checkpoint usage (dtexec /Restart): never runs from the start,
    /// if_exists and always restart from the checkpoint file when there is one (with
    /// --coordinator, the file the coordinator keeps for the package).
    #[arg(long, value_name = "USAGE", value_parser = ["never", "if_exists", "always"])]
    pub restart: Option<String>,
}

/// Runs the command; returns dtexec's exit code.
pub async fn run(mut args: RunArgs) -> u8 {
    if args.coordinator.is_some() || args.detach {
        return super::coordinator::run::run(args).await;
    }
    if let Some(n) = args.max_concurrent
        && (n == 0 || n < -1)
    {
        eprintln!("error: --max-concurrent {n} is not allowed: use 1 or more, or -1 for logical CPUs + 2");
        return exit::BAD_COMMAND_LINE;
    }
    let loaded = match load_package(&args.package) {
        Ok(loaded) => loaded,
        Err(e) => return report_load_error(&e),
    };
    for warning in loaded.warnings.warnings() {
        eprintln!("{warning}");
    }
    args.sets = with_secret_env(&loaded.package, std::mem::take(&mut args.sets), |name| std::env::var(name).ok());
    let parameters = match bind_parameters(&loaded.package, &args.sets) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::BAD_COMMAND_LINE;
        }
    };
    let resume = match super::checkpoint::start(&loaded.package, args.restart.as_deref()) {
        Ok(resume) => resume,
        Err(code) => return code,
    };
    let cancel = CancellationToken::new();
    // Listen before the run starts, so an early Ctrl-C cancels instead of killing us.
    match CancelSignals::listen() {
        Ok(signals) => {
            tokio::spawn(signals.cancel_on_signal(cancel.clone()));
        }
        Err(e) => tracing::warn!(error = %e, "cannot listen for Ctrl-C and SIGTERM; they will end the run abruptly"),
    }
    let agent_jobs = match &args.config {
        None => None,
        Some(file) => {
            let caller = std::env::var("USER").unwrap_or_else(|_| "switchyard".into());
            match super::local_agents::launcher(file, &caller, cancel.child_token()).await {
                Ok(launcher) => Some(launcher),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return exit::BAD_COMMAND_LINE;
                }
            }
        }
    };
    let env = |name: &str| std::env::var(name).ok();
    let data_dir = match super::databases::data_dir(args.config.as_deref(), &env) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: {e:#}");
            return exit::BAD_COMMAND_LINE;
        }
    };
    let databases = super::databases::drivers(&data_dir, &env).await;
    let live = Arc::new(Live::new(work_tasks(&loaded.package)));
    let options = RunOptions {
        agent_jobs,
        databases: Some(databases),
        parameters,
        max_concurrent: args.max_concurrent,
        cancel,
        observer: Some(Arc::new(progress::Progress::new(live.clone()).into_observer())),
        resume,
        ..RunOptions::default()
    };
    let run = run_package(loaded.package.clone(), options).await;
    live.finish();
    let settled = super::checkpoint::finish(&loaded.package, &run);
    if args.json {
        match serde_json::to_string_pretty(&run) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot write the result as JSON: {e}");
                return exit::FAILURE;
            }
        }
    } else {
        print!("{}", progress::summary(&run));
    }
    match settled {
        Ok(()) => run.status.exit_code() as u8,
        Err(code) => code,
    }
}

/// `sets` with `name=value` added for each secret parameter they do not set whose
/// `SWITCHYARD_PARAM_<NAME>` variable (read through `env`) is set: `--set` wins.
pub fn with_secret_env(
    package: &switchyard_package::Package,
    mut sets: Vec<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    for name in &package.secrets {
        let named = sets.iter().any(|set| set.split_once('=').is_some_and(|(n, _)| n.trim() == name));
        if !named && let Some(value) = env(&secret_env_var(name)) {
            sets.push(format!("{name}={value}"));
        }
    }
    sets
}

/// Prints why a package did not load and returns the matching exit code (4 or 5).
pub fn report_load_error(error: &LoadError) -> u8 {
    match error {
        LoadError::NotFound(path) => {
            eprintln!("error: package file {} not found; check the path", path.display());
            exit::NOT_FOUND
        }
        LoadError::Unreadable { .. } | LoadError::TooLarge { .. } => {
            eprintln!("error: {error}");
            exit::INVALID
        }
        LoadError::Invalid(diagnostics) => {
            eprintln!("{diagnostics}");
            let errors = diagnostics.errors().count();
            eprintln!(
                "error: the package was not run: {errors} error(s); fix them and run again (`switchyard validate` checks without running)"
            );
            exit::INVALID
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, registered before the run starts.
struct CancelSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl CancelSignals {
    fn listen() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self { interrupt: signal(SignalKind::interrupt())?, terminate: signal(SignalKind::terminate())? })
    }

    /// The first signal cancels the run (processes get TERM, then KILL); a second exits at once.
    async fn cancel_on_signal(mut self, cancel: CancellationToken) {
        let mut signals = 0;
        loop {
            tokio::select! {
                _ = self.interrupt.recv() => {}
                _ = self.terminate.recv() => {}
            }
            signals += 1;
            if signals == 1 {
                eprintln!(
                    "canceling: no new task starts, running processes are being ended (press Ctrl-C again to exit now)"
                );
                cancel.cancel();
            } else {
                eprintln!("exiting now");
                std::process::exit(i32::from(exit::CANCELED));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_secret_env;

    #[test]
    fn secret_parameters_come_from_the_environment_unless_set() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p.toml");
        let text = "[package]\nname = \"p\"\n[parameters]\nplain = \"\"\n[parameters.db_token]\nsecret = true\n";
        std::fs::write(&path, text).expect("write");
        let package = switchyard_package::load_package(&path).expect("loads").package;
        let env = |name: &str| (name == "SWITCHYARD_PARAM_DB_TOKEN").then(|| "from-env".to_string());
        assert_eq!(with_secret_env(&package, vec![], env), ["db_token=from-env"]);
        assert_eq!(with_secret_env(&package, vec!["db_token=given".into()], env), ["db_token=given"]);
        assert!(with_secret_env(&package, vec![], |_| None).is_empty());
    }
}
