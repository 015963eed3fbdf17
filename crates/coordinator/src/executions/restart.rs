//! After a restart: executions the previous process left running resume from their stored
//! events and child records; one that cannot (its package files are gone or unreadable, or it
//! has secret parameters, whose values are never stored) is marked ended_unexpectedly with the
//! reason, and its orphaned children are stopped.

use std::sync::Arc;

use chrono::Utc;

use switchyard_package::engine::{ChildStatus, Event, EventKind, ExecutionStatus, Resume, RunOptions};
use switchyard_package::load::load_package_with;
use switchyard_package::model::OnParentEnd;

use super::{Executions, checkpoints};
use crate::error::Error;
use crate::launcher::PriorAttempts;
use crate::model::{ExecutionRecord, StoredEvent};
use crate::registry::StopReason;
use crate::store::Write;

impl Executions {
    /// Resumes the executions a previous process left running (issue 11): their ended tasks
    /// keep their results and the rest runs on. One whose package files cannot be read any more
    /// ends unexpectedly, with the reason. Returns how many resumed and how many ended.
    pub async fn resume_interrupted(&self) -> Result<(usize, usize), Error> {
        let open =
            self.inner.store.executions_with_status(&[ExecutionStatus::Running, ExecutionStatus::Created]).await?;
        let (mut resumed, mut ended) = (0, 0);
        for execution in open {
            let events: Vec<Event> = self
                .inner
                .store
                .events_after(&execution.execution_id, 0, 0)
                .await?
                .into_iter()
                .map(|stored| stored.event)
                .collect();
            let dir = self.inner.data_dir.join("executions").join(&execution.execution_id);
            let file = dir.join(&execution.package_file);
            match load_package_with(&file, &self.load_options(&dir)) {
                Ok(loaded) if !loaded.package.secrets.is_empty() => {
                    let reason = format!(
                        "it has secret parameters ({}), whose values were kept only in the previous process's memory; it cannot resume: run it again",
                        loaded.package.secrets.join(", ")
                    );
                    tracing::warn!(execution = %execution.execution_id, %reason, "execution ended unexpectedly");
                    self.close_unresumable(execution, &events, &reason).await?;
                    ended += 1;
                }
                Ok(loaded) => {
                    let children = self.inner.store.children(&execution.execution_id).await?;
                    let prior = PriorAttempts::new(children, started_not_ended(&events));
                    let resume = Resume::from_events(&events);
                    tracing::info!(
                        execution = %execution.execution_id, replayed = resume.replayed(),
                        "resuming an execution the previous process left running"
                    );
                    let options = RunOptions {
                        execution_id: execution.execution_id.clone(),
                        parameters: execution.parameters.clone(),
                        resume: Some(Arc::new(resume)),
                        limits: self.limits().clone(),
                        package_root: Some(dir.clone()),
                        databases: Some(self.inner.databases.clone()),
                        ..RunOptions::default()
                    };
                    // Relocation passed when the execution was accepted.
                    let package =
                        checkpoints::relocated(loaded.package.clone(), &self.inner.data_dir).unwrap_or(loaded.package);
                    self.launch(execution, package, options, Some(prior));
                    resumed += 1;
                }
                Err(e) => {
                    let reason = format!("its package cannot be read any more ({e}); it cannot resume");
                    tracing::warn!(execution = %execution.execution_id, %reason, "execution ended unexpectedly");
                    self.close_unresumable(execution, &events, &reason).await?;
                    ended += 1;
                }
            }
        }
        Ok((resumed, ended))
    }

    /// Marks an execution that cannot resume ended_unexpectedly, with its task records rebuilt
    /// from its events, a `not_resumed` event saying why, and its orphaned children stopped.
    async fn close_unresumable(
        &self,
        mut execution: ExecutionRecord,
        events: &[Event],
        reason: &str,
    ) -> Result<(), Error> {
        let ended = Utc::now();
        execution.status = ExecutionStatus::EndedUnexpectedly;
        execution.ended_at = Some(ended);
        execution.duration_ms = Some((ended - execution.started_at).num_milliseconds().max(0) as u64);
        let mut tasks = crate::replay::task_records(events, None);
        self.stop_orphans(&execution.execution_id, None).await?;
        // Older events do not name agents; the children recorded for each task do.
        let children = self.inner.store.children(&execution.execution_id).await?;
        for task in tasks.iter_mut().filter(|t| t.agent.is_none()) {
            task.agent = children
                .iter()
                .rev()
                .find(|c| c.task_path == task.path && !c.agent.is_empty())
                .map(|c| c.agent.clone());
        }
        let sequence = events.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
        let event = Event {
            seq: sequence,
            at: ended,
            path: String::new(),
            kind: EventKind::NotResumed { reason: reason.to_string() },
        };
        let execution_id = execution.execution_id.clone();
        self.inner
            .store
            .write(vec![
                Write::AppendEvents(vec![StoredEvent { execution_id: execution_id.clone(), sequence, event }]),
                Write::PutTasks { execution_id, tasks },
                Write::UpdateExecution(execution),
            ])
            .await?;
        Ok(())
    }

    /// Children still running for an execution that ended unexpectedly are stopped when their
    /// task says on_parent_end = "cancel" (the default), as soon as their agent answers.
    async fn stop_orphans(
        &self,
        execution_id: &str,
        package: Option<&switchyard_package::Package>,
    ) -> Result<(), Error> {
        for child in self.inner.store.children(execution_id).await? {
            if child.status != ChildStatus::Running || child.agent.is_empty() {
                continue;
            }
            let on_parent_end = package
                .and_then(|p| crate::replay::find_task(p, &child.task_path))
                .and_then(|t| match &t.kind {
                    switchyard_package::TaskKind::AgentJob(job) => Some(job.on_parent_end),
                    _ => None,
                })
                .unwrap_or(OnParentEnd::Cancel);
            if on_parent_end == OnParentEnd::Cancel {
                tracing::info!(agent = %child.agent, run = %child.run_id, "stopping a child of an execution that ended unexpectedly");
                self.inner.registry.stop_when_back(&child.agent, &child.run_id, StopReason::Canceled);
            }
        }
        Ok(())
    }
}

/// The paths of the tasks the events show started and not ended: what was running at the restart.
fn started_not_ended(events: &[Event]) -> std::collections::HashSet<String> {
    let mut running = std::collections::HashSet::new();
    for event in events {
        match &event.kind {
            EventKind::TaskStarted { .. } => {
                running.insert(event.path.clone());
            }
            EventKind::TaskFinished { .. } | EventKind::TaskNotRun { .. } => {
                running.remove(&event.path);
            }
            _ => {}
        }
    }
    running
}
