//! A package step's checkpoint: a job step runs its package like dtexec, so a package with
//! `checkpoint = { file, usage }` restarts from the file a failed run of the step left, and the
//! file is deleted once the package succeeds. The file must stay inside packages_dir.

use std::path::{Component, Path};
use std::sync::Arc;

use switchyard_package::Package;
use switchyard_package::engine::{PackageRun, Restart, Resume, Settled, checkpoint_file, plan_restart, settle};

/// Where the step's package starts: `Err` says why it cannot run (the step fails with it).
pub(super) fn start(package: &Package, root: &Path) -> Result<Option<Arc<Resume>>, String> {
    let Some(settings) = &package.checkpoint else {
        return Ok(None);
    };
    let file = &settings.file;
    if file.is_absolute() || file.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!(
            "checkpoint file \"{}\" is refused: on an agent it is named relative to its package and stays inside packages_dir ({}); no absolute path, no `..`",
            file.display(),
            root.display()
        ));
    }
    match plan_restart(package, None).map_err(|e| e.to_string())? {
        Restart::FromStart(_) => Ok(None),
        Restart::FromCheckpoint { checkpoint, .. } => Ok(Some(Arc::new(checkpoint.resume()))),
    }
}

/// Settles the checkpoint file after the run: `Ok(Some(note))` to append to the step's message,
/// `Err` when the file could not be written or deleted (the step then fails).
pub(super) fn finish(package: &Package, run: &PackageRun) -> Result<Option<String>, String> {
    if checkpoint_file(package).is_none() {
        return Ok(None);
    }
    match settle(package, run) {
        Ok(Settled::Written(_, kept)) => Ok(Some(format!(
            "Checkpoint written ({kept} task(s) succeeded): the next run restarts from the failed task."
        ))),
        Ok(_) => Ok(None),
        Err(e) => Err(format!("Checkpoint: {e}.")),
    }
}
