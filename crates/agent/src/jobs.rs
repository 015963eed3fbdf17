//! Job definitions (SQL Server Agent jobs): steps that run a child package or a command, with
//! on_success / on_failure actions and retries, read from `jobs/*.toml` or a deploy request.
//! Every problem of a text is reported together, each with its field path and position.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use switchyard_package::expr::Map;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// The queue length of `concurrency = "queue"` when `max_queue` is not given.
pub const DEFAULT_MAX_QUEUE: u32 = 10;

/// The most retries a step may ask for (SQL Server Agent's limit for `@retry_attempts`).
pub const MAX_RETRY_ATTEMPTS: u32 = 9999;

/// A job, validated: every `step:<name>` resolved, `next` on the last step resolved to a quit.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDefinition {
    pub name: String,
    pub description: Option<String>,
    pub concurrency: Concurrency,
    /// The whole job's deadline, over all steps and retries.
    pub timeout: Option<Duration>,
    /// At least one; step `id`s are 1-based and contiguous.
    pub steps: Vec<StepDefinition>,
    /// SHA-256 of `text`, lower-case hex: runs record which definition they ran.
    pub hash: String,
    /// The TOML as given.
    pub text: String,
}

/// What a start does while the job already runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// One run at a time; a second start is refused (SQL Server Agent's behavior).
    Forbid,
    /// Starts wait in a queue of at most `max_queue` and run one at a time.
    Queue { max_queue: u32 },
    /// Up to `max_running` runs at once; more are refused.
    Allow { max_running: u32 },
}

impl Concurrency {
    /// The name written in the file: `forbid`, `queue` or `allow`.
    pub fn name(&self) -> &'static str {
        match self {
            Concurrency::Forbid => "forbid",
            Concurrency::Queue { .. } => "queue",
            Concurrency::Allow { .. } => "allow",
        }
    }
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDefinition {
    /// 1-based, as `sysjobhistory.step_id` (0 is the job outcome).
    pub id: u32,
    pub name: String,
    pub work: StepWork,
    pub on_success: StepAction,
    pub on_failure: StepAction,
    /// Retries after a failed attempt; the step fails only when they are spent.
    pub retry_attempts: u32,
    pub retry_interval: Duration,
    /// Deadline of one attempt.
    pub timeout: Option<Duration>,
}

/// What a step runs.
#[derive(Debug, Clone, PartialEq)]
pub enum StepWork {
    /// A child package under the agent's packages dir.
    Package {
        /// A safe relative path (see [`safe_relative_path`]).
        path: String,
        /// Defaults for the child's parameters; a start's params override them.
        params: Map,
    },
    /// A program and its arguments, run without a shell.
    Command {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        /// The working directory, relative to the agent's packages dir (never leaving it).
        dir: Option<String>,
        /// Exit codes that mean success.
        success_codes: Vec<i32>,
    },
}

/// Where a job goes after a step succeeds or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAction {
    /// The next step; never on the last step (there it is resolved to a quit).
    Next,
    QuitSuccess,
    QuitFailure,
    /// The step at this 0-based index (possibly the same step: a loop the runner bounds).
    GoTo(usize),
}

/// One problem in a job text. `line` and `column` are 1-based; both are 0 when the problem is
/// about a whole file (it cannot be read), and `field` is empty when it is about no field.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("{origin}{}: {}{message}", position(*.line, *.column), field_prefix(.field))]
pub struct JobError {
    /// The file name, or "request" for a definition sent over gRPC.
    pub origin: String,
    pub line: usize,
    pub column: usize,
    /// The field path, like `steps[1].on_failure` (0-based indexes).
    pub field: String,
    pub message: String,
}

/// Parses and validates one job definition, reporting every problem found.
pub fn parse_job(text: &str, origin: &str) -> Result<JobDefinition, Vec<JobError>> {
    let mut reader = Reader::new(text, origin);
    let (root, parse_errors) = DeTable::parse_recoverable(text);
    if !parse_errors.is_empty() {
        for e in parse_errors {
            let at = e.span().map_or(0, |s| s.start);
            reader.error(at, "", format!("invalid TOML: {}", e.message().trim_end()));
        }
        return Err(reader.errors);
    }
    let job = read_job(&mut reader, root.get_ref(), text);
    match job {
        Some(job) if reader.errors.is_empty() => Ok(job),
        _ => {
            reader.errors.sort_by_key(|e| (e.line, e.column));
            Err(reader.errors)
        }
    }
}

