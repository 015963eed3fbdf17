//! Checkpoints (SSIS CheckpointFileName, CheckpointUsage, dtexec /Restart): a run that does not
//! succeed writes which tasks succeeded and the package variables to the package's checkpoint
//! file; the next run with usage `if_exists` or `always` restarts from it, replaying what
//! succeeded through the same [`Resume`] a coordinator uses to resume an execution, so only what
//! had not succeeded runs. Loops and transacted containers are restart units: kept whole when
//! they succeeded, run again whole otherwise. The file is written atomically, refused when
//! another version of the package wrote it, and deleted when the package succeeds.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::report::rfc3339;
use super::resume::{EndedTask, KEPT};
use super::{EventKind, ExecutionStatus, PackageRun, Resume, TaskRecord};
use crate::expr::Map;
use crate::model::{CheckpointUsage, Package, Task, TaskKind, TaskResult, TransactionOption};

/// The layout of the file this build writes and reads.
const FORMAT: u32 = 1;

/// What a checkpoint file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The file layout (1).
    pub format: u32,
    /// The package's name.
    pub package: String,
    /// [`version_hash`] of the package that wrote it.
    pub package_hash: String,
    /// The execution that wrote it.
    pub execution_id: String,
    /// How that execution ended.
    pub status: ExecutionStatus,
    /// When it was written.
    #[serde(serialize_with = "rfc3339")]
    pub written_at: DateTime<Utc>,
    /// The package variables (`vars.<name>`) when the run ended.
    pub variables: Map,
    /// The tasks a restart keeps instead of running them again.
    pub tasks: Vec<KeptTask>,
}

/// A task (or a container kept whole) that succeeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeptTask {
    /// Its path (`Stage/Load`).
    pub path: String,
    /// Its kind.
    pub kind: String,
    /// success or completion.
    pub result: TaskResult,
    /// When it started.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: DateTime<Utc>,
    /// How long it ran.
    pub duration_ms: u64,
    /// What happened.
    pub message: String,
    /// A process task's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// What it printed (`tasks["X"].output`), secrets masked.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// The agent that ran an agent_job task's child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Errors it raised in its container (a forced success keeps them).
    #[serde(default)]
    pub errors: u32,
    /// For a container kept whole: the records of what it held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inner: Vec<TaskRecord>,
}

