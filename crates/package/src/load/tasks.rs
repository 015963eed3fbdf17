//! Reading `[[tasks]]` (and nested `[[tasks.tasks]]`) into the model, kind by kind.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;
use toml::de::DeValue;

use super::Loader;
use super::constraints::{RawConstraint, read_constraints, resolve_container};
use super::reader::{Fields, Reader, Value};
use crate::model::{
    AgentJobTask, AgentTarget, Container, ForTask, ForeachItems, ForeachTask, Join, OnParentEnd, PackageTask,
    ParamValue, ProcessTask, SleepTask, Task, TaskKind, TaskResult, TransactionOption,
};
use switchyard_settings::Limits;

/// What reading tasks needs to know about the package they belong to.
pub(crate) struct Context<'a> {
    /// The package file's folder.
    pub dir: &'a Path,
}

const KINDS: &str = "process, sleep, package, agent_job, sequence, foreach or for";

/// Reads an array of task tables, then resolves and checks their constraints as one container.
pub(crate) fn read_tasks(
    reader: &mut Reader<'_>,
    loader: &mut Loader,
    context: &Context<'_>,
    value: &Value<'_>,
    path: &str,
) -> Vec<Task> {
    let Some(items) = reader.array(value, path) else { return Vec::new() };
    let mut read = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let task_path = format!("{path}[{i}]");
        if let Some(task) = read_task(reader, loader, context, item, &task_path) {
            read.push(task);
        }
    }
    resolve_container(reader, read)
}

/// A task read from the file whose constraints are not yet resolved against its siblings.
pub(crate) struct RawTask {
    pub task: Task,
    pub path: String,
    pub name_span: std::ops::Range<usize>,
    pub constraints: Vec<RawConstraint>,
}

fn read_task(
    reader: &mut Reader<'_>,
    loader: &mut Loader,
    context: &Context<'_>,
    value: &Value<'_>,
    path: &str,
) -> Option<RawTask> {
    let table = reader.table(value, path)?;
    let mut f = Fields::new(table, value.span(), path);

    let name_value = f.require(reader, "name", "unique within its container");
    let name = name_value.and_then(|v| reader.non_empty_string(v, &format!("{path}.name")));
    if let (Some(n), Some(v)) = (&name, name_value)
        && n.contains('/')
    {
        reader.error(
            &v.span(),
            &format!("{path}.name"),
            format!("task name \"{n}\" must not contain `/` (it separates containers in task paths)"),
        );
    } else if let (Some(n), Some(v)) = (&name, name_value)
        && let Err(message) = reader.limits.check_name(n, "task name")
    {
        reader.error(&v.span(), &format!("{path}.name"), message);
    }
    let kind_value = f.require(reader, "kind", KINDS);
    let kind_name = kind_value.and_then(|v| reader.string(v, &format!("{path}.kind")));

    let description = f.take("description").and_then(|v| reader.string(v, &f.path_of("description")));
    let constraints = f.take("after").map(|v| read_constraints(reader, v, &f.path_of("after"))).unwrap_or_default();
    let join = match f.take("join") {
        None => Join::All,
        Some(v) => match reader.string(v, &f.path_of("join")).as_deref() {
            Some("all") => Join::All,
            Some("any") => Join::Any,
            Some(other) => {
                reader.error(
                    &v.span(),
                    &f.path_of("join"),
                    format!("unknown join \"{other}\" (expected \"all\" or \"any\")"),
                );
                Join::All
            }
            None => Join::All,
        },
    };
    let disabled = f.take("disabled").and_then(|v| reader.boolean(v, &f.path_of("disabled"))).unwrap_or(false);
    let max_errors = f
        .take("max_errors")
        .and_then(|v| reader.integer_in(v, &f.path_of("max_errors"), 0, i64::from(u32::MAX)))
        .map_or(1, |n| n as u32);
    let fail_parent_on_failure = f
        .take("fail_parent_on_failure")
        .and_then(|v| reader.boolean(v, &f.path_of("fail_parent_on_failure")))
        .unwrap_or(false);
    let fail_package_on_failure = f
        .take("fail_package_on_failure")
        .and_then(|v| reader.boolean(v, &f.path_of("fail_package_on_failure")))
        .unwrap_or(false);
    let force_result = f.take("force_result").and_then(|v| read_force_result(reader, v, &f.path_of("force_result")));
    let timeout = f.take("timeout").and_then(|v| positive_duration(reader, v, &f.path_of("timeout")));
    let transaction = read_transaction(reader, &mut f);

    let mut kind_known = true;
    let kind = match kind_name.as_deref() {
        Some("process") => read_process(reader, &mut f).map(TaskKind::Process),
        Some("sleep") => f
            .require(reader, "duration", "how long to sleep, e.g. \"2s\"")
            .and_then(|v| reader.duration(v, &f.path_of("duration")))
            .map(|duration| TaskKind::Sleep(SleepTask { duration })),
        Some("package") => read_package_task(reader, loader, context, &mut f).map(TaskKind::Package),
        Some("agent_job") => read_agent_job(reader, &mut f).map(TaskKind::AgentJob),
        Some("sequence") => Some(TaskKind::Sequence(read_body(reader, loader, context, &mut f))),
        Some("foreach") => read_foreach(reader, loader, context, &mut f).map(TaskKind::Foreach),
        Some("for") => read_for(reader, loader, context, &mut f).map(TaskKind::For),
        Some("sql") => {
            if let Some(v) = kind_value {
                reader.error(&v.span(), &f.path_of("kind"), "task kind `sql` is not supported yet");
            }
            kind_known = false;
            None
        }
        Some(other) => {
            if let Some(v) = kind_value {
                reader.error(&v.span(), &f.path_of("kind"), format!("unknown task kind `{other}` (expected {KINDS})"));
            }
            kind_known = false;
            None
        }
        None => {
            kind_known = false;
            None
        }
    };
    // Fields can only be checked against a kind that is known.
    if kind_known {
        let context_text = format!("for a `{}` task", kind_name.as_deref().unwrap_or("?"));
        f.finish(reader, &context_text);
    }
    // A named task whose kind could not be read (an error was reported) still takes part in
    // its container's name and constraint checks, so its siblings' constraints on it are not
    // reported as naming no task; the package is refused anyway.
    let kind = kind.unwrap_or_else(|| TaskKind::Sequence(Container::default()));
    let name_span = name_value.map_or_else(|| value.span(), |v| v.span());
    Some(RawTask {
        task: Task {
            name: name?,
            description,
            kind,
            after: Vec::new(),
            join,
            disabled,
            max_errors,
            fail_parent_on_failure,
            fail_package_on_failure,
            force_result,
            timeout,
            transaction,
        },
        path: path.to_string(),
        name_span,
        constraints,
    })
}

