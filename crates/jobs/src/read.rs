//! Reading a job definition's TOML tree into the model, field by field, with positions.

use super::*;
// ---------------------------------------------------------------------------------------------
// Reading the tree.

pub(super) const JOB_FIELDS: &[&str] =
    &["name", "description", "concurrency", "max_queue", "max_running", "timeout", "steps"];
pub(super) const STEP_FIELDS: &[&str] = &[
    "name",
    "package",
    "params",
    "command",
    "env",
    "dir",
    "success_codes",
    "on_success",
    "on_failure",
    "retry_attempts",
    "retry_interval",
    "timeout",
];

pub(super) type Value<'i> = Spanned<DeValue<'i>>;

pub(super) fn read_job(reader: &mut Reader<'_>, root: &DeTable<'_>, text: &str) -> Option<JobDefinition> {
    let mut fields = Fields::new(root, 0, "");
    let name = fields.require(reader, "name", "the job's name").and_then(|v| {
        let name = reader.string(v, "name")?;
        if !is_safe_name(&name) {
            reader.error(
                v.span().start,
                "name",
                format!(
                    "`{name}` is not a safe job name: use 1 to 128 letters, digits, '_', '.' or '-', \
                     not starting with '.' or '-'"
                ),
            );
            return None;
        }
        Some(name)
    });
    let description = fields.take("description").and_then(|v| reader.string(v, "description"));
    let concurrency = read_concurrency(reader, &mut fields);
    let timeout = fields.take("timeout").and_then(|v| reader.positive_duration(v, "timeout"));
    let steps = fields.require(reader, "steps", "at least one [[steps]] table").and_then(|v| read_steps(reader, v));
    fields.finish(reader, "of a job", JOB_FIELDS);
    Some(JobDefinition {
        name: name?,
        description,
        concurrency: concurrency?,
        timeout,
        steps: steps?,
        hash: hex::encode(Sha256::digest(text.as_bytes())),
        text: text.to_string(),
    })
}

pub(super) fn read_concurrency(reader: &mut Reader<'_>, fields: &mut Fields<'_, '_>) -> Option<Concurrency> {
    let mode = fields.take("concurrency");
    let max_queue = fields.take("max_queue");
    let max_running = fields.take("max_running");
    let kind = match mode {
        None => "forbid",
        Some(v) => match reader.string(v, "concurrency")?.as_str() {
            "forbid" => "forbid",
            "queue" => "queue",
            "allow" => "allow",
            other => {
                let message = format!("unknown concurrency `{other}`; expected \"forbid\", \"queue\" or \"allow\"");
                reader.error(v.span().start, "concurrency", message);
                return None;
            }
        },
    };
    let mut misplaced = |key: &str, value: Option<&Value<'_>>, wanted: &str| {
        if let Some(v) = value {
            let message = format!("`{key}` applies only with concurrency = \"{wanted}\" (this job has \"{kind}\")");
            reader.error(fields.key_at(key).unwrap_or(v.span().start), key, message);
        }
    };
    match kind {
        "forbid" => {
            misplaced("max_queue", max_queue, "queue");
            misplaced("max_running", max_running, "allow");
            Some(Concurrency::Forbid)
        }
        "queue" => {
            misplaced("max_running", max_running, "allow");
            let max_queue = match max_queue {
                Some(v) => reader.integer_in(v, "max_queue", 1, i64::from(u32::MAX))? as u32,
                None => DEFAULT_MAX_QUEUE,
            };
            Some(Concurrency::Queue { max_queue })
        }
        _ => {
            misplaced("max_queue", max_queue, "queue");
            let Some(v) = max_running else {
                // There is no sensible default: 1 would be `forbid` under another name.
                let at = mode.map_or(0, |m| m.span().start);
                reader.error(at, "max_running", "concurrency = \"allow\" needs `max_running` (how many runs at once)");
                return None;
            };
            let max_running = reader.integer_in(v, "max_running", 1, i64::from(u32::MAX))? as u32;
            Some(Concurrency::Allow { max_running })
        }
    }
}

