//! Checkpoints of executions on a coordinator (DESIGN.md §3; issue 13): the same mechanism as a
//! local `switchyard run` (`switchyard_package::engine::{plan_restart, settle}`), with the file
//! kept under `data_dir/checkpoints/PACKAGE/` rather than in the execution's own folder (which
//! the next execution never sees). A restart is a new execution whose engine replays the
//! checkpoint's succeeded tasks, exactly as a coordinator restart replays stored events.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use switchyard_package::Package;
use switchyard_package::engine::{PackageRun, Restart, Resume, Settled, plan_restart, settle};
use switchyard_package::model::CheckpointUsage;

use crate::error::Error;

/// Where the coordinator keeps the checkpoint files of packages named `package`.
pub fn checkpoints_dir(data_dir: &Path, package: &str) -> PathBuf {
    data_dir.join("checkpoints").join(package)
}

/// The package with its checkpoint file moved under [`checkpoints_dir`]; unchanged without a
/// checkpoint. The file must be a relative path without `..` (it names a file of the package).
pub fn relocated(package: Arc<Package>, data_dir: &Path) -> Result<Arc<Package>, Error> {
    let Some(settings) = &package.checkpoint else { return Ok(package) };
    let confined = settings.file.components().all(|c| matches!(c, Component::Normal(_)));
    if !confined || settings.file.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(format!(
            "package \"{}\": checkpoint file {} must be a relative path without `..` on a coordinator \
             (it is kept under the coordinator's data_dir/checkpoints/{})",
            package.name,
            settings.file.display(),
            package.name
        )));
    }
    let file = checkpoints_dir(data_dir, &package.name).join(&settings.file);
    let mut moved = (*package).clone();
    if let Some(checkpoint) = moved.checkpoint.as_mut() {
        checkpoint.file = file;
    }
    Ok(Arc::new(moved))
}

/// Where an execution of `package` starts, with `restart` (a usage name, empty for the
/// package's own) overriding its usage: the resume to run with, and what to tell the caller.
pub fn plan(package: &Package, restart: &str) -> Result<(Option<Arc<Resume>>, String), Error> {
    let usage = match restart {
        "" => None,
        name => Some(CheckpointUsage::parse(name).ok_or_else(|| {
            Error::InvalidArgument(format!("restart: \"{name}\" is not one of {}", CheckpointUsage::NAMES.join(", ")))
        })?),
    };
    if package.checkpoint.is_none() {
        return match usage.filter(|u| *u != CheckpointUsage::Never) {
            Some(usage) => Err(Error::InvalidArgument(format!(
                "restart: {}: package \"{}\" has no checkpoint file to restart from; add checkpoint = {{ file = \
                 \"{}.ckpt\", usage = \"if_exists\" }} to its [package]",
                usage.as_str(),
                package.name,
                package.name
            ))),
            None => Ok((None, String::new())),
        };
    }
    match plan_restart(package, usage) {
        Ok(Restart::FromStart(reason)) => Ok((None, reason)),
        Ok(Restart::FromCheckpoint { file, checkpoint }) => {
            let said = format!(
                "restarting from {} (execution {} {}): {} task(s) that succeeded are kept, the rest runs",
                file.display(),
                checkpoint.execution_id,
                checkpoint.status,
                checkpoint.tasks.len()
            );
            Ok((Some(Arc::new(checkpoint.resume())), said))
        }
        // As SSIS: a restart that cannot use its checkpoint is refused before anything runs.
        Err(e) => Err(Error::FailedPrecondition(e.to_string())),
    }
}

/// After an execution: deletes its package's checkpoint file on success, writes it otherwise.
pub fn finish(package: &Package, run: &PackageRun) {
    // The folder is the coordinator's own: made here, not by the package's author.
    if let Some(folder) = switchyard_package::engine::checkpoint_file(package).as_deref().and_then(Path::parent)
        && let Err(e) = std::fs::create_dir_all(folder)
    {
        tracing::warn!(execution = %run.execution_id, folder = %folder.display(), error = %e, "cannot create the checkpoint folder");
    }
    match settle(package, run) {
        Ok(Settled::Nothing) => {}
        Ok(Settled::Deleted(file)) => {
            tracing::info!(execution = %run.execution_id, file = %file.display(), "checkpoint deleted: the package succeeded")
        }
        Ok(Settled::Written(file, kept)) => {
            tracing::info!(execution = %run.execution_id, file = %file.display(), kept, "checkpoint written")
        }
        Err(e) => tracing::warn!(execution = %run.execution_id, error = %e, "the checkpoint could not be settled"),
    }
}
