//! One attempt of one job step: a command (a process tree of its own) or a package run by the
//! engine. Process groups are recorded while they run so a restarted agent can end them.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use switchyard_package::engine::{Masker, ProcessEvent, RunOptions, run_package, value_text};
use switchyard_package::expr::Map;
use switchyard_package::load::LoadOptions;
use switchyard_package::process::{ProcessEnd, ProcessSpec, SpawnedProcess};
use switchyard_package::{ExecutionStatus, LoadError, TaskResult};

use super::RunHost;
use super::package_output::PackageOutput;
use crate::jobs::{StepDefinition, StepWork};
use crate::model::{HistoryStatus, RunRecord, StepOutputRecord};
use crate::package_cache::package_location;
use crate::store::Write;

/// How one step attempt ended.
#[derive(Debug, Clone)]
pub(crate) struct StepResult {
    /// Succeeded, Failed or Canceled.
    pub status: HistoryStatus,
    /// What happened, for the history row.
    pub message: String,
    /// A command step's exit code.
    pub exit_code: Option<i32>,
}

/// The meta key under which a run's live process groups are kept.
pub(crate) fn process_groups_key(run_id: &str) -> String {
    format!("process_groups:{run_id}")
}

/// Records a run's live process groups in the store, in order, from one task.
pub(crate) struct ProcessGroups {
    tx: mpsc::UnboundedSender<(ProcessEvent, Option<oneshot::Sender<()>>)>,
    task: tokio::task::JoinHandle<()>,
}

impl ProcessGroups {
    /// Starts the recorder of one run.
    pub fn start(host: Arc<dyn RunHost>, run_id: String) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(ProcessEvent, Option<oneshot::Sender<()>>)>();
        let task = tokio::spawn(async move {
            let mut live: Vec<u32> = Vec::new();
            while let Some((event, done)) = rx.recv().await {
                match event {
                    ProcessEvent::Started(pgid) => live.push(pgid),
                    ProcessEvent::Ended(pgid) => live.retain(|&p| p != pgid),
                }
                let value = serde_json::to_string(&live).unwrap_or_else(|_| "[]".into());
                if let Err(e) =
                    host.store().write(vec![Write::SetMeta { key: process_groups_key(&run_id), value }]).await
                {
                    tracing::warn!(run = %run_id, error = %e, "cannot record process groups");
                }
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
        });
        Self { tx, task }
    }

    /// Records an event without waiting (the engine's observer is synchronous).
    pub fn note(&self, event: ProcessEvent) {
        let _ = self.tx.send((event, None));
    }

    /// Records an event and waits until it is durable.
    pub async fn record(&self, event: ProcessEvent) {
        let (done, wait) = oneshot::channel();
        if self.tx.send((event, Some(done))).is_ok() {
            let _ = wait.await;
        }
    }

    /// An observer for the engine that notes every process group.
    pub fn observer(&self) -> switchyard_package::engine::ProcessObserver {
        let tx = self.tx.clone();
        Arc::new(move |event| {
            let _ = tx.send((event, None));
        })
    }

    /// Flushes what is queued and ends the recorder.
    pub async fn stop(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// Runs one attempt of a step; returns its result, its output, and the hash of the package it ran.
pub(crate) async fn run_attempt(
    host: &Arc<dyn RunHost>,
    record: &RunRecord,
    step: &StepDefinition,
    attempt: u32,
    cancel: &CancellationToken,
    groups: &ProcessGroups,
) -> (StepResult, StepOutputRecord, Option<String>) {
    let attempt_cancel = cancel.child_token();
    let work = run_work(host, record, step, &attempt_cancel, groups);
    tokio::pin!(work);
    let (mut result, stdout, stderr, truncated, hash) = match step.timeout {
        None => work.await,
        Some(limit) => tokio::select! {
            done = &mut work => done,
            _ = tokio::time::sleep(limit) => {
                attempt_cancel.cancel();
                let (mut result, stdout, stderr, truncated, hash) = work.await;
                if !cancel.is_cancelled() {
                    result.status = HistoryStatus::Failed;
                    result.message = format!("The step timed out after {}.", humantime::format_duration(limit));
                }
                (result, stdout, stderr, truncated, hash)
            }
        },
    };
    if cancel.is_cancelled() {
        result.status = HistoryStatus::Canceled;
    }
    // What is recorded (history rows, captured output) never shows a secret.
    let masker = Masker::new(record.secrets.values().map(value_text));
    masker.mask_in_place(&mut result.message);
    let (stdout, stderr) = (masker.mask(&stdout), masker.mask(&stderr));
    let output = StepOutputRecord {
        run_id: record.run_id.clone(),
        step_id: step.id,
        step_name: step.name.clone(),
        attempt,
        stdout,
        stderr,
        truncated,
    };
    (result, output, hash)
}

type WorkDone = (StepResult, String, String, bool, Option<String>);

async fn run_work(
    host: &Arc<dyn RunHost>,
    record: &RunRecord,
    step: &StepDefinition,
    cancel: &CancellationToken,
    groups: &ProcessGroups,
) -> WorkDone {
    match &step.work {
        StepWork::Command { argv, env, dir, success_codes } => {
            let dir = dir
                .as_deref()
                .map_or_else(|| host.config().packages_dir.clone(), |d| host.config().packages_dir.join(d));
            let spec = ProcessSpec {
                program: argv[0].clone(),
                args: argv[1..].to_vec(),
                env: env.clone(),
                dir,
                timeout: None,
                success_codes: success_codes.clone(),
                output_limit: host.config().output_cap(),
                kill_grace: host.config().kill_grace,
            };
            run_command(&spec, cancel, groups).await
        }
        StepWork::Package { path, params } => run_package_step(host, record, path, params, cancel, groups).await,
    }
}

async fn run_command(spec: &ProcessSpec, cancel: &CancellationToken, groups: &ProcessGroups) -> WorkDone {
    let spawned = match SpawnedProcess::spawn(spec) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("{e}; check the command and PATH on this agent");
            return (
                StepResult { status: HistoryStatus::Failed, message, exit_code: None },
                String::new(),
                String::new(),
                false,
                None,
            );
        }
    };
    let pgid = spawned.pid();
    groups.record(ProcessEvent::Started(pgid)).await;
    let done = spawned.wait(cancel).await;
    groups.note(ProcessEvent::Ended(pgid));
    let (status, message) = match done.end {
        ProcessEnd::Canceled => (HistoryStatus::Canceled, "The process tree was ended.".to_string()),
        ProcessEnd::TimedOut => (HistoryStatus::Failed, "The process timed out.".to_string()),
        ProcessEnd::Exited => {
            let how = match (done.exit_code, done.signal) {
                (Some(code), _) => format!("Process exit code {code}."),
                (None, Some(signal)) => format!("Process killed by signal {signal}."),
                (None, None) => "Process ended.".to_string(),
            };
            (if done.success { HistoryStatus::Succeeded } else { HistoryStatus::Failed }, how)
        }
    };
    let truncated = done.stdout_truncated || done.stderr_truncated;
    (StepResult { status, message, exit_code: done.exit_code }, done.stdout, done.stderr, truncated, None)
}

