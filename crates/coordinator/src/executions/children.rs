//! Child runs: updates from the launcher, outcomes the agents report (fire-and-forget children
//! too), runs reconciliation stopped, and cancels cascaded to the agents.

use std::collections::HashMap;

use chrono::Utc;
use tokio::sync::{broadcast, mpsc};

use switchyard_package::engine::ChildStatus;
use switchyard_package::model::OnParentEnd;

use super::{Executions, RunningChild};
use crate::launcher::ChildUpdate;
use crate::registry::{FenceChange, FenceLog, RunOutcome, StopReason, Stopped};
use crate::store::{ChildRunRecord, Store, Write};

impl Executions {
    /// Keeps the running children up to date and queues the child's record, in launcher order.
    pub(super) fn child_changed(&self, update: ChildUpdate) {
        let agent = update.child.agent.clone().unwrap_or_default();
        let run_id = update.child.run_id.clone().unwrap_or_default();
        {
            let mut children = self.inner.children.lock().unwrap_or_else(|p| p.into_inner());
            let list = children.entry(update.execution_id.clone()).or_default();
            if update.child.status == ChildStatus::Running {
                let child =
                    RunningChild { agent: agent.clone(), run_id: run_id.clone(), on_parent_end: update.on_parent_end };
                list.insert(run_id.clone(), child);
            } else {
                list.remove(&run_id);
            }
        }
        let record = ChildRunRecord {
            execution_id: update.execution_id,
            task_path: update.task_path,
            attempt: update.attempt,
            agent,
            job: update.child.job.unwrap_or_default(),
            run_id,
            idempotency_key: update.idempotency_key,
            status: update.child.status,
            started_at: Utc::now(),
            duration_ms: update.child.duration_ms,
            message: String::new(),
            package: update.child.package,
        };
        let _ = self.inner.child_writes.send(Write::UpsertChild(record));
    }

    /// Records the outcome of every child run the agents report (fire-and-forget children too),
    /// in the order they came, behind the fencing facts of earlier events.
    pub(super) async fn record_outcomes(self, mut outcomes: broadcast::Receiver<RunOutcome>) {
        loop {
            let outcome = match outcomes.recv().await {
                Ok(o) => o,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "outcome feed lagged");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            // Through the same ordered queue as child records and fencing facts (which batches
            // what is queued into one commit): a stream cursor is never stored ahead of a
            // fencing fact from an earlier event of its agent, which a restart in between would
            // otherwise skip and forget.
            let mut writes = Vec::with_capacity(2);
            self.outcome_writes(outcome, &mut writes);
            for write in writes {
                let _ = self.inner.child_writes.send(write);
            }
        }
    }