/// A step's action as written, resolved once every step name is known.
pub(super) struct ActionText {
    text: String,
    at: usize,
    field: String,
}

pub(super) struct StepDraft {
    name: Option<(String, usize)>,
    work: Option<StepWork>,
    on_success: Option<ActionText>,
    on_failure: Option<ActionText>,
    retry_attempts: Option<u32>,
    retry_interval: Option<Duration>,
    timeout: Option<Duration>,
    ok: bool,
}

pub(super) fn read_steps(reader: &mut Reader<'_>, value: &Value<'_>) -> Option<Vec<StepDefinition>> {
    let items = reader.array(value, "steps")?;
    if items.is_empty() {
        reader.error(value.span().start, "steps", "a job needs at least one step");
        return None;
    }
    let drafts: Vec<StepDraft> = items.iter().enumerate().map(|(i, item)| read_step(reader, item, i)).collect();

    let mut index_of: HashMap<&str, usize> = HashMap::new();
    let mut ok = drafts.iter().all(|d| d.ok);
    for (i, draft) in drafts.iter().enumerate() {
        if let Some((name, at)) = &draft.name {
            if let Some(first) = index_of.get(name.as_str()) {
                let message = format!("duplicate step name `{name}` (also steps[{first}]); step names must be unique");
                reader.error(*at, &format!("steps[{i}].name"), message);
                ok = false;
            } else {
                index_of.insert(name, i);
            }
        }
    }

    let last = drafts.len() - 1;
    let mut steps = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.iter().enumerate() {
        let on_success =
            resolve_action(reader, draft.on_success.as_ref(), &index_of, i == last, StepAction::QuitSuccess);
        let on_failure =
            resolve_action(reader, draft.on_failure.as_ref(), &index_of, i == last, StepAction::QuitFailure);
        let (Some((name, _)), Some(work), Some(on_success), Some(on_failure)) =
            (&draft.name, &draft.work, on_success, on_failure)
        else {
            ok = false;
            continue;
        };
        steps.push(StepDefinition {
            id: u32::try_from(i + 1).expect("a TOML text of any size has fewer than 2^32 steps"),
            name: name.clone(),
            work: work.clone(),
            on_success,
            on_failure,
            retry_attempts: draft.retry_attempts.unwrap_or(0),
            retry_interval: draft.retry_interval.unwrap_or(Duration::ZERO),
            timeout: draft.timeout,
        });
    }
    ok.then_some(steps)
}

/// `default` is the action when none is written: `next` for on_success, `quit_failure` for
/// on_failure; `next` on the last step becomes `quit_on_last` (SSMS does the same).
pub(super) fn resolve_action(
    reader: &mut Reader<'_>,
    action: Option<&ActionText>,
    index_of: &HashMap<&str, usize>,
    is_last: bool,
    quit_on_last: StepAction,
) -> Option<StepAction> {
    let next = if is_last { quit_on_last } else { StepAction::Next };
    let Some(action) = action else {
        return Some(if quit_on_last == StepAction::QuitSuccess { next } else { StepAction::QuitFailure });
    };
    match action.text.as_str() {
        "next" => Some(next),
        "quit_success" => Some(StepAction::QuitSuccess),
        "quit_failure" => Some(StepAction::QuitFailure),
        other => match other.strip_prefix("step:") {
            Some(target) => match index_of.get(target) {
                Some(index) => Some(StepAction::GoTo(*index)),
                None => {
                    let mut names: Vec<&str> = index_of.keys().copied().collect();
                    names.sort_by_key(|name| index_of[name]);
                    let message = format!("`{other}` names no step of this job (its steps: {})", names.join(", "));
                    reader.error(action.at, &action.field, message);
                    None
                }
            },
            None => {
                let message = format!(
                    "unknown action `{other}`; expected \"next\", \"quit_success\", \"quit_failure\" or \"step:<name>\""
                );
                reader.error(action.at, &action.field, message);
                None
            }
        },
    }
}