async fn run_package_step(
    host: &Arc<dyn RunHost>,
    record: &RunRecord,
    path: &str,
    step_params: &Map,
    cancel: &CancellationToken,
    groups: &ProcessGroups,
) -> WorkDone {
    let failed = |message: String| {
        (
            StepResult { status: HistoryStatus::Failed, message, exit_code: None },
            String::new(),
            String::new(),
            false,
            None,
        )
    };
    let (file, root) = package_location(host.config(), path);
    let load_options = LoadOptions { limits: host.config().limits.clone(), root: Some(root.clone()) };
    let (package, hash) = match host.packages().load_with(&file, &load_options) {
        Ok(loaded) => (loaded.package, loaded.hash),
        Err(LoadError::NotFound(_)) => {
            return failed(format!(
                "package \"{path}\" is not on this agent (looked in {}); push it with `switchyard deploy` or PutPackage",
                host.config().packages_dir.display()
            ));
        }
        Err(e) => return failed(format!("package \"{path}\" cannot be loaded: {e}")),
    };
    // Step params are defaults; the start's params override them. Each package takes the
    // parameters it declares: a job's params may be meant for another of its steps.
    let mut parameters = Map::new();
    for (name, value) in step_params.iter().chain(record.params.iter()).chain(record.secrets.iter()) {
        if package.parameters.contains_key(name) {
            parameters.insert(name.clone(), value.clone());
        }
    }
    let resume = match super::checkpoint::start(&package, &root) {
        Ok(resume) => resume,
        Err(message) => return failed(format!("package \"{path}\": {message}")),
    };
    let output = PackageOutput::default();
    let options = RunOptions {
        output_observer: Some(output.observer()),
        execution_id: record.run_id.clone(),
        parameters,
        resume,
        cancel: cancel.clone(),
        output_limit: host.config().output_cap(),
        kill_grace: host.config().kill_grace,
        process_observer: Some(groups.observer()),
        limits: host.config().limits.clone(),
        package_root: Some(root),
        secrets: record.secrets.values().map(value_text).collect(),
        databases: Some(Arc::new(switchyard_sql::Drivers::new(&host.config().data_dir))),
        ..RunOptions::default()
    };
    let run = run_package(package.clone(), options).await;
    let checkpoint_note = super::checkpoint::finish(&package, &run);
    // What the processes printed, not a summary of the tasks: their results are in the history.
    let (stdout, stderr, truncated) = output.finish(host.config().output_cap());
    let failures: Vec<&str> =
        run.tasks.iter().filter(|t| t.result == TaskResult::Failure).map(|t| t.path.as_str()).collect();
    let (status, message) = match run.status {
        ExecutionStatus::Succeeded | ExecutionStatus::Completed => {
            (HistoryStatus::Succeeded, format!("Package \"{}\" succeeded.", run.package))
        }
        ExecutionStatus::Canceled => (HistoryStatus::Canceled, format!("Package \"{}\" was canceled.", run.package)),
        _ if failures.is_empty() => (HistoryStatus::Failed, format!("Package \"{}\" failed.", run.package)),
        _ => (
            HistoryStatus::Failed,
            format!("Package \"{}\" failed (failed tasks: {}).", run.package, failures.join(", ")),
        ),
    };
    let (status, message) = match checkpoint_note {
        Ok(None) => (status, message),
        Ok(Some(note)) => (status, format!("{message} {note}")),
        Err(problem) => (HistoryStatus::Failed, format!("{message} {problem}")),
    };
    (StepResult { status, message, exit_code: None }, stdout, stderr, truncated, Some(hash))
}