/// Why a checkpoint could not be used or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file exists but cannot be read.
    #[error("cannot read checkpoint file {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a checkpoint this build can read.
    #[error("{}:{line}:{column}: checkpoint file is invalid: {reason}; delete it to run from the start", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where, from 1 (0 when the whole file is at fault).
        line: usize,
        /// Where, from 1.
        column: usize,
        /// Why.
        reason: String,
    },
    /// Another package, or another version of this one, wrote it.
    #[error(
        "checkpoint file {} was written by {written}, not by this version of package \"{package}\" (hash {current}): a restart would skip tasks of a different package; delete the file to run from the start, or run the version that wrote it",
        path.display()
    )]
    OtherVersion {
        /// The file.
        path: PathBuf,
        /// This package's name.
        package: String,
        /// Which package and hash wrote it.
        written: String,
        /// This package's hash.
        current: String,
    },
    /// The file could not be written or deleted.
    #[error("cannot {action} checkpoint file {}: {source}", path.display())]
    Write {
        /// "write" or "delete".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Where a run starts.
#[derive(Debug)]
pub enum Restart {
    /// From the start, saying why.
    FromStart(String),
    /// From a checkpoint.
    FromCheckpoint {
        /// The file.
        file: PathBuf,
        /// What it holds.
        checkpoint: Checkpoint,
    },
}

/// What [`settle`] did with the checkpoint file after a run.
#[derive(Debug, PartialEq, Eq)]
pub enum Settled {
    /// The package has no checkpoint file.
    Nothing,
    /// The run succeeded: the file was deleted (or there was none).
    Deleted(PathBuf),
    /// The run did not succeed: the file now holds this many kept tasks.
    Written(PathBuf, usize),
}

/// The package's version: SHA-256 over its file's text and, in order, the versions of the
/// child packages it names by a literal path.
pub fn version_hash(package: &Package) -> String {
    let mut hasher = Sha256::new();
    hasher.update(package.source_hash.as_bytes());
    children_hash(&package.tasks, &mut hasher);
    hex::encode(hasher.finalize())
}

fn children_hash(tasks: &[Task], hasher: &mut Sha256) {
    for task in tasks {
        match &task.kind {
            TaskKind::Package(p) => {
                if let Some(child) = &p.child {
                    hasher.update(version_hash(child).as_bytes());
                }
            }
            other => children_hash(other.children().unwrap_or_default(), hasher),
        }
    }
}

/// The package's checkpoint file, resolved against its folder; `None` without `checkpoint`.
pub fn checkpoint_file(package: &Package) -> Option<PathBuf> {
    let settings = package.checkpoint.as_ref()?;
    Some(if settings.file.is_absolute() { settings.file.clone() } else { package.dir.join(&settings.file) })
}

/// Decides where a run of `package` starts: `usage` (from `--restart`) overrides the package's.
pub fn plan_restart(package: &Package, usage: Option<CheckpointUsage>) -> Result<Restart, CheckpointError> {
    let Some(file) = checkpoint_file(package) else {
        return Ok(Restart::FromStart("the package has no checkpoint file".into()));
    };
    let usage = usage.or(package.checkpoint.as_ref().map(|c| c.usage)).unwrap_or(CheckpointUsage::Never);
    if usage == CheckpointUsage::Never {
        return Ok(Restart::FromStart("checkpoint usage is \"never\"".into()));
    }
    match Checkpoint::read(&file)? {
        Some(checkpoint) => {
            checkpoint.check_version(package, &file)?;
            Ok(Restart::FromCheckpoint { file, checkpoint })
        }
        // DESIGN.md §3: `always` without a file runs from the start and says so (SSIS's
        // CheckpointUsage Always fails the package instead; the contract chose not to).
        None => Ok(Restart::FromStart(format!(
            "no checkpoint file {} (usage \"{}\"): running from the start",
            file.display(),
            usage.as_str()
        ))),
    }
}

/// After a run: deletes the checkpoint file when the package succeeded, else writes what the
/// run kept (a failed or canceled run).
pub fn settle(package: &Package, run: &PackageRun) -> Result<Settled, CheckpointError> {
    let Some(file) = checkpoint_file(package) else {
        return Ok(Settled::Nothing);
    };
    if matches!(run.status, ExecutionStatus::Succeeded | ExecutionStatus::Completed) {
        return match std::fs::remove_file(&file) {
            Ok(()) => Ok(Settled::Deleted(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settled::Deleted(file)),
            Err(source) => Err(CheckpointError::Write { action: "delete", path: file, source }),
        };
    }
    let checkpoint = Checkpoint::of_run(package, run);
    checkpoint.write(&file)?;
    Ok(Settled::Written(file, checkpoint.tasks.len()))
}

impl Checkpoint {
    /// Reads a checkpoint file; `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Unreadable { path: path.to_path_buf(), source }),
        };
        let checkpoint: Checkpoint = serde_json::from_str(&text).map_err(|e| CheckpointError::Invalid {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        })?;
        if checkpoint.format != FORMAT {
            return Err(CheckpointError::Invalid {
                path: path.to_path_buf(),
                line: 0,
                column: 0,
                reason: format!("format {} is not {FORMAT}, the one this build reads", checkpoint.format),
            });
        }
        Ok(Some(checkpoint))
    }

    /// Refuses a checkpoint another package or another version of `package` wrote.
    pub fn check_version(&self, package: &Package, path: &Path) -> Result<(), CheckpointError> {
        let current = version_hash(package);
        if self.package == package.name && self.package_hash == current {
            return Ok(());
        }
        Err(CheckpointError::OtherVersion {
            path: path.to_path_buf(),
            package: package.name.clone(),
            written: format!("package \"{}\" (hash {})", self.package, self.package_hash),
            current,
        })
    }

    /// Writes the file atomically: a temporary file in the same folder, synced, then renamed
    /// over the old one, so a crash leaves the old checkpoint or the new one, never a torn file.
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let failed = |source| CheckpointError::Write { action: "write", path: path.to_path_buf(), source };
        let text = serde_json::to_vec_pretty(self).map_err(|e| failed(std::io::Error::other(e)))?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
        temp.write_all(&text).map_err(failed)?;
        temp.as_file().sync_all().map_err(failed)?;
        temp.persist(path).map_err(|e| failed(e.error))?;
        // The rename is durable once the folder is synced.
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(failed)?;
        Ok(())
    }

    /// What a run that did not succeed leaves for the next one: the tasks that succeeded
    /// (leaf tasks outside restart units, and restart units that succeeded whole) and the
    /// package variables.
    pub fn of_run(package: &Package, run: &PackageRun) -> Checkpoint {
        let mut units = Vec::new();
        restart_units(&package.tasks, "", &mut units);
        let inside = |path: &str| units.iter().any(|unit| is_within(path, unit));
        let record = |path: &str| run.tasks.iter().find(|t| t.path == path);
        let succeeded = |result: TaskResult| matches!(result, TaskResult::Success | TaskResult::Completion);

        let ended = Resume::from_events(&run.events).ended;
        let mut tasks: Vec<KeptTask> = ended
            .into_iter()
            .filter(|(path, e)| succeeded(e.result) && !inside(path))
            .map(|(path, e)| KeptTask {
                kind: record(&path).map_or("", |r| r.kind).to_string(),
                started_at: record(&path).and_then(|r| r.started_at).unwrap_or(e.started_at),
                ..kept(path, e)
            })
            .collect();
        for unit in &units {
            let Some(container) = record(unit).filter(|r| succeeded(r.result)) else { continue };
            let errors = run
                .events
                .iter()
                .rev()
                .find_map(|e| match &e.kind {
                    EventKind::TaskFinished { errors, .. } if e.path == *unit => Some(*errors),
                    _ => None,
                })
                .unwrap_or(0);
            tasks.push(KeptTask {
                path: unit.clone(),
                kind: container.kind.to_string(),
                result: container.result,
                started_at: container.started_at.unwrap_or(run.started_at),
                duration_ms: container.duration_ms.unwrap_or(0),
                message: strip_kept(&container.message),
                exit_code: None,
                output: String::new(),
                agent: None,
                errors,
                inner: run.tasks.iter().filter(|t| is_within(&t.path, unit)).cloned().collect(),
            });
        }
        // File order, so the file reads like the report.
        let order = |path: &str| run.tasks.iter().position(|t| t.path == path).unwrap_or(usize::MAX);
        tasks.sort_by_key(|t| order(&t.path));
        Checkpoint {
            format: FORMAT,
            package: package.name.clone(),
            package_hash: version_hash(package),
            execution_id: run.execution_id.clone(),
            status: run.status,
            written_at: Utc::now(),
            variables: run.variables.clone(),
            tasks,
        }
    }

    /// The [`Resume`] that replays what this checkpoint kept, in a new execution.
    pub fn resume(&self) -> Resume {
        let ended = self
            .tasks
            .iter()
            .map(|t| {
                let ended = EndedTask {
                    result: t.result,
                    message: t.message.clone(),
                    exit_code: t.exit_code,
                    output: t.output.clone(),
                    agent: t.agent.clone(),
                    duration_ms: t.duration_ms,
                    started_at: t.started_at,
                    errors: t.errors,
                    inner: t.inner.clone(),
                };
                (t.path.clone(), ended)
            })
            .collect();
        Resume {
            ended,
            last_sequence: 0,
            variables: self.variables.clone(),
            checkpoint_of: Some(self.execution_id.clone()),
        }
    }
}