    /// The writes recording one outcome: the child's record and the agent's stream cursor.
    fn outcome_writes(&self, outcome: RunOutcome, batch: &mut Vec<Write>) {
        // The cursor is stored with the outcome it covers: a restarted coordinator resumes the
        // agent's stream after it and loses no outcome.
        let cursor = Write::SetAgentCursor {
            agent: outcome.agent.clone(),
            incarnation: outcome.incarnation.clone(),
            sequence: outcome.sequence,
        };
        if outcome.execution_id.is_empty() {
            batch.push(cursor);
            return;
        }
        let status = outcome.child_status();
        if let Some(list) = self.inner.children.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&outcome.execution_id)
        {
            list.remove(&outcome.run_id);
        }
        self.forget_children_if_done(&outcome.execution_id);
        // A full record: the outcome may arrive before the start was recorded.
        batch.push(Write::UpsertChild(ChildRunRecord {
            execution_id: outcome.execution_id,
            task_path: outcome.task_path,
            attempt: outcome.attempt,
            agent: outcome.agent,
            job: outcome.job,
            run_id: outcome.run_id,
            idempotency_key: outcome.idempotency_key,
            status,
            started_at: Utc::now(),
            duration_ms: Some(outcome.duration_ms),
            message: outcome.message,
            package: None,
        }));
        batch.push(cursor);
    }

    /// Records runs that reconciliation stopped on agents that came back: superseded attempts
    /// (which never change their task's state) and cancels delivered late.
    pub(super) async fn record_stops(self, mut stopped: broadcast::Receiver<Stopped>) {
        loop {
            let stop = match stopped.recv().await {
                Ok(s) => s,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let (status, message) = match stop.reason {
                StopReason::Superseded => {
                    (ChildStatus::Superseded, "superseded by a later attempt; stopped when its agent came back")
                }
                StopReason::Canceled => (ChildStatus::Canceled, "canceled with its execution when its agent came back"),
            };
            // The record and the fencing facts it settles commit together: a restart in between
            // would otherwise forget the stop or stop the run again (harmless, and recorded).
            let writes = match stop.run {
                // A run the coordinator never had as a child (its start was given up): recorded
                // whole, and its stop owed until delivered; its key has served its purpose.
                Some(run) => vec![
                    Write::RemoveAbandonedStarts {
                        agent: stop.agent.clone(),
                        idempotency_key: Some(run.idempotency_key.clone()),
                    },
                    Write::AddPendingStop {
                        agent: stop.agent.clone(),
                        run_id: stop.run_id.clone(),
                        reason: stop.reason,
                    },
                    Write::UpsertChild(ChildRunRecord {
                        execution_id: run.execution_id,
                        task_path: run.task_path,
                        attempt: run.attempt,
                        agent: stop.agent.clone(),
                        job: run.job,
                        run_id: stop.run_id.clone(),
                        idempotency_key: run.idempotency_key,
                        status,
                        started_at: Utc::now(),
                        duration_ms: None,
                        message: message.to_string(),
                        package: None,
                    }),
                ],
                None => vec![
                    Write::UpdateChildStatus {
                        agent: stop.agent.clone(),
                        run_id: stop.run_id.clone(),
                        status,
                        duration_ms: None,
                        message: message.to_string(),
                    },
                    Write::RemovePendingStop { agent: stop.agent.clone(), run_id: stop.run_id.clone() },
                ],
            };
            if let Err(e) = self.inner.store.write(writes).await {
                tracing::warn!(error = %e, "cannot record a stopped child run");
            }
        }
    }

    /// Drops the running-children list of an execution that has ended and has none left.
    pub(super) fn forget_children_if_done(&self, execution_id: &str) {
        let running = self.inner.live.lock().unwrap_or_else(|p| p.into_inner()).contains_key(execution_id);
        let mut children = self.inner.children.lock().unwrap_or_else(|p| p.into_inner());
        if !running && children.get(execution_id).is_some_and(HashMap::is_empty) {
            children.remove(execution_id);
        }
    }

    /// Stops the execution's running children whose task says on_parent_end = "cancel"; an
    /// agent that cannot be reached gets the stop when it is back.
    pub(super) async fn cascade_cancel(&self, execution_id: &str) {
        let running: Vec<RunningChild> = self
            .inner
            .children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(execution_id)
            .map(|list| list.values().cloned().collect())
            .unwrap_or_default();
        for child in running.into_iter().filter(|c| c.on_parent_end == OnParentEnd::Cancel) {
            let stop = self.inner.registry.stop_run(
                &child.agent,
                &child.run_id,
                "switchyard coordinator (execution canceled)",
            );
            match stop.await {
                Ok(_) => tracing::info!(agent = %child.agent, run = %child.run_id, "child run stopped"),
                Err(e) if matches!(e.code(), tonic::Code::FailedPrecondition | tonic::Code::NotFound) => {}
                Err(e) => {
                    tracing::warn!(agent = %child.agent, run = %child.run_id, error = %e.message(), "cannot stop a child run now; will again when its agent is back");
                    self.inner.registry.stop_when_back(&child.agent, &child.run_id, StopReason::Canceled);
                }
            }
        }
    }
}

/// A fence log that queues each fencing fact as a store write behind the child records.
pub(super) fn fence_log(queue: mpsc::UnboundedSender<Write>) -> FenceLog {
    std::sync::Arc::new(move |change| {
        let write = match change {
            FenceChange::StopOwed { agent, run_id, reason } => Write::AddPendingStop { agent, run_id, reason },
            FenceChange::StopSettled { agent, run_id } => Write::RemovePendingStop { agent, run_id },
            FenceChange::StartAbandoned { agent, idempotency_key } => {
                Write::AddAbandonedStart { agent, idempotency_key }
            }
            FenceChange::AbandonedStartsForgotten { agent } => {
                Write::RemoveAbandonedStarts { agent, idempotency_key: None }
            }
        };
        let _ = queue.send(write);
    })
}

/// Writes queued records one batch at a time, in the order they were queued.
pub(super) async fn write_in_order(store: Store, mut queued: mpsc::UnboundedReceiver<Write>) {
    let mut batch = Vec::new();
    while queued.recv_many(&mut batch, 256).await > 0 {
        if let Err(e) = store.write(std::mem::take(&mut batch)).await {
            tracing::warn!(error = %e, "cannot record child runs");
        }
    }
}
