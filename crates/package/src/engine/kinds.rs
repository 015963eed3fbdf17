//! What each kind of task does once it has started: processes, sleeps, child packages,
//! agent jobs, and containers.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::graph::{GraphOutcome, run_graph};
use super::loops::{run_for, run_foreach};
use super::precedence::ScopeValue;
use super::scope::Frame;
use super::transaction::Enclosing;
use super::{
    AgentJobRequest, ChildRecord, ChildStatus, ExecutionStatus, RunOptions, RunShared, TaskRecord, run_with_log,
};
use crate::expr::Map;
use crate::load::{LoadError, LoadOptions, confine, load_package_with};
use crate::model::{PackageTask, ParamValue, ProcessTask, Task, TaskKind, TaskResult};
use crate::process::{ProcessEnd, ProcessSpec, SpawnedProcess};
use crate::template::Template;

/// How a task's work ended, before force_result and error counting.
#[derive(Debug)]
pub(crate) struct KindOutcome {
    pub result: TaskResult,
    pub message: String,
    pub exit_code: Option<i32>,
    pub output: String,
    pub agent: Option<String>,
    /// Errors counted inside a container.
    pub inner_errors: u32,
    /// Records of a container's tasks.
    pub records: Vec<TaskRecord>,
    pub children: Vec<ChildRecord>,
}

impl KindOutcome {
    pub fn new(result: TaskResult, message: impl Into<String>) -> Self {
        Self {
            result,
            message: message.into(),
            exit_code: None,
            output: String::new(),
            agent: None,
            inner_errors: 0,
            records: Vec::new(),
            children: Vec::new(),
        }
    }

    pub fn failure(message: impl Into<String>) -> Self {
        Self::new(TaskResult::Failure, message)
    }

    /// A container's outcome from what its tasks did, against its max_errors.
    pub fn container(graph: GraphOutcome, max_errors: u32, cancel: &CancellationToken, summary: String) -> Self {
        let (result, message) = if cancel.is_cancelled() {
            (TaskResult::Canceled, format!("canceled; {summary}"))
        } else if graph.fail_parent {
            (TaskResult::Failure, format!("a task with fail_parent_on_failure failed; {summary}"))
        } else if max_errors > 0 && graph.errors >= max_errors {
            (TaskResult::Failure, format!("{} error(s) reached max_errors = {max_errors}; {summary}", graph.errors))
        } else {
            (TaskResult::Success, summary)
        };
        Self {
            inner_errors: graph.errors,
            records: graph.records,
            children: graph.children,
            ..Self::new(result, message)
        }
    }
}

/// Runs the work of a started task. `permit` is the package slot it holds, if any.
pub(crate) fn run_kind<'a>(
    shared: &'a Arc<RunShared>,
    task: &'a Task,
    path: &'a str,
    frame: &'a Frame,
    cancel: &'a CancellationToken,
    permit: Option<OwnedSemaphorePermit>,
) -> Pin<Box<dyn Future<Output = KindOutcome> + Send + 'a>> {
    Box::pin(async move {
        match &task.kind {
            TaskKind::Process(p) => {
                let outcome = run_process(shared, p, path, frame, cancel).await;
                drop(permit);
                outcome
            }
            TaskKind::Sleep(s) if s.duration.is_zero() => {
                // No timer: a zero sleep would otherwise wait for the timer wheel's next tick.
                drop(permit);
                KindOutcome::new(TaskResult::Success, "slept 0s")
            }
            TaskKind::Sleep(s) => {
                let outcome = tokio::select! {
                    _ = tokio::time::sleep(s.duration) => KindOutcome::new(TaskResult::Success, format!("slept {}", humantime::format_duration(s.duration))),
                    _ = cancel.cancelled() => KindOutcome::new(TaskResult::Canceled, "canceled while sleeping"),
                };
                drop(permit);
                outcome
            }
            TaskKind::Package(p) => {
                let outcome = run_child_package(shared, p, path, frame, cancel).await;
                drop(permit);
                outcome
            }
            TaskKind::AgentJob(job) => {
                let Some(launcher) = shared.agent_jobs.clone() else {
                    return KindOutcome::failure(format!(
                        "agent_job tasks need agents: run this package with --config coordinator.toml (which lists the agents) or --coordinator ADDR to start job \"{}\" on {}",
                        job.job, job.target
                    ));
                };
                let params = match render_params(&job.params, &mut LazyScope::new(shared, frame)) {
                    Ok(p) => p,
                    Err(e) => return KindOutcome::failure(e),
                };
                let masker = shared.events.masker();
                let secret_params = params
                    .iter()
                    .filter(|(_, v)| masker.reveals(&super::secrets::value_text(v)))
                    .map(|(k, _)| k.clone())
                    .collect();
                let request = AgentJobRequest {
                    execution_id: shared.execution_id.clone(),
                    task_path: path.to_string(),
                    task: job.clone(),
                    params,
                    secret_params,
                    package_slot: permit,
                    cancel: cancel.clone(),
                };
                let done = launcher.launch(request).await;
                KindOutcome {
                    agent: done.agent,
                    children: done.children,
                    ..KindOutcome::new(done.result, done.message)
                }
            }
            TaskKind::Sql(sql) => {
                let outcome = super::sql::run_sql(shared, task, sql, frame, cancel).await;
                drop(permit);
                outcome
            }
            TaskKind::Sequence(c) => {
                let graph = run_graph(shared, &c.tasks, frame.clone(), &format!("{path}/"), cancel).await;
                let summary = format!("{} task(s)", c.tasks.len());
                KindOutcome::container(graph, task.max_errors, cancel, summary)
            }
            TaskKind::Foreach(f) => run_foreach(shared, task, f, path, frame, cancel).await,
            TaskKind::For(f) => run_for(shared, task, f, path, frame, cancel).await,
        }
    })
}

