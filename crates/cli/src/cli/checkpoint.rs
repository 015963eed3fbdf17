//! `switchyard run --restart` and the package's `checkpoint`: where a local run starts, and
//! what is left in the checkpoint file after it (dtexec /Restart, SSIS checkpoints).

use std::sync::Arc;

use switchyard_package::Package;
use switchyard_package::engine::{PackageRun, Restart, Resume, Settled, plan_restart, settle};
use switchyard_package::model::CheckpointUsage;

use super::exit;

/// Decides where the run starts and says so on stderr; `Err` holds the exit code of a refusal.
pub fn start(package: &Package, restart: Option<&str>) -> Result<Option<Arc<Resume>>, u8> {
    let usage = match restart {
        None => None,
        Some(name) => match CheckpointUsage::parse(name) {
            Some(usage) => Some(usage),
            None => {
                eprintln!("error: --restart {name}: expected one of {}", CheckpointUsage::NAMES.join(", "));
                return Err(exit::BAD_COMMAND_LINE);
            }
        },
    };
    if package.checkpoint.is_none() {
        if let Some(usage) = usage.filter(|u| *u != CheckpointUsage::Never) {
            eprintln!(
                "error: --restart {}: package \"{}\" has no checkpoint file to restart from; add checkpoint = {{ file = \"{}.ckpt\", usage = \"if_exists\" }} to its [package]",
                usage.as_str(),
                package.name,
                package.name
            );
            return Err(exit::BAD_COMMAND_LINE);
        }
        return Ok(None);
    }
    match plan_restart(package, usage) {
        Ok(Restart::FromStart(reason)) => {
            eprintln!("checkpoint: {reason}");
            Ok(None)
        }
        Ok(Restart::FromCheckpoint { file, checkpoint }) => {
            eprintln!(
                "checkpoint: restarting from {} (execution {} {}): {} task(s) that succeeded are kept, the rest runs",
                file.display(),
                checkpoint.execution_id,
                checkpoint.status,
                checkpoint.tasks.len()
            );
            Ok(Some(Arc::new(checkpoint.resume())))
        }
        Err(e) => {
            // As SSIS: a restart that cannot use its checkpoint fails the package.
            eprintln!("error: {e}");
            Err(exit::FAILURE)
        }
    }
}

/// Deletes the checkpoint file after a success, writes it after a failure, and says so on
/// stderr; `Err` holds the exit code when the file could not be settled.
pub fn finish(package: &Package, run: &PackageRun) -> Result<(), u8> {
    match settle(package, run) {
        Ok(Settled::Nothing) => Ok(()),
        Ok(Settled::Deleted(file)) => {
            eprintln!("checkpoint: the package succeeded; {} deleted", file.display());
            Ok(())
        }
        Ok(Settled::Written(file, kept)) => {
            eprintln!(
                "checkpoint: {} written ({kept} task(s) succeeded); run again with usage if_exists or always (or --restart if_exists) to restart from the failed task",
                file.display()
            );
            Ok(())
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(exit::FAILURE)
        }
    }
}