/// `transaction` and `isolation`: only the values that need no transaction support are accepted
/// (`required` comes with transactions).
pub(crate) fn read_transaction(reader: &mut Reader<'_>, f: &mut Fields<'_, '_>) -> TransactionOption {
    let mut option = TransactionOption::Supported;
    if let Some(v) = f.take("transaction") {
        let path = f.path_of("transaction");
        match reader.string(v, &path).as_deref() {
            Some("supported") | None => {}
            Some("not_supported") => option = TransactionOption::NotSupported,
            Some("required") => reader.error(&v.span(), &path, "transaction = \"required\" is not supported yet"),
            Some(other) => reader.error(
                &v.span(),
                &path,
                format!("unknown transaction option \"{other}\" (expected required, supported or not_supported)"),
            ),
        }
    }
    f.refuse_unsupported(reader, &["isolation"], "isolation applies to transactions, which are not supported yet");
    option
}

fn read_force_result(reader: &mut Reader<'_>, v: &Value<'_>, path: &str) -> Option<TaskResult> {
    match reader.string(v, path)?.as_str() {
        "none" => None,
        "success" => Some(TaskResult::Success),
        "failure" => Some(TaskResult::Failure),
        "completion" => Some(TaskResult::Completion),
        other => {
            reader.error(
                &v.span(),
                path,
                format!("unknown result \"{other}\" (expected none, success, failure or completion)"),
            );
            None
        }
    }
}

fn positive_duration(reader: &mut Reader<'_>, v: &Value<'_>, path: &str) -> Option<Duration> {
    let d = reader.duration(v, path)?;
    if d.is_zero() {
        reader.error(&v.span(), path, "must be longer than zero");
        return None;
    }
    Some(d)
}

fn read_process(reader: &mut Reader<'_>, f: &mut Fields<'_, '_>) -> Option<ProcessTask> {
    let command_value = f.require(reader, "command", "an argument vector, e.g. [\"sh\", \"-c\", \"echo hi\"]");
    let command_path = f.path_of("command");
    let command = command_value.and_then(|v| {
        let items = reader.array(v, &command_path)?;
        if items.is_empty() {
            reader.error(&v.span(), &command_path, "must name a program to run");
            return None;
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(reader.template(item, &format!("{command_path}[{i}]"))?);
        }
        Some(out)
    });
    let mut env = Vec::new();
    if let Some(v) = f.take("env") {
        let env_path = f.path_of("env");
        if let Some(table) = reader.table(v, &env_path) {
            for (key, value) in table.iter() {
                if let Some(t) = reader.template(value, &format!("{env_path}.{}", key.get_ref())) {
                    env.push((key.get_ref().to_string(), t));
                }
            }
        }
    }
    let dir = f.take("dir").and_then(|v| reader.template(v, &f.path_of("dir")));
    let success_codes = match f.take("success_codes") {
        None => vec![0],
        Some(v) => {
            let path = f.path_of("success_codes");
            let items = reader.array(v, &path)?;
            let mut codes = Vec::new();
            for (i, item) in items.iter().enumerate() {
                codes.push(reader.integer_in(item, &format!("{path}[{i}]"), 0, 255)? as i32);
            }
            codes
        }
    };
    Some(ProcessTask { command: command?, env, dir, success_codes })
}