pub(super) fn read_step(reader: &mut Reader<'_>, value: &Value<'_>, index: usize) -> StepDraft {
    let path = format!("steps[{index}]");
    let errors_before = reader.errors.len();
    let mut draft = StepDraft {
        name: None,
        work: None,
        on_success: None,
        on_failure: None,
        retry_attempts: None,
        retry_interval: None,
        timeout: None,
        ok: false,
    };
    let Some(table) = reader.table(value, &path) else { return draft };
    let mut fields = Fields::new(table, value.span().start, &path);

    draft.name = fields.require(reader, "name", "the step's name").and_then(|v| {
        let field = fields.path_of("name");
        let name = reader.string(v, &field)?;
        if name.trim().is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            reader.error(v.span().start, &field, "a step name must be 1 to 128 characters without control characters");
            return None;
        }
        Some((name, v.span().start))
    });
    draft.work = read_work(reader, &mut fields);
    for (key, slot) in [("on_success", &mut draft.on_success), ("on_failure", &mut draft.on_failure)] {
        if let Some(v) = fields.take(key) {
            let field = fields.path_of(key);
            if let Some(text) = reader.string(v, &field) {
                *slot = Some(ActionText { text, at: v.span().start, field });
            }
        }
    }
    draft.retry_attempts = fields.take("retry_attempts").and_then(|v| {
        let n = reader.integer_in(v, &fields.path_of("retry_attempts"), 0, i64::from(MAX_RETRY_ATTEMPTS))?;
        Some(n as u32)
    });
    draft.retry_interval =
        fields.take("retry_interval").and_then(|v| reader.duration(v, &fields.path_of("retry_interval")));
    draft.timeout = fields.take("timeout").and_then(|v| reader.positive_duration(v, &fields.path_of("timeout")));
    fields.finish(reader, "of a step", STEP_FIELDS);
    draft.ok = reader.errors.len() == errors_before;
    draft
}

pub(super) fn read_work(reader: &mut Reader<'_>, fields: &mut Fields<'_, '_>) -> Option<StepWork> {
    let package = fields.take("package");
    let command = fields.take("command");
    let params = fields.take("params");
    let env = fields.take("env");
    let dir = fields.take("dir");
    let success_codes = fields.take("success_codes");
    match (package, command) {
        (Some(_), Some(_)) => {
            let at = fields.key_at("command").unwrap_or(fields.at);
            let message = "give either `package` or `command`, not both";
            reader.error(at, &fields.path_of("command"), message);
            None
        }
        (None, None) => {
            let message = "a step needs `package` (a package file under the packages dir) or `command` \
                           (a program and its arguments, like [\"prog\", \"arg\"])";
            reader.error(fields.at, fields.path(), message);
            None
        }
        (Some(package), None) => {
            for (key, value) in [("env", env), ("dir", dir), ("success_codes", success_codes)] {
                if value.is_some() {
                    let at = fields.key_at(key).unwrap_or(fields.at);
                    let message = format!("`{key}` applies only to command steps");
                    reader.error(at, &fields.path_of(key), message);
                }
            }
            let field = fields.path_of("package");
            let path = reader.string(package, &field).and_then(|path| match safe_relative_path(&path) {
                Ok(_) => Some(path),
                Err(message) => {
                    reader.error(package.span().start, &field, message);
                    None
                }
            });
            let params = match params {
                Some(v) => read_params(reader, v, &fields.path_of("params")),
                None => Some(Map::new()),
            };
            Some(StepWork::Package { path: path?, params: params? })
        }
        (None, Some(command)) => {
            if params.is_some() {
                let at = fields.key_at("params").unwrap_or(fields.at);
                let message =
                    "`params` applies only to package steps; pass values to a command with `env` or arguments";
                reader.error(at, &fields.path_of("params"), message);
            }
            let argv = read_argv(reader, command, &fields.path_of("command"));
            let env = match env {
                Some(v) => read_env(reader, v, &fields.path_of("env")),
                None => Some(Vec::new()),
            };
            let dir = match dir {
                Some(v) => read_work_dir(reader, v, &fields.path_of("dir")).map(Some),
                None => Some(None),
            };
            let success_codes = match success_codes {
                Some(v) => read_success_codes(reader, v, &fields.path_of("success_codes")),
                None => Some(vec![0]),
            };
            Some(StepWork::Command { argv: argv?, env: env?, dir: dir?, success_codes: success_codes? })
        }
    }
}

