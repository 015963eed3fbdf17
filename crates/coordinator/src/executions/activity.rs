//! What a running execution is doing, for the SSISDB statuses that are not ends: `created`
//! (recorded, its package not started yet), `running`, `pending` (every task that runs is an
//! `agent_job` task waiting for a free agent slot: the execution waits to run, as an SSISDB
//! execution pending for a worker) and `stopping` (canceled, not ended). It lives in memory
//! beside the execution's live handles and is shown over the stored `running` (GetExecution,
//! ListExecutions, GetReport); a restart starts it over.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use switchyard_package::engine::{Event, EventKind, ExecutionStatus};

/// The live activity of one execution.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    started: AtomicBool,
    stopping: AtomicBool,
    /// Leaf tasks started and not ended (child packages' tasks included), by event path.
    running: Mutex<HashSet<String>>,
    /// `agent_job` tasks waiting for a free slot (told by the launcher).
    pending: Arc<AtomicUsize>,
}

impl Activity {
    /// Follows an event of the execution's run.
    pub(crate) fn observe(&self, event: &Event) {
        match &event.kind {
            EventKind::PackageStarted { .. } | EventKind::Resumed { .. } if event.path.is_empty() => {
                self.started.store(true, Ordering::SeqCst);
            }
            EventKind::TaskStarted { kind } if is_work(kind) => {
                self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(event.path.clone());
            }
            EventKind::TaskFinished { kind, .. } if is_work(kind) => {
                self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&event.path);
            }
            _ => {}
        }
    }

    /// The counter the launcher keeps of this execution's tasks waiting for a slot.
    pub(crate) fn pending_counter(&self) -> Arc<AtomicUsize> {
        self.pending.clone()
    }

    /// The execution was canceled and is ending.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The status to show while the execution runs.
    pub(crate) fn status(&self) -> ExecutionStatus {
        if self.stopping.load(Ordering::SeqCst) {
            return ExecutionStatus::Stopping;
        }
        if !self.started.load(Ordering::SeqCst) {
            return ExecutionStatus::Created;
        }
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner()).len();
        let pending = self.pending.load(Ordering::SeqCst);
        if running > 0 && pending >= running { ExecutionStatus::Pending } else { ExecutionStatus::Running }
    }
}

/// Kinds whose start and end bracket work of their own: containers and child packages hold
/// tasks that are counted themselves.
fn is_work(kind: &str) -> bool {
    !matches!(kind, "sequence" | "foreach" | "for" | "package")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: &str, kind: EventKind) -> Event {
        Event { seq: 1, at: chrono::Utc::now(), path: path.into(), kind }
    }

    #[test]
    fn created_then_running_then_pending_while_every_running_task_waits_for_a_slot() {
        let activity = Activity::default();
        assert_eq!(activity.status(), ExecutionStatus::Created);
        activity.observe(&event("", EventKind::PackageStarted { package: "p".into() }));
        assert_eq!(activity.status(), ExecutionStatus::Running);
        activity.observe(&event("Load", EventKind::TaskStarted { kind: "agent_job" }));
        activity.observe(&event("Stage", EventKind::TaskStarted { kind: "sequence" }));
        activity.pending_counter().fetch_add(1, Ordering::SeqCst);
        assert_eq!(activity.status(), ExecutionStatus::Pending, "the only task that works waits for a slot");
        activity.observe(&event("Stage/Copy", EventKind::TaskStarted { kind: "process" }));
        assert_eq!(activity.status(), ExecutionStatus::Running, "a process runs beside it");
        activity.stop();
        assert_eq!(activity.status(), ExecutionStatus::Stopping);
    }
}
