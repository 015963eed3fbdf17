//! An `agent_job` task of an execution resumed after a coordinator restart picks up where its
//! attempts were: an attempt that ended keeps its outcome, an attempt whose child runs is
//! followed again, and an attempt whose start was in flight (no record was stored) is found on
//! the agents by its idempotency key. Nothing is started twice: a new start is made only once
//! every agent the task could have used says it holds no run under that key, and an agent that
//! cannot say is told to supersede the key if it ever accepts it.

use std::collections::{HashMap, HashSet};

use switchyard_package::TaskResult;
use switchyard_package::engine::{AgentJobOutcome, AgentJobRequest, ChildRecord, ChildStatus};
use switchyard_package::model::AgentTarget;
use switchyard_proto as pb;
use tonic::Code;

use super::{AgentJobs, AttemptEnd, child_record};
use crate::model::ChildRunRecord;

/// The child runs an execution's tasks had started before the restart, by task path and attempt,
/// and the tasks that were running then.
#[derive(Debug, Default)]
pub struct PriorAttempts {
    by_task: HashMap<String, HashMap<u32, ChildRunRecord>>,
    in_flight: HashSet<String>,
}

impl PriorAttempts {
    /// From the execution's stored child records (a later record of an attempt replaces one
    /// stored before it) and the paths of the tasks its events show started and not ended.
    pub fn new(children: Vec<ChildRunRecord>, in_flight: HashSet<String>) -> Self {
        let mut by_task: HashMap<String, HashMap<u32, ChildRunRecord>> = HashMap::new();
        for child in children.into_iter().filter(|c| !c.agent.is_empty()) {
            by_task.entry(child.task_path.clone()).or_default().insert(child.attempt, child);
        }
        Self { by_task, in_flight }
    }

    /// True when the task, or a task holding it (a child package, a container), was running at
    /// the restart: only such a task can have a start in flight that no record shows, so only
    /// its agents are asked by key (a task that had not started costs no call).
    pub(super) fn was_in_flight(&self, task_path: &str) -> bool {
        self.in_flight.contains(task_path)
            || self.in_flight.iter().any(|p| task_path.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('/')))
    }

    fn get(&self, task_path: &str, attempt: u32) -> Option<&ChildRunRecord> {
        self.by_task.get(task_path)?.get(&attempt)
    }
}

/// What an attempt made before the restart amounts to now.
pub(super) enum Earlier {
    /// Its child ended.
    Ended { agent: String, run_id: String, status: ChildStatus, message: String, duration_ms: Option<u64> },
    /// Its child was accepted and may still run: follow it.
    Running { agent: String, run_id: String, package: Option<String> },
}

impl AgentJobs {
    /// An attempt made before a restart: an ended child keeps its outcome; a running one is
    /// followed again.
    pub(super) async fn resume_attempt(
        &self,
        request: &mut AgentJobRequest,
        attempt: u32,
        key: &str,
        earlier: Earlier,
        children: &mut Vec<ChildRecord>,
    ) -> Result<AgentJobOutcome, AttemptEnd> {
        let job = request.task.job.clone();
        match earlier {
            Earlier::Running { agent, run_id, package } => {
                drop(request.package_slot.take());
                let child = child_record(request, attempt, &agent, &run_id, package, ChildStatus::Running, None);
                self.tell(request, attempt, key, child.clone());
                children.push(child);
                let message =
                    format!("job \"{job}\" was started on agent \"{agent}\" before the coordinator restarted");
                self.follow(request, attempt, key, &agent, &run_id, message, children).await
            }
            Earlier::Ended { agent, run_id, status, message, duration_ms } => {
                // Recorded again: an attempt found on an agent by its key had no record yet.
                let child = child_record(request, attempt, &agent, &run_id, None, status, duration_ms);
                self.tell(request, attempt, key, child.clone());
                children.push(child);
                match status {
                    ChildStatus::Succeeded => Ok(AgentJobOutcome {
                        result: TaskResult::Success,
                        message: format!("job \"{job}\" succeeded on agent \"{agent}\": {message}"),
                        agent: Some(agent),
                        children: std::mem::take(children),
                    }),
                    status => Err(AttemptEnd::Failed {
                        message: format!("job \"{job}\" {} on agent \"{agent}\": {message}", status.as_str()),
                        lost_agent: (status == ChildStatus::Lost).then_some(agent),
                    }),
                }
            }
        }
    }

