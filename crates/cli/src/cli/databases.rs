//! The database drivers of a local `switchyard run`: where the two-phase commit journal lives
//! (the data dir), and the recovery of prepared transactions a run that died left behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use switchyard_coordinator::config::{ConfigOverrides, CoordinatorConfig};
use switchyard_settings::Settings;
use switchyard_sql::{Drivers, Fault};

/// The environment variable naming the data dir of a local run without `--config`.
pub const DATA_DIR_ENV: &str = "SWITCHYARD_DATA_DIR";

/// Set to `abort_after_prepare` to abort a local run between PREPARE TRANSACTION and COMMIT
/// PREPARED (what recovery is tested against).
pub const FAULT_ENV: &str = "SWITCHYARD_FAULT_2PC";

/// The data dir of a local run: `data_dir` of `--config coordinator.toml`, else
/// `$SWITCHYARD_DATA_DIR`, else `$HOME/.local/state/switchyard`.
pub fn data_dir(config: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<PathBuf> {
    if let Some(file) = config {
        let config = CoordinatorConfig::load(Some(file), std::env::vars(), ConfigOverrides::default())
            .with_context(|| format!("loading {}", file.display()))?;
        return Ok(config.data_dir);
    }
    if let Some(dir) = env(DATA_DIR_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = env("HOME").filter(|h| !h.is_empty()).context("no data dir: set SWITCHYARD_DATA_DIR or HOME")?;
    Ok(Path::new(&home).join(".local/state/switchyard"))
}

/// Resolves what earlier runs left prepared in `data_dir` (saying so on stderr), then returns
/// the drivers this run uses.
pub async fn drivers(data_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Arc<Drivers> {
    match switchyard_sql::recover(data_dir).await {
        Ok(resolved) => {
            for r in resolved {
                eprintln!("switchyard: {}", r.message);
            }
        }
        Err(e) => eprintln!("warning: {e}"),
    }
    let fault = (env(FAULT_ENV).as_deref() == Some("abort_after_prepare")).then_some(Fault::AbortAfterPrepare);
    Arc::new(Drivers::new(data_dir).with_fault(fault))
}
