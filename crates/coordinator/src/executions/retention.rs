//! Retention (DESIGN.md §12): finished executions, their events, task rows, child runs and
//! files are pruned once older than `execution_retention` (SSISDB's retention window, 365 days
//! by default) or beyond the newest `executions_max` (SQL Server Agent keeps 1,000 history
//! rows). The coordinator prunes at start, after executions finish (at most once per
//! [`PRUNE_GAP`]) and every [`PRUNE_EVERY`]; `switchyard prune` (PruneExecutions) on demand.

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::Executions;
use crate::error::Error;
use crate::store::Write;

/// The longest time between two prunes when nothing finishes: an execution ages out within it.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The shortest time between two prunes, so a burst of finishing executions prunes once.
pub const PRUNE_GAP: Duration = Duration::from_secs(1);

/// Executions deleted per store write: a prune of many does not hold the writer in one long
/// transaction.
const DELETE_BATCH: usize = 100;

/// The instant `age` before now; `None` when that is before any representable time.
fn cutoff(age: Duration) -> Option<chrono::DateTime<Utc>> {
    Utc::now().checked_sub_signed(chrono::Duration::from_std(age).ok()?)
}

/// How long and how many finished executions the coordinator keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Finished executions started longer ago go; `None` keeps them whatever their age.
    pub max_age: Option<Duration>,
    /// Finished executions beyond the newest this many (of any status) go; `None` keeps any number.
    pub max_count: Option<usize>,
}

impl Default for Retention {
    /// 365 days and 1,000 executions.
    fn default() -> Self {
        Retention { max_age: Some(Duration::from_secs(365 * 24 * 3600)), max_count: Some(1000) }
    }
}

/// What one prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// The executions removed, oldest first.
    pub execution_ids: Vec<String>,
    /// How many executions remain stored.
    pub remaining: u64,
}

impl Executions {
    /// The retention this coordinator applies.
    pub fn retention(&self) -> Retention {
        *self.inner.retention.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Prunes what `retention` says is due now: the stored rows in batches, then each
    /// execution's folder of files. One prune runs at a time.
    pub async fn prune(&self, retention: Retention) -> Result<Pruned, Error> {
        let _one_at_a_time = self.inner.pruning.lock().await;
        let store = &self.inner.store;
        // An age beyond any representable time prunes nothing by age.
        let cutoff = retention.max_age.and_then(cutoff);
        let mut due = store.due_for_pruning(cutoff, retention.max_count).await?;
        // The store's statuses say these ended; an execution still in memory is kept regardless.
        {
            let live = self.inner.live.lock().unwrap_or_else(|p| p.into_inner());
            due.retain(|id| !live.contains_key(id));
        }
        for batch in due.chunks(DELETE_BATCH) {
            store.write(vec![Write::DeleteExecutions(batch.to_vec())]).await?;
        }
        let dirs: Vec<_> = due.iter().map(|id| self.inner.data_dir.join("executions").join(id)).collect();
        let removed = tokio::task::spawn_blocking(move || {
            for dir in dirs {
                match std::fs::remove_dir_all(&dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a pruned execution's files")
                    }
                }
            }
        })
        .await;
        if let Err(e) = removed {
            tracing::warn!(error = %e, "removing pruned executions' files stopped");
        }
        let remaining = store.execution_count().await?;
        if !due.is_empty() {
            tracing::info!(pruned = due.len(), remaining, "pruned executions past their retention");
        }
        Ok(Pruned { execution_ids: due, remaining })
    }

    /// Keeps the store within `retention` until `shutdown`: prunes now, after executions finish
    /// (at most once per [`PRUNE_GAP`]) and every [`PRUNE_EVERY`].
    pub fn keep_pruned(&self, retention: Retention, shutdown: CancellationToken) {
        *self.inner.retention.lock().unwrap_or_else(|p| p.into_inner()) = retention;
        let executions = self.clone();
        tokio::spawn(async move {
            loop {
                if let Err(e) = executions.prune(retention).await {
                    tracing::warn!(error = %e, "pruning executions failed; trying again later");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(PRUNE_GAP) => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = executions.inner.finished.notified() => {}
                    _ = tokio::time::sleep(PRUNE_EVERY) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_beyond_representable_time_has_no_cutoff() {
        let day = cutoff(Duration::from_secs(86_400)).expect("a day ago");
        assert!(day < Utc::now());
        assert_eq!(cutoff(Duration::from_millis(u64::MAX)), None);
        assert_eq!(cutoff(Duration::MAX), None);
    }
}