/// Where each parameter name was written, for errors found once the child is loaded.
type ParamSpans = Vec<(String, std::ops::Range<usize>)>;

fn read_params(reader: &mut Reader<'_>, f: &mut Fields<'_, '_>) -> (IndexMap<String, ParamValue>, ParamSpans) {
    let mut params = IndexMap::new();
    let mut spans = Vec::new();
    if let Some(v) = f.take("params") {
        let path = f.path_of("params");
        if let Some(table) = reader.table(v, &path) {
            if table.len() > reader.limits.parameters {
                let limit = reader.limits.parameters;
                reader.error(
                    &v.span(),
                    &path,
                    Limits::refusal("params", table.len(), "parameters", limit, "parameters"),
                );
            }
            for (key, value) in table.iter() {
                let name = key.get_ref().to_string();
                if let Some(p) = reader.param_value(value, &format!("{path}.{name}")) {
                    spans.push((name.clone(), key.span()));
                    params.insert(name, p);
                }
            }
        }
    }
    (params, spans)
}

fn read_package_task(
    reader: &mut Reader<'_>,
    loader: &mut Loader,
    context: &Context<'_>,
    f: &mut Fields<'_, '_>,
) -> Option<PackageTask> {
    let path_value = f.require(reader, "path", "the child package file, relative to this one");
    let path_field = f.path_of("path");
    let path = path_value.and_then(|v| reader.template(v, &path_field));
    let (params, spans) = read_params(reader, f);
    let path = path?;
    let mut child = None;
    if let (Some(relative), Some(v)) = (path.literal(), path_value) {
        match loader.load_child(context.dir, relative) {
            Ok(Some(package)) => {
                for (name, span) in &spans {
                    if !package.parameters.contains_key(name) {
                        let known: Vec<&str> = package.parameters.keys().map(String::as_str).collect();
                        reader.error(
                            span,
                            &f.path_of(&format!("params.{name}")),
                            format!(
                                "child package \"{}\" has no parameter `{name}` (it has: {})",
                                package.name,
                                if known.is_empty() { "none".to_string() } else { known.join(", ") }
                            ),
                        );
                    }
                }
                child = Some(package);
            }
            // The child's own errors are reported against the child's file.
            Ok(None) => reader.error(
                &v.span(),
                &path_field,
                format!("child package \"{relative}\" has errors (listed with its file)"),
            ),
            Err(message) => reader.error(&v.span(), &path_field, message),
        }
    }
    Some(PackageTask { path, params, child })
}

fn read_agent_job(reader: &mut Reader<'_>, f: &mut Fields<'_, '_>) -> Option<AgentJobTask> {
    let agent = f.take("agent").and_then(|v| reader.non_empty_string(v, &f.path_of("agent")));
    let pool = f.take("pool").and_then(|v| reader.non_empty_string(v, &f.path_of("pool")));
    let target = match (agent, pool) {
        (Some(a), None) => Some(AgentTarget::Agent(a)),
        (None, Some(p)) => Some(AgentTarget::Pool(p)),
        (Some(_), Some(_)) => {
            reader.error(&f.span(), f.path(), "give either `agent` or `pool`, not both");
            None
        }
        (None, None) => {
            if !f.has("agent") && !f.has("pool") {
                reader.error(
                    &f.span(),
                    f.path(),
                    "missing required field `agent` (a fixed agent) or `pool` (an agent label)",
                );
            }
            None
        }
    };
    let job_value = f.require(reader, "job", "the job's name on the agent");
    let job = job_value.and_then(|v| reader.non_empty_string(v, &f.path_of("job")));
    if let (Some(name), Some(v)) = (&job, job_value)
        && let Err(message) = reader.limits.check_name(name, "job name")
    {
        reader.error(&v.span(), &f.path_of("job"), message);
    }
    let (params, _) = read_params(reader, f);
    let wait = f.take("wait").and_then(|v| reader.boolean(v, &f.path_of("wait"))).unwrap_or(false);
    let retries =
        f.take("retries").and_then(|v| reader.integer_in(v, &f.path_of("retries"), 0, 1000)).unwrap_or(0) as u32;
    let retry_backoff = f
        .take("retry_backoff")
        .and_then(|v| reader.duration(v, &f.path_of("retry_backoff")))
        .unwrap_or(Duration::from_millis(200));
    let crash_limit =
        f.take("crash_limit").and_then(|v| reader.integer_in(v, &f.path_of("crash_limit"), 1, 1000)).unwrap_or(3)
            as u32;
    let queue_timeout = f
        .take("queue_timeout")
        .and_then(|v| reader.duration(v, &f.path_of("queue_timeout")))
        .unwrap_or(Duration::from_secs(600));
    let on_parent_end = match f.take("on_parent_end") {
        None => OnParentEnd::Cancel,
        Some(v) => match reader.string(v, &f.path_of("on_parent_end")).as_deref() {
            Some("cancel") | None => OnParentEnd::Cancel,
            Some("abandon") => OnParentEnd::Abandon,
            Some(other) => {
                reader.error(
                    &v.span(),
                    &f.path_of("on_parent_end"),
                    format!("unknown value \"{other}\" (expected cancel or abandon)"),
                );
                OnParentEnd::Cancel
            }
        },
    };
    Some(AgentJobTask {
        target: target?,
        job: job?,
        params,
        wait,
        retries,
        retry_backoff,
        crash_limit,
        queue_timeout,
        on_parent_end,
    })
}

