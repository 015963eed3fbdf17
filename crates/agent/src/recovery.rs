//! After a crash: end the process groups that interrupted runs left behind, then record those
//! runs failed, before the agent accepts anything.

use std::time::Duration;

use chrono::Utc;

use switchyard_package::process::{process_group_alive, terminate_process_group};

use crate::model::{EventKind, HistoryRecord, HistoryStatus, OutboxEvent, RunStatus};
use crate::runner::process_groups_key;
use crate::store::{Store, StoreError, Write};

/// The message of a run closed by recovery.
pub const INTERRUPTED: &str = "agent restarted while the run was in progress";

/// Closes every run that was queued or running when the agent last stopped; returns how many.
pub async fn close_interrupted_runs(store: &Store, kill_grace: Duration) -> Result<usize, StoreError> {
    let runs = store.runs_with_status(&[RunStatus::Queued, RunStatus::Running, RunStatus::BetweenRetries]).await?;
    for mut run in runs.iter().cloned() {
        let key = process_groups_key(&run.run_id);
        let groups: Vec<u32> =
            store.meta(&key).await?.and_then(|text| serde_json::from_str(&text).ok()).unwrap_or_default();
        for pgid in groups {
            if process_group_alive(pgid) {
                tracing::warn!(run = %run.run_id, pgid, "ending a process group left by an interrupted run");
                terminate_process_group(pgid, kill_grace).await;
            }
        }
        run.status = RunStatus::Failed;
        run.ended_at = Some(Utc::now());
        run.message = format!("The job failed: {INTERRUPTED}.  The Job was invoked by User {}.", run.requested_by);
        run.current_step = 0;
        let history = HistoryRecord {
            instance_id: 0,
            job: run.job.clone(),
            step_id: 0,
            step_name: "(Job outcome)".into(),
            run_status: HistoryStatus::Failed,
            started_at: run.started_at.unwrap_or(run.accepted_at),
            duration_ms: 0,
            message: run.message.clone(),
            run_id: run.run_id.clone(),
            retries_attempted: 0,
        };
        let event = OutboxEvent::about(&run, EventKind::Finished, run.message.clone());
        store
            .write(vec![
                Write::UpdateRun(run.clone()),
                Write::AppendHistory(history),
                Write::AppendEvent(event),
                Write::SetMeta { key, value: "[]".into() },
            ])
            .await?;
        tracing::warn!(run = %run.run_id, job = %run.job, "closed a run interrupted by a restart");
    }
    Ok(runs.len())
}