/// Builds the expression scope the first time a template needs it.
pub(crate) struct LazyScope<'a> {
    shared: &'a RunShared,
    frame: &'a Frame,
    value: Option<ScopeValue>,
}

impl<'a> LazyScope<'a> {
    pub fn new(shared: &'a RunShared, frame: &'a Frame) -> Self {
        Self { shared, frame, value: None }
    }

    pub fn get(&mut self) -> &ScopeValue {
        self.value.get_or_insert_with(|| self.frame.value(&self.shared.params))
    }

    /// Renders a template to a string, without building the scope for literals.
    pub fn render(&mut self, template: &Template) -> Result<String, String> {
        match template.literal() {
            Some(text) => Ok(text.to_string()),
            None => template.render(&self.get().scope()).map_err(|e| e.to_string()),
        }
    }

    /// Evaluates a parameter value (typed when it is exactly one expression).
    pub fn param(&mut self, value: &ParamValue) -> Result<serde_json::Value, String> {
        match value {
            ParamValue::Literal(v) => Ok(v.clone()),
            ParamValue::Template(t) => t.render_value(&self.get().scope()).map_err(|e| e.to_string()),
        }
    }
}

fn render_params(params: &indexmap::IndexMap<String, ParamValue>, scope: &mut LazyScope<'_>) -> Result<Map, String> {
    let mut out = Map::with_capacity(params.len());
    for (name, value) in params {
        out.insert(name.clone(), scope.param(value).map_err(|e| format!("params.{name}: {e}"))?);
    }
    Ok(out)
}

fn resolve(dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() { p.to_path_buf() } else { dir.join(p) }
}