fn read_body(reader: &mut Reader<'_>, loader: &mut Loader, context: &Context<'_>, f: &mut Fields<'_, '_>) -> Container {
    let path = f.path_of("tasks");
    let depth = path.split('.').filter(|part| part.starts_with("tasks")).count() - 1;
    if depth > reader.limits.nesting
        && let Some(v) = f.take("tasks")
    {
        let message = Limits::refusal("container nesting", depth, "nesting", reader.limits.nesting, "levels");
        reader.error(&v.span(), &path, message);
        return Container::default();
    }
    let tasks = match f.take("tasks") {
        Some(v) => read_tasks(reader, loader, context, v, &path),
        None => Vec::new(),
    };
    Container { tasks }
}

fn read_foreach(
    reader: &mut Reader<'_>,
    loader: &mut Loader,
    context: &Context<'_>,
    f: &mut Fields<'_, '_>,
) -> Option<ForeachTask> {
    let items_value = f.take("items");
    let files_value = f.take("files");
    let items = match (items_value, files_value) {
        (Some(v), None) => {
            let path = f.path_of("items");
            match v.get_ref() {
                DeValue::String(_) => reader.template(v, &path).map(ForeachItems::Expression),
                _ => reader.array(v, &path).and_then(|list| {
                    let mut out = Vec::with_capacity(list.len());
                    for (i, item) in list.iter().enumerate() {
                        out.push(reader.param_value(item, &format!("{path}[{i}]"))?);
                    }
                    Some(ForeachItems::List(out))
                }),
            }
        }
        (None, Some(v)) => reader.template(v, &f.path_of("files")).map(ForeachItems::Files),
        (Some(_), Some(_)) => {
            reader.error(&f.span(), f.path(), "give either `items` or `files`, not both");
            None
        }
        (None, None) => {
            reader.error(&f.span(), f.path(), "missing required field `items` (a list) or `files` (a glob)");
            None
        }
    };
    let var = match f.take("var") {
        None => Some("item".to_string()),
        Some(v) => reader.string(v, &f.path_of("var")).and_then(|name| {
            if super::is_identifier(&name) {
                Some(name)
            } else {
                reader.error(
                    &v.span(),
                    &f.path_of("var"),
                    format!("loop variable \"{name}\" must be an identifier (letters, digits and `_`)"),
                );
                None
            }
        }),
    };
    let parallel =
        f.take("parallel").and_then(|v| reader.integer_in(v, &f.path_of("parallel"), 1, 100_000)).unwrap_or(1) as u32;
    let body = read_body(reader, loader, context, f);
    Some(ForeachTask { items: items?, var: var?, parallel, body })
}

fn read_for(
    reader: &mut Reader<'_>,
    loader: &mut Loader,
    context: &Context<'_>,
    f: &mut Fields<'_, '_>,
) -> Option<ForTask> {
    let init = match f.take("init") {
        Some(v) => reader.assignments(v, &f.path_of("init")),
        None => Some(Vec::new()),
    };
    let condition = f
        .require(reader, "condition", "a boolean expression checked before each iteration, e.g. \"vars.i < 10\"")
        .and_then(|v| reader.expression(v, &f.path_of("condition")));
    let assign = match f.take("assign") {
        Some(v) => reader.assignments(v, &f.path_of("assign")),
        None => Some(Vec::new()),
    };
    let body = read_body(reader, loader, context, f);
    Some(ForTask { init: init?, condition: condition?, assign: assign?, body })
}
