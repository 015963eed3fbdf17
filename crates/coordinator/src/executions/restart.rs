//! After a restart: executions the previous process left running are marked ended_unexpectedly
//! with their task records rebuilt from the stored events, and their orphaned children stopped.

use chrono::Utc;

use switchyard_package::engine::{ChildStatus, ExecutionStatus};
use switchyard_package::load_package;
use switchyard_package::model::OnParentEnd;

use super::Executions;
use crate::error::Error;
use crate::registry::StopReason;
use crate::store::Write;

impl Executions {
    /// Marks executions a previous process left running as ended_unexpectedly.
    pub async fn close_interrupted(&self) -> Result<usize, Error> {
        let open =
            self.inner.store.executions_with_status(&[ExecutionStatus::Running, ExecutionStatus::Created]).await?;
        for mut execution in open.iter().cloned() {
            let ended = Utc::now();
            execution.status = ExecutionStatus::EndedUnexpectedly;
            execution.ended_at = Some(ended);
            execution.duration_ms = Some((ended - execution.started_at).num_milliseconds().max(0) as u64);
            // Task results are written when an execution ends; rebuild them from its events.
            let events: Vec<_> = self
                .inner
                .store
                .events_after(&execution.execution_id, 0, 0)
                .await?
                .into_iter()
                .map(|stored| stored.event)
                .collect();
            let file =
                self.inner.data_dir.join("executions").join(&execution.execution_id).join(&execution.package_file);
            let package = load_package(&file).ok().map(|loaded| loaded.package);
            let mut tasks = crate::replay::task_records(&events, package.as_deref());
            self.stop_orphans(&execution.execution_id, package.as_deref()).await?;
            // Events do not name agents; the children recorded for each task do.
            let children = self.inner.store.children(&execution.execution_id).await?;
            for task in &mut tasks {
                task.agent = children
                    .iter()
                    .rev()
                    .find(|c| c.task_path == task.path && !c.agent.is_empty())
                    .map(|c| c.agent.clone());
            }
            self.inner
                .store
                .write(vec![
                    Write::PutTasks { execution_id: execution.execution_id.clone(), tasks },
                    Write::UpdateExecution(execution),
                ])
                .await?;
        }
        Ok(open.len())
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
