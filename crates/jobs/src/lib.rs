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
        for (at, message) in switchyard_package::load::syntax_errors(&parse_errors) {
            reader.error(at, "", message);
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
    let (jobs, errors) = read_jobs_dir(dir);
    (jobs.into_iter().map(|(_, job)| job).collect(), errors)
}

/// [`load_jobs_dir`], each job with the name of the file it came from.
fn read_jobs_dir(dir: &Path) -> (Vec<(String, JobDefinition)>, Vec<JobError>) {
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
                    defined_in.insert(job.name.clone(), origin.clone());
                    jobs.push((origin, job));
                }
            }
            Err(mut e) => errors.append(&mut e),
        }
    }
    (jobs, errors)
}

/// 1 to 128 characters of `A-Z a-z 0-9 _ . -`, not starting with `.` or `-`: safe as a file
/// name, a command-line argument and a label (the one name rule of switchyard-settings).
pub use switchyard_settings::is_valid_name as is_safe_name;

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

mod files;
mod read;
mod reader;

pub use files::{JobFilesRefused, load_job_files, package_errors};
use read::*;
use reader::*;
#[cfg(test)]
mod tests;