    /// What `attempt` of the task had done before the restart; `None` when the execution was not
    /// resumed or the attempt had not started. `look_on_agents` asks the agents by key when no
    /// record was stored (for the first such attempt only: later ones were never started).
    pub(super) async fn earlier(
        &self,
        request: &AgentJobRequest,
        attempt: u32,
        key: &str,
        look_on_agents: bool,
    ) -> Option<Earlier> {
        let prior = self.prior.as_ref()?;
        if let Some(record) = prior.get(&request.task_path, attempt) {
            return Some(match record.status {
                ChildStatus::Running => Earlier::Running {
                    agent: record.agent.clone(),
                    run_id: record.run_id.clone(),
                    package: record.package.clone(),
                },
                status => Earlier::Ended {
                    agent: record.agent.clone(),
                    run_id: record.run_id.clone(),
                    status,
                    message: record.message.clone(),
                    duration_ms: record.duration_ms,
                },
            });
        }
        if !look_on_agents {
            return None;
        }
        let (agent, run) = self.find_by_key(&request.task.target, key).await?;
        tracing::info!(task = %request.task_path, %agent, run = %run.run_id, "found the start in flight at the restart");
        let status = match pb::RunStatus::try_from(run.status).unwrap_or(pb::RunStatus::Running) {
            pb::RunStatus::Succeeded => ChildStatus::Succeeded,
            pb::RunStatus::Failed => ChildStatus::Failed,
            pb::RunStatus::Canceled => ChildStatus::Canceled,
            _ => return Some(Earlier::Running { agent, run_id: run.run_id, package: None }),
        };
        Some(Earlier::Ended {
            agent,
            run_id: run.run_id,
            status,
            message: run.message,
            duration_ms: Some(run.duration_ms),
        })
    }

    /// The run a start with `key` started on one of the agents the task could have used. An
    /// agent that cannot answer is fenced: should it accept the key later, that run is stopped
    /// and recorded superseded.
    async fn find_by_key(&self, target: &AgentTarget, key: &str) -> Option<(String, pb::Run)> {
        let agents = match target {
            AgentTarget::Agent(agent) => vec![agent.clone()],
            AgentTarget::Pool(pool) => self.registry.pool_members(pool),
        };
        for agent in agents {
            let Some(mut client) = self.registry.client(&agent) else { continue };
            let mut call =
                tonic::Request::new(pb::GetRunRequest { idempotency_key: key.to_string(), ..Default::default() });
            call.set_timeout(self.registry.settings().start_timeout);
            match client.get_run(call).await {
                Ok(run) => return Some((agent, run.into_inner())),
                Err(status) if status.code() == Code::NotFound => {}
                Err(status) => {
                    tracing::warn!(%agent, key, error = %status.message(), "cannot ask an agent for a start in flight at the restart; fencing its key there");
                    self.registry.supersede_when_accepted(&agent, key);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tasks_running_at_the_restart_or_inside_one_are_looked_for_by_key() {
        let running = ["Hold", "Child", "Loop[2]/Step"].map(String::from).into_iter().collect();
        let prior = PriorAttempts::new(Vec::new(), running);
        for path in ["Hold", "Child/Inner", "Child/Seq/Deep", "Loop[2]/Step"] {
            assert!(prior.was_in_flight(path), "{path}");
        }
        for path in ["Later", "Holding", "Childish/Inner", "Loop[1]/Step", "Loop[2]/Stepper"] {
            assert!(!prior.was_in_flight(path), "{path}");
        }
    }
}