/// Loads every `*.toml` of `dir`, in file name order. A missing dir holds no jobs. A job whose
/// name another file already defined is an error on the later file, which is then skipped.
pub fn load_jobs_dir(dir: &Path) -> (Vec<JobDefinition>, Vec<JobError>) {
    let mut jobs = Vec::new();
    let mut errors = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (jobs, errors),
        Err(e) => {
            errors.push(file_error(&dir.display().to_string(), format!("cannot read the jobs dir: {e}")));
            return (jobs, errors);
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
        .collect();
    files.sort();
    let mut defined_in: HashMap<String, String> = HashMap::new();
    for path in files {
        let origin = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(file_error(&origin, format!("cannot read the job file: {e}")));
                continue;
            }
        };
        match parse_job(&text, &origin) {
            Ok(job) => {
                if let Some(first) = defined_in.get(&job.name) {
                    let at = name_offset(&text);
                    let mut reader = Reader::new(&text, &origin);
                    let message = format!("job `{}` is already defined in {first}; job names must be unique", job.name);
                    reader.error(at, "name", message);
                    errors.append(&mut reader.errors);
                } else {
                    defined_in.insert(job.name.clone(), origin);
                    jobs.push(job);
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    (jobs, errors)
}

/// 1 to 128 characters of `A-Z a-z 0-9 _ . -`, not starting with `.` or `-`: safe as a file
/// name, a command-line argument and a label.
pub fn is_safe_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && !name.starts_with(['.', '-'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks a package path named by a job or a deploy: relative, `/`-separated, every component a
/// safe name, ending in `.toml`. The error says what is wrong.
pub fn safe_relative_path(path: &str) -> Result<PathBuf, String> {
    if path.is_empty() {
        return Err("the path is empty; name a package file like \"load_customers.toml\"".to_string());
    }
    if path.split(['/', '\\']).any(|c| c == "..") {
        return Err(format!("`{path}`: path traversal is not allowed; name a file under the packages dir"));
    }
    if path.contains('\\') {
        return Err(format!("`{path}`: backslashes are not allowed; separate folders with '/'"));
    }
    if path.starts_with('/') {
        return Err(format!("`{path}`: absolute paths are not allowed; give a path relative to the packages dir"));
    }
    if path.len() > 1024 {
        return Err(format!("the path is {} bytes long; at most 1024 are allowed", path.len()));
    }
    let mut out = PathBuf::new();
    for component in path.split('/') {
        if component.is_empty() {
            return Err(format!("`{path}` has an empty component (a doubled or trailing '/')"));
        }
        if !is_safe_name(component) {
            return Err(format!(
                "`{path}`: `{component}` is not a safe name (use 1 to 128 letters, digits, '_', '.' or '-', \
                 not starting with '.' or '-')"
            ));
        }
        out.push(component);
    }
    if !path.ends_with(".toml") {
        return Err(format!("`{path}` does not name a package file (it must end with \".toml\")"));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading the tree.

const JOB_FIELDS: &[&str] = &["name", "description", "concurrency", "max_queue", "max_running", "timeout", "steps"];
const STEP_FIELDS: &[&str] = &[
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

type Value<'i> = Spanned<DeValue<'i>>;

fn read_job(reader: &mut Reader<'_>, root: &DeTable<'_>, text: &str) -> Option<JobDefinition> {
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

fn read_concurrency(reader: &mut Reader<'_>, fields: &mut Fields<'_, '_>) -> Option<Concurrency> {
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
struct ActionText {
    text: String,
    at: usize,
    field: String,
}

struct StepDraft {
    name: Option<(String, usize)>,
    work: Option<StepWork>,
    on_success: Option<ActionText>,
    on_failure: Option<ActionText>,
    retry_attempts: Option<u32>,
    retry_interval: Option<Duration>,
    timeout: Option<Duration>,
    ok: bool,
}

fn read_steps(reader: &mut Reader<'_>, value: &Value<'_>) -> Option<Vec<StepDefinition>> {
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
fn resolve_action(
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

fn read_step(reader: &mut Reader<'_>, value: &Value<'_>, index: usize) -> StepDraft {
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

fn read_work(reader: &mut Reader<'_>, fields: &mut Fields<'_, '_>) -> Option<StepWork> {
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

fn read_params(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Map> {
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

fn read_argv(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Vec<String>> {
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

fn read_env(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Vec<(String, String)>> {
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
fn read_work_dir(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<String> {
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

fn read_success_codes(reader: &mut Reader<'_>, value: &Value<'_>, field: &str) -> Option<Vec<i32>> {
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
fn name_offset(text: &str) -> usize {
    DeTable::parse(text).ok().and_then(|root| root.get_ref().get("name").map(|v| v.span().start)).unwrap_or(0)
}

fn file_error(origin: &str, message: String) -> JobError {
    JobError { origin: origin.to_string(), line: 0, column: 0, field: String::new(), message }
}

fn position(line: usize, column: usize) -> String {
    if line == 0 { String::new() } else { format!(":{line}:{column}") }
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!("{field}: ") }
}

/// Collects the errors of one text, turning byte offsets into lines and columns.
struct Reader<'t> {
    origin: &'t str,
    text: &'t str,
    line_starts: Vec<usize>,
    errors: Vec<JobError>,
}

impl<'t> Reader<'t> {
    fn new(text: &'t str, origin: &'t str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { origin, text, line_starts, errors: Vec::new() }
    }

    fn error(&mut self, offset: usize, field: &str, message: impl Into<String>) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        self.errors.push(JobError {
            origin: self.origin.to_string(),
            line,
            column,
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn string(&mut self, value: &Value<'_>, field: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => self.wrong_type(value, field, "a string", other),
        }
    }

    fn integer(&mut self, value: &Value<'_>, field: &str) -> Option<i64> {
        match value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.error(value.span().start, field, "integer out of range");
                    None
                }
            },
            other => self.wrong_type(value, field, "an integer", other),
        }
    }

    fn integer_in(&mut self, value: &Value<'_>, field: &str, min: i64, max: i64) -> Option<i64> {
        let n = self.integer(value, field)?;
        if n < 0 && min == 0 {
            self.error(value.span().start, field, format!("must not be negative (found {n})"));
            return None;
        }
        if n < min || n > max {
            self.error(value.span().start, field, format!("{n} is out of range ({min} to {max})"));
            return None;
        }
        Some(n)
    }

    fn duration(&mut self, value: &Value<'_>, field: &str) -> Option<Duration> {
        let text = self.string(value, field)?;
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let message = format!("invalid duration \"{text}\" ({e}); write it like \"500ms\", \"10s\" or \"5m\"");
                self.error(value.span().start, field, message);
                None
            }
        }
    }

    fn positive_duration(&mut self, value: &Value<'_>, field: &str) -> Option<Duration> {
        let d = self.duration(value, field)?;
        if d.is_zero() {
            self.error(value.span().start, field, "must be longer than 0s; leave it out for no timeout");
            return None;
        }
        Some(d)
    }

    fn array<'v, 'i>(&mut self, value: &'v Value<'i>, field: &str) -> Option<&'v [Value<'i>]> {
        match value.get_ref() {
            DeValue::Array(a) => Some(a.as_ref()),
            other => self.wrong_type(value, field, "an array", other),
        }
    }

    fn table<'v, 'i>(&mut self, value: &'v Value<'i>, field: &str) -> Option<&'v DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            other => self.wrong_type(value, field, "a table", other),
        }
    }

    /// Any TOML value as JSON (datetimes become strings).
    fn json(&mut self, value: &Value<'_>, field: &str) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match value.get_ref() {
            DeValue::String(s) => J::String(s.to_string()),
            DeValue::Integer(_) => J::from(self.integer(value, field)?),
            DeValue::Float(f) => match f.as_str().parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Some(n) => J::Number(n),
                None => {
                    self.error(value.span().start, field, "only finite numbers are allowed");
                    return None;
                }
            },
            DeValue::Boolean(b) => J::Bool(*b),
            DeValue::Datetime(d) => J::String(d.to_string()),
            DeValue::Array(a) => {
                let mut out = Vec::with_capacity(a.len());
                for (i, item) in a.iter().enumerate() {
                    out.push(self.json(item, &format!("{field}[{i}]"))?);
                }
                J::Array(out)
            }
            DeValue::Table(t) => {
                let mut out = serde_json::Map::new();
                for (k, v) in t.iter() {
                    let key = k.get_ref().to_string();
                    let item = self.json(v, &format!("{field}.{key}"))?;
                    out.insert(key, item);
                }
                J::Object(out)
            }
        })
    }

    fn wrong_type<T>(&mut self, value: &Value<'_>, field: &str, expected: &str, found: &DeValue<'_>) -> Option<T> {
        self.error(value.span().start, field, format!("expected {expected}, found {}", found.type_str()));
        None
    }
}

/// The fields of one table, taken one by one; what is left is reported as unknown.
struct Fields<'t, 'i> {
    table: &'t DeTable<'i>,
    /// Where the table starts (its `[[steps]]` header; 0 for the root).
    at: usize,
    path: String,
    taken: Vec<String>,
}

impl<'t, 'i> Fields<'t, 'i> {
    fn new(table: &'t DeTable<'i>, at: usize, path: &str) -> Self {
        Self { table, at, path: path.to_string(), taken: Vec::new() }
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    fn take(&mut self, key: &str) -> Option<&'t Value<'i>> {
        self.taken.push(key.to_string());
        self.table.get(key)
    }

    /// A field that must be present; a missing one is reported at the table, under its own path.
    fn require(&mut self, reader: &mut Reader<'_>, key: &str, what: &str) -> Option<&'t Value<'i>> {
        let value = self.take(key);
        if value.is_none() {
            reader.error(self.at, &self.path_of(key), format!("missing required field `{key}` ({what})"));
        }
        value
    }

    /// Where a key is written.
    fn key_at(&self, key: &str) -> Option<usize> {
        self.table.get_key_value(key).map(|(k, _)| k.span().start)
    }

    fn finish(self, reader: &mut Reader<'_>, context: &str, known: &[&str]) {
        for (key, _) in self.table.iter() {
            let name = key.get_ref();
            if !self.taken.iter().any(|t| t == name.as_ref()) {
                let message = format!("unknown field `{name}` {context}; known fields are {}", known.join(", "));
                reader.error(key.span().start, &self.path_of(name), message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_STEPS: &str = r#"name = "load_customers"
description = "nightly load"

[[steps]]
name = "extract"
command = ["extract.sh", "--all"]

[[steps]]
name = "load"
package = "load_customers.toml"
params = { region = "emea", batch = 5 }
"#;

    fn errors_of(text: &str) -> Vec<JobError> {
        match parse_job(text, "job.toml") {
            Ok(job) => panic!("expected errors, got {job:?}"),
            Err(errors) => errors,
        }
    }

    /// The single error of `text`, checked to name `field` at `line`.
    fn one_error(text: &str, field: &str, line: usize) -> JobError {
        let errors = errors_of(text);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = errors.into_iter().next().expect("one error");
        assert_eq!((e.field.as_str(), e.line), (field, line), "{e}");
        e
    }

    fn job_with_step(step: &str) -> String {
        format!("name = \"j\"\n[[steps]]\nname = \"s\"\n{step}\n")
    }

    #[test]
    fn defaults_follow_ssms() {
        let job = parse_job(TWO_STEPS, "job.toml").expect("valid");
        assert_eq!(job.name, "load_customers");
        assert_eq!(job.description.as_deref(), Some("nightly load"));
        assert_eq!(job.concurrency, Concurrency::Forbid);
        assert_eq!(job.timeout, None);
        let [extract, load] = &job.steps[..] else { panic!("two steps") };
        assert_eq!((extract.id, load.id), (1, 2));
        assert_eq!(extract.on_success, StepAction::Next);
        assert_eq!(extract.on_failure, StepAction::QuitFailure);
        assert_eq!(load.on_success, StepAction::QuitSuccess, "next on the last step quits with success");
        assert_eq!(load.on_failure, StepAction::QuitFailure);
        assert_eq!((extract.retry_attempts, extract.retry_interval), (0, Duration::ZERO));
        assert_eq!(
            extract.work,
            StepWork::Command {
                argv: vec!["extract.sh".into(), "--all".into()],
                env: vec![],
                dir: None,
                success_codes: vec![0]
            }
        );
        let StepWork::Package { path, params } = &load.work else { panic!("package step") };
        assert_eq!(path, "load_customers.toml");
        assert_eq!(params.get("region"), Some(&serde_json::json!("emea")));
        assert_eq!(params.get("batch"), Some(&serde_json::json!(5)));
    }

    #[test]
    fn explicit_next_on_the_last_step_quits() {
        let text = job_with_step("command = [\"true\"]\non_success = \"next\"\non_failure = \"next\"");
        let job = parse_job(&text, "job.toml").expect("valid");
        assert_eq!(job.steps[0].on_success, StepAction::QuitSuccess);
        assert_eq!(job.steps[0].on_failure, StepAction::QuitFailure);
    }

    #[test]
    fn every_field_is_read() {
        let text = r#"name = "j"
concurrency = "queue"
max_queue = 3
timeout = "10m"
[[steps]]
name = "a"
command = ["prog", "arg"]
env = { K = "v", L = "w" }
dir = "work/here"
success_codes = [0, 3]
on_success = "step:b"
on_failure = "step:a"
retry_attempts = 2
retry_interval = "5s"
timeout = "1m"
[[steps]]
name = "b"
package = "sub/b.toml"
on_failure = "quit_success"
"#;
        let job = parse_job(text, "job.toml").expect("valid");
        assert_eq!(job.concurrency, Concurrency::Queue { max_queue: 3 });
        assert_eq!(job.timeout, Some(Duration::from_secs(600)));
        let a = &job.steps[0];
        assert_eq!(a.on_success, StepAction::GoTo(1));
        assert_eq!(a.on_failure, StepAction::GoTo(0), "a step may jump to itself");
        assert_eq!(
            (a.retry_attempts, a.retry_interval, a.timeout),
            (2, Duration::from_secs(5), Some(Duration::from_secs(60)))
        );
        assert_eq!(
            a.work,
            StepWork::Command {
                argv: vec!["prog".into(), "arg".into()],
                env: vec![("K".into(), "v".into()), ("L".into(), "w".into())],
                dir: Some("work/here".into()),
                success_codes: vec![0, 3]
            }
        );
        assert_eq!(job.steps[1].on_failure, StepAction::QuitSuccess);
    }

    #[test]
    fn concurrency_modes() {
        let base = "[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n";
        let parse = |head: &str| parse_job(&format!("name = \"j\"\n{head}\n{base}"), "job.toml").map(|j| j.concurrency);
        assert_eq!(parse("concurrency = \"queue\""), Ok(Concurrency::Queue { max_queue: DEFAULT_MAX_QUEUE }));
        assert_eq!(parse("concurrency = \"allow\"\nmax_running = 4"), Ok(Concurrency::Allow { max_running: 4 }));
        assert_eq!(Concurrency::Allow { max_running: 4 }.name(), "allow");
        let e = parse("concurrency = \"allow\"").expect_err("max_running is required");
        assert_eq!((e[0].field.as_str(), e[0].line), ("max_running", 2));
        let e = parse("concurrency = \"sometimes\"").expect_err("bad mode");
        assert_eq!((e[0].field.as_str(), e[0].line), ("concurrency", 2));
        let e = parse("max_queue = 5").expect_err("max_queue with forbid");
        assert_eq!((e[0].field.as_str(), e[0].line), ("max_queue", 2));
        assert!(e[0].message.contains("concurrency = \"queue\""), "{}", e[0]);
        let e = parse("concurrency = \"queue\"\nmax_running = 2").expect_err("max_running with queue");
        assert_eq!((e[0].field.as_str(), e[0].line), ("max_running", 3));
        let e = parse("concurrency = \"queue\"\nmax_queue = 0").expect_err("an empty queue");
        assert_eq!((e[0].field.as_str(), e[0].line), ("max_queue", 3));
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = one_error("name = \"j\"\nretries = 3\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "retries", 2);
        assert!(e.message.contains("unknown field `retries`"), "{e}");
        let e = one_error(&job_with_step("command = [\"true\"]\nretry = 1"), "steps[0].retry", 5);
        assert!(e.message.contains("retry_attempts"), "the message lists the known fields: {e}");
    }

    #[test]
    fn missing_name_and_unsafe_name() {
        one_error("[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "name", 1);
        let e = one_error("name = \"../etc\"\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "name", 1);
        assert_eq!(e.column, 8);
        one_error("name = \"-rf\"\n[[steps]]\nname = \"s\"\ncommand = [\"true\"]\n", "name", 1);
    }

    #[test]
    fn a_job_needs_steps() {
        one_error("name = \"j\"\n", "steps", 1);
        one_error("name = \"j\"\nsteps = []\n", "steps", 2);
    }

    #[test]
    fn step_errors_name_their_field_and_line() {
        let e = one_error(&job_with_step(""), "steps[0]", 2);
        assert!(e.message.contains("`package`") && e.message.contains("`command`"), "{e}");
        one_error(&job_with_step("package = \"p.toml\"\ncommand = [\"x\"]"), "steps[0].command", 5);
        one_error(&job_with_step("command = []"), "steps[0].command", 4);
        one_error(&job_with_step("command = [\"\"]"), "steps[0].command", 4);
        one_error(&job_with_step("command = \"prog arg\""), "steps[0].command", 4);
        one_error(&job_with_step("command = [\"x\"]\non_success = \"jump\""), "steps[0].on_success", 5);
        one_error(&job_with_step("command = [\"x\"]\non_failure = \"step:nope\""), "steps[0].on_failure", 5);
        let e = one_error(&job_with_step("command = [\"x\"]\nretry_attempts = -1"), "steps[0].retry_attempts", 5);
        assert!(e.message.contains("negative"), "{e}");
        let e = one_error(
            &job_with_step("command = [\"x\"]\nretry_interval = \"5 parsecs\""),
            "steps[0].retry_interval",
            5,
        );
        assert!(e.message.contains("invalid duration"), "{e}");
        one_error(&job_with_step("command = [\"x\"]\ntimeout = \"0s\""), "steps[0].timeout", 5);
        one_error(&job_with_step("command = [\"x\"]\nparams = { a = 1 }"), "steps[0].params", 5);
        one_error(&job_with_step("package = \"p.toml\"\nenv = { A = \"1\" }"), "steps[0].env", 5);
        one_error(&job_with_step("package = \"p.toml\"\ndir = \"x\""), "steps[0].dir", 5);
        one_error(&job_with_step("package = \"p.toml\"\nsuccess_codes = [1]"), "steps[0].success_codes", 5);
        one_error(&job_with_step("command = [\"x\"]\ndir = \"../up\""), "steps[0].dir", 5);
        one_error(&job_with_step("command = [\"x\"]\nsuccess_codes = [4294967296]"), "steps[0].success_codes[0]", 5);
        one_error("name = \"j\"\ntimeout = \"soon\"\n[[steps]]\nname = \"s\"\ncommand = [\"x\"]\n", "timeout", 2);
    }

    #[test]
    fn package_path_traversal_is_refused() {
        let e = one_error(&job_with_step("package = \"../secret.toml\""), "steps[0].package", 4);
        assert!(e.message.contains("path traversal is not allowed"), "{e}");
        assert_eq!(e.to_string(), format!("job.toml:4:11: steps[0].package: {}", e.message));
    }

    #[test]
    fn duplicate_step_names_are_refused_at_the_second() {
        let text =
            "name = \"j\"\n[[steps]]\nname = \"s\"\ncommand = [\"x\"]\n[[steps]]\nname = \"s\"\ncommand = [\"y\"]\n";
        let e = one_error(text, "steps[1].name", 6);
        assert!(e.message.contains("duplicate step name `s`"), "{e}");
    }

    #[test]
    fn all_errors_come_together_in_order() {
        let text = "name = \"bad name\"\nfoo = 1\n[[steps]]\nname = \"s\"\n\
                    [[steps]]\nname = \"t\"\ncommand = [\"x\"]\non_success = \"step:u\"\n";
        let errors = errors_of(text);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "foo", "steps[0]", "steps[1].on_success"]);
    }

    #[test]
    fn invalid_toml_is_reported_with_its_position() {
        let errors = errors_of("name = \"j\"\nsteps = [\n");
        assert!(errors[0].message.starts_with("invalid TOML"), "{:?}", errors[0]);
        assert_eq!(errors[0].field, "");
        assert!(!errors[0].to_string().contains(": :"), "{}", errors[0]);
    }

    #[test]
    fn hash_is_of_the_text() {
        let a = parse_job(TWO_STEPS, "a.toml").expect("valid");
        let b = parse_job(TWO_STEPS, "b.toml").expect("valid");
        let c = parse_job(&format!("{TWO_STEPS}\n# changed\n"), "a.toml").expect("valid");
        assert_eq!(a.hash, b.hash);
        assert_ne!(a.hash, c.hash);
        assert_eq!(a.hash.len(), 64);
        assert_eq!(a.text, TWO_STEPS);
    }

    #[test]
    fn load_jobs_dir_reads_every_toml_file_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("b.toml"), job_with_step("command = [\"x\"]").replace("\"j\"", "\"beta\""))
            .expect("write");
        std::fs::write(dir.path().join("a.toml"), TWO_STEPS).expect("write");
        std::fs::write(dir.path().join("notes.txt"), "not a job").expect("write");
        let (jobs, errors) = load_jobs_dir(dir.path());
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["load_customers", "beta"], "sorted by file, the name from the file's `name`");
    }

    #[test]
    fn load_jobs_dir_refuses_a_second_job_of_the_same_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("a.toml"), TWO_STEPS).expect("write");
        std::fs::write(dir.path().join("b.toml"), format!("# copy\n{TWO_STEPS}")).expect("write");
        std::fs::write(dir.path().join("c.toml"), "name = \"broken\"\n").expect("write");
        let (jobs, errors) = load_jobs_dir(dir.path());
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].hash, parse_job(TWO_STEPS, "x").expect("valid").hash, "the first file wins");
        let found: Vec<(&str, &str, usize)> =
            errors.iter().map(|e| (e.origin.as_str(), e.field.as_str(), e.line)).collect();
        assert_eq!(found, [("b.toml", "name", 2), ("c.toml", "steps", 1)]);
        assert!(errors[0].message.contains("already defined in a.toml"), "{}", errors[0]);
    }

    #[test]
    fn a_missing_jobs_dir_holds_no_jobs() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (jobs, errors) = load_jobs_dir(&dir.path().join("nope"));
        assert!(jobs.is_empty() && errors.is_empty());
    }

    #[test]
    fn safe_names() {
        for good in ["a", "load_customers", "x.toml", "A-1", "v1.2_3", &"n".repeat(128)] {
            assert!(is_safe_name(good), "{good}");
        }
        for bad in ["", ".hidden", "-rf", "a b", "a/b", "..", "é", "a:b", &"n".repeat(129)] {
            assert!(!is_safe_name(bad), "{bad}");
        }
    }

    #[test]
    fn safe_relative_paths() {
        assert_eq!(safe_relative_path("a.toml"), Ok(PathBuf::from("a.toml")));
        assert_eq!(safe_relative_path("sub/a.toml"), Ok(PathBuf::from("sub").join("a.toml")));
        let refused = |path: &str, says: &str| {
            let e = safe_relative_path(path).expect_err(path);
            assert!(e.contains(says), "{path}: {e}");
        };
        refused("../a.toml", "path traversal is not allowed");
        refused("sub/../../a.toml", "path traversal is not allowed");
        refused("..\\a.toml", "path traversal is not allowed");
        refused("/etc/a.toml", "absolute");
        refused("sub\\a.toml", "backslash");
        refused("sub//a.toml", "empty component");
        refused("", "empty");
        refused("a.yaml", ".toml");
        refused("./a.toml", "not a safe name");
        refused("sub/.a.toml", "not a safe name");
    }
}