async fn run_process(
    shared: &RunShared,
    task: &ProcessTask,
    path: &str,
    frame: &Frame,
    cancel: &CancellationToken,
) -> KindOutcome {
    let mut scope = LazyScope::new(shared, frame);
    let mut argv = Vec::with_capacity(task.command.len());
    for (i, arg) in task.command.iter().enumerate() {
        match scope.render(arg) {
            Ok(a) => argv.push(a),
            Err(e) => return KindOutcome::failure(format!("command[{i}]: {e}")),
        }
    }
    let mut env = Vec::with_capacity(task.env.len());
    for (name, value) in &task.env {
        match scope.render(value) {
            Ok(v) => env.push((name.clone(), v)),
            Err(e) => return KindOutcome::failure(format!("env.{name}: {e}")),
        }
    }
    let dir = match &task.dir {
        None => shared.package.dir.clone(),
        Some(d) => match scope.render(d) {
            Ok(d) => resolve(&shared.package.dir, &d),
            Err(e) => return KindOutcome::failure(format!("dir: {e}")),
        },
    };
    let program = argv.remove(0);
    let spec = ProcessSpec {
        program,
        args: argv,
        env,
        dir,
        timeout: None,
        success_codes: task.success_codes.clone(),
        output_limit: shared.output_limit,
        kill_grace: shared.kill_grace,
    };
    let spawned = match SpawnedProcess::spawn(&spec) {
        Ok(s) => s,
        Err(e) => {
            return KindOutcome::failure(format!(
                "{e}; check the program name and PATH, and the working directory {}",
                spec.dir.display()
            ));
        }
    };
    let pgid = spawned.pid();
    if let Some(observer) = &shared.process_observer {
        observer(super::ProcessEvent::Started(pgid));
    }
    let done = spawned.wait(cancel).await;
    if let Some(observer) = &shared.process_observer {
        observer(super::ProcessEvent::Ended(pgid));
    }
    let (result, mut message) = match done.end {
        ProcessEnd::Canceled => (TaskResult::Canceled, "canceled; its process tree was ended".to_string()),
        ProcessEnd::TimedOut => (TaskResult::Failure, "timed out; its process tree was ended".to_string()),
        ProcessEnd::Exited => {
            let how = match (done.exit_code, done.signal) {
                (Some(code), _) => format!("exited with code {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                (None, None) => "ended".to_string(),
            };
            (if done.success { TaskResult::Success } else { TaskResult::Failure }, how)
        }
    };
    if result == TaskResult::Failure
        && let Some(last) = done.stderr.lines().rev().find(|l| !l.trim().is_empty())
    {
        let last: String = last.chars().take(300).collect();
        message = format!("{message}; stderr: {last}");
    }
    if let Some(observer) = &shared.output_observer {
        observer(super::ProcessOutput {
            path: format!("{}{path}", shared.event_prefix),
            stdout: shared.events.mask(&done.stdout),
            stderr: shared.events.mask(&done.stderr),
            truncated: done.stdout_truncated || done.stderr_truncated,
        });
    }
    let output = done.stdout.trim_end_matches(['\n', '\r']).to_string();
    KindOutcome { exit_code: done.exit_code, output, ..KindOutcome::new(result, message) }
}

async fn run_child_package(
    shared: &Arc<RunShared>,
    task: &PackageTask,
    path: &str,
    frame: &Frame,
    cancel: &CancellationToken,
) -> KindOutcome {
    let mut scope = LazyScope::new(shared, frame);
    let file = match scope.render(&task.path) {
        Ok(f) => f,
        Err(e) => return KindOutcome::failure(format!("path: {e}")),
    };
    let child = match &task.child {
        Some(child) => child.clone(),
        None => match confine(shared.package_root.as_deref(), &shared.package.dir, &file).and_then(|at| {
            let options = LoadOptions { limits: shared.limits.clone(), root: shared.package_root.clone() };
            load_package_with(&at, &options).map_err(|e| match e {
                LoadError::Invalid(diagnostics) => format!("child package {file} is invalid:\n{diagnostics}"),
                other => other.to_string(),
            })
        }) {
            Ok(loaded) => loaded.package,
            Err(message) => return KindOutcome::failure(message),
        },
    };
    let mut parameters = Map::new();
    for (name, value) in &task.params {
        if !child.parameters.contains_key(name) {
            return KindOutcome::failure(format!("child package \"{}\" has no parameter `{name}`", child.name));
        }
        match scope.param(value) {
            Ok(v) => {
                parameters.insert(name.clone(), v);
            }
            Err(e) => return KindOutcome::failure(format!("params.{name}: {e}")),
        }
    }
    let missing = super::secrets::missing_secrets(&child, &parameters);
    if !missing.is_empty() {
        return KindOutcome::failure(format!(
            "child package \"{}\" needs its secret parameters {}: pass them in params",
            child.name,
            missing.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    let options = RunOptions {
        execution_id: shared.execution_id.clone(),
        parameters,
        max_concurrent: None,
        cancel: cancel.clone(),
        observer: None,
        agent_jobs: shared.agent_jobs.clone(),
        output_limit: shared.output_limit,
        kill_grace: shared.kill_grace,
        process_observer: shared.process_observer.clone(),
        output_observer: shared.output_observer.clone(),
        resume: None,
        limits: shared.limits.clone(),
        package_root: shared.package_root.clone(),
        secrets: Vec::new(),
        databases: shared.databases.clone(),
    };
    let prefix = format!("{}{path}/", shared.event_prefix);
    // The child inherits the transaction only when this task joined one (its frame says so).
    let enclosing = Enclosing { transaction: frame.transaction.clone(), pool: shared.pool.clone() };
    let run = Box::pin(run_with_log(child.clone(), &options, shared.events.clone(), prefix, enclosing)).await;
    let (result, status) = match run.status {
        ExecutionStatus::Succeeded | ExecutionStatus::Completed => (TaskResult::Success, ChildStatus::Succeeded),
        ExecutionStatus::Canceled => (TaskResult::Canceled, ChildStatus::Canceled),
        _ => (TaskResult::Failure, ChildStatus::Failed),
    };
    let failed: Vec<&str> =
        run.tasks.iter().filter(|t| t.result == TaskResult::Failure).map(|t| t.path.as_str()).collect();
    let mut message = format!("child package \"{}\" {}", child.name, run.status);
    if !failed.is_empty() {
        message = format!("{message} (failed: {})", failed.join(", "));
    }
    let mut children = vec![ChildRecord {
        task: path.to_string(),
        agent: None,
        job: None,
        run_id: None,
        package: Some(file),
        status,
        duration_ms: Some(run.duration_ms),
        agent_status: None,
        tasks: run.tasks,
        attempt: 0,
        started_at: Some(run.started_at),
    }];
    for mut grandchild in run.children {
        grandchild.task = format!("{path}/{}", grandchild.task);
        children.push(grandchild);
    }
    KindOutcome { children, ..KindOutcome::new(result, message) }
}