pub(super) fn read_params(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Map> {
    let table = reader.table(value, field)?;
    let mut params = Map::new();
    let mut ok = true;
    for (key, v) in table.iter() {
        let key = key.get_ref().to_string();
        match reader.json(v, &format!("{field}.{key}")) {
            Some(json) => {
                params.insert(key, json);
            }
            None => ok = false,
        }
    }
    ok.then_some(params)
}

pub(super) fn read_argv(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Vec<String>> {
    let DeValue::Array(items) = value.get_ref() else {
        let message = "expected an array of strings, the program and its arguments, like [\"prog\", \"arg\"]";
        reader.error(value.span().start, field, message);
        return None;
    };
    if items.is_empty() {
        reader.error(value.span().start, field, "the command is empty; give the program and its arguments");
        return None;
    }
    let mut argv = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        let arg = reader.string(item, &item_field)?;
        if arg.contains('\0') {
            reader.error(item.span().start, &item_field, "an argument must not contain a NUL character");
            return None;
        }
        argv.push(arg);
    }
    if argv[0].trim().is_empty() {
        reader.error(value.span().start, field, "the program (the first element) must not be empty");
        return None;
    }
    Some(argv)
}

pub(super) fn read_env(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Vec<(String, String)>> {
    let table = reader.table(value, field)?;
    let mut env = Vec::with_capacity(table.len());
    let mut ok = true;
    for (key, v) in table.iter() {
        let name = key.get_ref().to_string();
        let item_field = format!("{field}.{name}");
        if name.is_empty() || name.contains(['=', '\0']) {
            reader.error(key.span().start, &item_field, "an environment variable name must be non-empty without '='");
            ok = false;
            continue;
        }
        match reader.string(v, &item_field) {
            Some(s) if s.contains('\0') => {
                reader.error(v.span().start, &item_field, "an environment value must not contain a NUL character");
                ok = false;
            }
            Some(s) => env.push((name, s)),
            None => ok = false,
        }
    }
    ok.then_some(env)
}

/// A working directory relative to the packages dir; it may not leave it.
pub(super) fn read_work_dir(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<String> {
    let dir = reader.string(value, field)?;
    let problem = if dir.is_empty() {
        Some("must not be empty; leave `dir` out to run in the packages dir")
    } else if dir.split(['/', '\\']).any(|c| c == "..") {
        Some("path traversal is not allowed; give a folder under the packages dir")
    } else if dir.starts_with(['/', '\\']) || Path::new(&dir).is_absolute() {
        Some("must be relative to the agent's packages dir, not absolute")
    } else if dir.contains('\0') {
        Some("must not contain a NUL character")
    } else {
        None
    };
    if let Some(problem) = problem {
        reader.error(value.span().start, field, problem);
        return None;
    }
    Some(dir)
}

pub(super) fn read_success_codes(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Vec<i32>> {
    let items = reader.array(value, field)?;
    if items.is_empty() {
        reader.error(value.span().start, field, "give at least one exit code that means success, like [0]");
        return None;
    }
    let mut codes = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        codes.push(reader.integer_in(item, &format!("{field}[{i}]"), i64::from(i32::MIN), i64::from(i32::MAX))? as i32);
    }
    Some(codes)
}

/// The byte offset of the root `name` value, for an error found after parsing.
pub(super) fn name_offset(text: &str) -> usize {
    DeTable::parse(text).ok().and_then(|root| root.get_ref().get("name").map(|v| v.span().start)).unwrap_or(0)
}

pub(super) fn file_error(origin: &str, message: String) -> JobError {
    JobError { origin: origin.to_string(), line: 0, column: 0, field: String::new(), message }
}

pub(super) fn position(line: usize, column: usize) -> String {
    if line == 0 { String::new() } else { format!(":{line}:{column}") }
}

pub(super) fn field_prefix(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!("{field}: ") }
}