fn kept(path: String, e: EndedTask) -> KeptTask {
    KeptTask {
        path,
        kind: String::new(),
        result: e.result,
        started_at: e.started_at,
        duration_ms: e.duration_ms,
        message: strip_kept(&e.message),
        exit_code: e.exit_code,
        output: e.output,
        agent: e.agent,
        errors: e.errors,
        inner: Vec::new(),
    }
}

/// A message without the note a restart added, so restarts do not stack notes.
fn strip_kept(message: &str) -> String {
    message.strip_suffix(KEPT).unwrap_or(message).to_string()
}

/// The paths of the restart units: loops and transacted containers, which run again whole
/// (SSIS: "a Foreach Loop container and a transacted container are atomic units"). Sequences
/// that are neither are looked into; what a `package` task runs is one task to its parent.
fn restart_units(tasks: &[Task], prefix: &str, out: &mut Vec<String>) {
    for task in tasks {
        let path = format!("{prefix}{}", task.name);
        let transacted = task.transaction == TransactionOption::Required && task.kind.children().is_some();
        match &task.kind {
            TaskKind::Foreach(_) | TaskKind::For(_) => out.push(path),
            _ if transacted => out.push(path),
            TaskKind::Sequence(c) => restart_units(&c.tasks, &format!("{path}/"), out),
            _ => {}
        }
    }
}

/// True when `path` is inside the container at `unit` (`Loop/X`, `Loop[2]/X`).
fn is_within(path: &str, unit: &str) -> bool {
    path.strip_prefix(unit).is_some_and(|rest| rest.starts_with('/') || rest.starts_with('['))
}
