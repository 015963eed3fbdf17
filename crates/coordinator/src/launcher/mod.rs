//! The `agent_job` task: places a job start on an agent (fixed, or chosen from a pool by load),
//! starts it with an idempotency key and an epoch, and finishes at acceptance (SSIS) or with
//! the child's outcome (`wait = true`), retrying failed attempts with backoff and jitter.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::field::Empty;

use switchyard_package::TaskResult;
use switchyard_package::engine::{AgentJobLauncher, AgentJobOutcome, AgentJobRequest, ChildRecord, ChildStatus};
use switchyard_package::model::{AgentTarget, OnParentEnd};

use crate::registry::{PlaceError, Registry, Reservation, StopReason, WaitOutcome};

mod resume;
mod start;

use start::Refusal;

pub use resume::PriorAttempts;

/// Told about every child run an `agent_job` task starts and how it ends.
pub type ChildSink = Arc<dyn Fn(ChildUpdate) + Send + Sync>;

/// A child run started, or its state changed.
#[derive(Debug, Clone)]
pub struct ChildUpdate {
    /// The execution.
    pub execution_id: String,
    /// The task path with loop iterations.
    pub task_path: String,
    /// The attempt (0 first).
    pub attempt: u32,
    /// The idempotency key of the start.
    pub idempotency_key: String,
    /// The child.
    pub child: ChildRecord,
    /// What the task does with it when the parent is canceled.
    pub on_parent_end: OnParentEnd,
}

/// Starts `agent_job` tasks' jobs through the registry.
#[derive(Clone)]
pub struct AgentJobs {
    registry: Registry,
    requested_by: String,
    sink: Option<ChildSink>,
    /// The attempts made before a restart, for an execution that resumes.
    prior: Option<Arc<PriorAttempts>>,
    /// How many of the execution's tasks wait for a free slot now (its `pending` status).
    pending: Arc<AtomicUsize>,
}

impl AgentJobs {
    /// A launcher over `registry`; `requested_by` names the caller in agents' history.
    pub fn new(registry: Registry, requested_by: String, sink: Option<ChildSink>) -> Self {
        Self { registry, requested_by, sink, prior: None, pending: Arc::default() }
    }

    /// The same launcher, counting in `pending` the tasks that wait for a free slot.
    pub fn counting_pending(self, pending: Arc<AtomicUsize>) -> Self {
        Self { pending, ..self }
    }

    /// The same launcher for an execution resumed after a restart, which had made `prior`.
    pub fn resuming(self, prior: PriorAttempts) -> Self {
        Self { prior: Some(Arc::new(prior)), ..self }
    }
}

impl AgentJobLauncher for AgentJobs {
    fn launch(&self, request: AgentJobRequest) -> Pin<Box<dyn Future<Output = AgentJobOutcome> + Send + 'static>> {
        let this = self.clone();
        // The agent's side logs the run under the same ids (DESIGN.md §12).
        let span = tracing::info_span!("agent_job", execution_id = %request.execution_id, task = %request.task_path);
        Box::pin(async move { this.run(request).await }.instrument(span))
    }
}

/// Counts a task as pending for as long as it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(pending: &'a AtomicUsize) -> Self {
        pending.fetch_add(1, Ordering::SeqCst);
        Self(pending)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why one attempt did not succeed.
enum AttemptEnd {
    /// The child failed or was lost: another attempt may go elsewhere.
    Failed { message: String, lost_agent: Option<String> },
    /// The task cannot go on (no agent, unknown job on a fixed agent, queue timeout).
    Fatal(String),
    /// The task was canceled.
    Canceled(String),
}

impl AgentJobs {
    async fn run(&self, mut request: AgentJobRequest) -> AgentJobOutcome {
        let task = request.task.clone();
        let mut children: Vec<ChildRecord> = Vec::new();
        let mut failed_agents: HashSet<String> = HashSet::new();
        let mut lost_agents: HashSet<String> = HashSet::new();
        let mut last_message = String::new();
        let queue_deadline = Instant::now() + task.queue_timeout;
        // Resumed after a restart: the first attempt without a stored record may have been in
        // flight, and is looked for on the agents by its key.
        let mut look_on_agents = self.prior.as_ref().is_some_and(|p| p.was_in_flight(&request.task_path));
        let mut last_was_earlier = false;
        let mut last_was_lost = false;
        for attempt in 0..=task.retries {
            let key = format!("{}/{}/{attempt}", request.execution_id, request.task_path);
            let earlier = self.earlier(&request, attempt, &key, look_on_agents).await;
            if earlier.is_none() && attempt > 0 && !last_was_earlier {
                let delay = backoff(task.retry_backoff, attempt);
                tracing::info!(task = %request.task_path, attempt, delay_ms = delay.as_millis() as u64, "retrying agent job");
                self.registry.telemetry().retry(last_was_lost);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = request.cancel.cancelled() => return canceled(children, "canceled between attempts"),
                }
            }
            last_was_earlier = earlier.is_some();
            let outcome = match earlier {
                Some(earlier) => self.resume_attempt(&mut request, attempt, &key, earlier, &mut children).await,
                None => {
                    look_on_agents = false;
                    let span = tracing::info_span!("attempt", attempt, agent = Empty, run_id = Empty);
                    self.attempt(&mut request, attempt, &key, &failed_agents, queue_deadline, &mut children)
                        .instrument(span)
                        .await
                }
            };
            match outcome {
                Ok(done) => return done,
                Err(AttemptEnd::Canceled(message)) => return canceled(children, &message),
                Err(AttemptEnd::Fatal(message)) => return failure(children, message, None),
                Err(AttemptEnd::Failed { message, lost_agent }) => {
                    last_was_lost = lost_agent.is_some();
                    if let Some(agent) = lost_agent {
                        lost_agents.insert(agent);
                        if lost_agents.len() as u32 >= task.crash_limit {
                            return failure(
                                children,
                                format!(
                                    "quarantined: its attempts lost {} agents (crash_limit = {}); last: {message}",
                                    lost_agents.len(),
                                    task.crash_limit
                                ),
                                None,
                            );
                        }
                    }
                    if let Some(agent) = children.last().and_then(|c| c.agent.clone()) {
                        failed_agents.insert(agent);
                    }
                    last_message = message;
                }
            }
        }
        let tries = task.retries + 1;
        failure(children, format!("{last_message} (after {tries} attempt(s))"), None)
    }

    /// One attempt: place, start, and (with wait) follow the child to its end.
    async fn attempt(
        &self,
        request: &mut AgentJobRequest,
        attempt: u32,
        key: &str,
        failed_agents: &HashSet<String>,
        queue_deadline: Instant,
        children: &mut Vec<ChildRecord>,
    ) -> Result<AgentJobOutcome, AttemptEnd> {
        let task = request.task.clone();
        // Agents skipped for this attempt: already running the job, full, or unreachable.
        // Avoid agents that failed earlier attempts, unless the pool has no other.
        let mut skipped: HashSet<String> = match &task.target {
            AgentTarget::Pool(pool) if self.registry.pool_has_candidates(pool, failed_agents) => failed_agents.clone(),
            _ => HashSet::new(),
        };
        let pending = self.registry.telemetry().task_pending();
        let pending_since = Instant::now();
        let (agent, reservation, accepted) = loop {
            let changed = self.registry.wait_changed();
            let (agent, reservation) = self.place(&task.target, &skipped, queue_deadline, &request.cancel).await?;
            match self.start(&agent, request, key, attempt).await {
                Ok(accepted) => break (agent, reservation, accepted),
                Err(Refusal::Full(message)) => {
                    // The registry's view of the agent's load was behind: the task stays pending
                    // until capacity may have changed (or briefly), then places again.
                    drop(reservation);
                    tracing::debug!(%agent, %message, "agent full; the task stays pending");
                    let _waiting = Waiting::new(&self.pending);
                    tokio::select! {
                        _ = changed => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = tokio::time::sleep_until(queue_deadline) => {
                            return Err(AttemptEnd::Fatal(format!(
                                "no free slot on {} within queue_timeout; the task was pending until it ran out: {message}",
                                task.target
                            )));
                        }
                        _ = request.cancel.cancelled() => {
                            return Err(AttemptEnd::Canceled("canceled while pending for a slot".into()));
                        }
                    }
                }
                Err(Refusal::Skip(message)) => {
                    drop(reservation);
                    if matches!(task.target, AgentTarget::Agent(_)) {
                        return Err(AttemptEnd::Failed { message, lost_agent: None });
                    }
                    tracing::debug!(%agent, %message, "agent skipped for this start");
                    skipped.insert(agent);
                    // Whole pool refused (skipped everyone): fail this attempt with the last reason.
                    if !self.registry.pool_has_candidates(pool_of(&task.target), &skipped) {
                        return Err(AttemptEnd::Failed { message, lost_agent: None });
                    }
                }
                Err(Refusal::Fatal(message)) => return Err(AttemptEnd::Fatal(message)),
            }
        };
        reservation.confirm(&accepted.run_id);
        drop(pending);
        self.registry.telemetry().pending_for(pending_since.elapsed());
        let span = tracing::Span::current();
        span.record("agent", agent.as_str());
        span.record("run_id", accepted.run_id.as_str());
        tracing::info!(job = %task.job, "child started");
        // The task now holds the agent's slot, not the package's.
        drop(request.package_slot.take());
        let package = (!accepted.packages.is_empty()).then(|| accepted.packages.join(", "));
        let child = child_record(request, attempt, &agent, &accepted.run_id, package, ChildStatus::Running, None);
        self.tell(request, attempt, key, child.clone());
        children.push(child);
        self.follow(request, attempt, key, &agent, &accepted.run_id, accepted.message, children).await
    }

    /// After the agent accepted the child (the last of `children`): succeed at once (`wait =
    /// false`, as SSIS does) or follow the child to its end.
    #[allow(clippy::too_many_arguments)]
    async fn follow(
        &self,
        request: &mut AgentJobRequest,
        attempt: u32,
        key: &str,
        agent: &str,
        run_id: &str,
        accepted_message: String,
        children: &mut Vec<ChildRecord>,
    ) -> Result<AgentJobOutcome, AttemptEnd> {
        let task = request.task.clone();
        let agent = agent.to_string();
        if !task.wait {
            return Ok(AgentJobOutcome {
                result: TaskResult::Success,
                message: accepted_message,
                agent: Some(agent),
                children: std::mem::take(children),
            });
        }
        let ended = self.registry.wait_for_outcome(&agent, run_id, &request.cancel).await;
        let last = children.len() - 1;
        match ended {
            WaitOutcome::Finished(outcome) => {
                let status = outcome.child_status();
                tracing::info!(status = status.as_str(), duration_ms = outcome.duration_ms, "child finished");
                children[last].status = status;
                children[last].duration_ms = Some(outcome.duration_ms);
                self.tell(request, attempt, key, children[last].clone());
                match status {
                    ChildStatus::Succeeded => Ok(AgentJobOutcome {
                        result: TaskResult::Success,
                        message: format!("job \"{}\" succeeded on agent \"{agent}\": {}", task.job, outcome.message),
                        agent: Some(agent),
                        children: std::mem::take(children),
                    }),
                    _ if request.cancel.is_cancelled() => Err(AttemptEnd::Canceled(outcome.message)),
                    _ => Err(AttemptEnd::Failed {
                        message: format!(
                            "job \"{}\" {} on agent \"{agent}\": {}",
                            task.job,
                            status.as_str(),
                            outcome.message
                        ),
                        lost_agent: None,
                    }),
                }
            }
            WaitOutcome::Lost { agent: lost, reason } => {
                tracing::warn!(%reason, "child lost with its agent");
                if attempt < task.retries {
                    // A later attempt replaces this run: stop it if its agent comes back. Owed
                    // (stored) before the child is recorded lost, so no restart in between
                    // forgets it.
                    self.registry.stop_when_back(&lost, run_id, StopReason::Superseded);
                }
                children[last].status = ChildStatus::Lost;
                self.tell(request, attempt, key, children[last].clone());
                Err(AttemptEnd::Failed {
                    message: format!("job \"{}\" was lost with agent \"{lost}\": {reason}", task.job),
                    lost_agent: Some(lost),
                })
            }
            WaitOutcome::Canceled => {
                if task.on_parent_end == OnParentEnd::Cancel {
                    self.stop(&agent, run_id).await;
                    children[last].status = ChildStatus::Canceled;
                    self.tell(request, attempt, key, children[last].clone());
                }
                Err(AttemptEnd::Canceled(format!("canceled while job \"{}\" ran on agent \"{agent}\"", task.job)))
            }
        }
    }

    /// Picks an agent with a free slot, waiting (pending) while every slot is full.
    async fn place(
        &self,
        target: &AgentTarget,
        skipped: &HashSet<String>,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<(String, Reservation), AttemptEnd> {
        loop {
            let changed = self.registry.wait_changed();
            let placed = match target {
                AgentTarget::Agent(name) => match self.registry.reserve(name) {
                    Ok(r) => Some((name.clone(), r)),
                    Err(PlaceError::Full { .. }) => None,
                    Err(e) => return Err(AttemptEnd::Failed { message: e.to_string(), lost_agent: None }),
                },
                AgentTarget::Pool(pool) => {
                    if !self.registry.pool_exists(pool) {
                        return Err(AttemptEnd::Fatal(format!(
                            "no agent has label \"{pool}\"; label agents in agent.toml (labels = [\"{pool}\"]) or coordinator.toml"
                        )));
                    }
                    self.registry.place(pool, skipped)
                }
            };
            if let Some(placed) = placed {
                return Ok(placed);
            }
            // Every slot is full: the task is pending until one frees (counted while it waits).
            let _waiting = Waiting::new(&self.pending);
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(AttemptEnd::Fatal(format!(
                        "no free slot on {target} within queue_timeout; the task was pending until it ran out"
                    )));
                }
                _ = cancel.cancelled() => return Err(AttemptEnd::Canceled("canceled while pending for a slot".into())),
            }
        }
    }

    async fn stop(&self, agent: &str, run_id: &str) {
        if let Err(e) = self.registry.stop_run(agent, run_id, &self.requested_by).await {
            tracing::warn!(%agent, run = %run_id, error = %e.message(), "cannot stop a child run");
        }
    }

    fn tell(&self, request: &AgentJobRequest, attempt: u32, key: &str, child: ChildRecord) {
        if let Some(sink) = &self.sink {
            sink(ChildUpdate {
                execution_id: request.execution_id.clone(),
                task_path: request.task_path.clone(),
                attempt,
                idempotency_key: key.to_string(),
                child,
                on_parent_end: request.task.on_parent_end,
            });
        }
    }
}

fn pool_of(target: &AgentTarget) -> &str {
    match target {
        AgentTarget::Pool(p) => p,
        AgentTarget::Agent(a) => a,
    }
}

/// retry_backoff doubling per attempt up to 5 s, with ±50% jitter.
fn backoff(first: Duration, attempt: u32) -> Duration {
    let base = first.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(Duration::from_secs(5));
    let factor: f64 = rand::rng().random_range(0.5..1.5);
    base.mul_f64(factor)
}

/// The record of a child run started by the task.
fn child_record(
    request: &AgentJobRequest,
    attempt: u32,
    agent: &str,
    run_id: &str,
    package: Option<String>,
    status: ChildStatus,
    duration_ms: Option<u64>,
) -> ChildRecord {
    ChildRecord {
        task: request.task_path.clone(),
        agent: Some(agent.to_string()),
        job: Some(request.task.job.clone()),
        run_id: Some(run_id.to_string()),
        package,
        status,
        duration_ms,
        agent_status: None,
        tasks: Vec::new(),
        attempt,
        started_at: Some(chrono::Utc::now()),
    }
}

fn failure(children: Vec<ChildRecord>, message: String, agent: Option<String>) -> AgentJobOutcome {
    let agent = agent.or_else(|| children.last().and_then(|c| c.agent.clone()));
    AgentJobOutcome { result: TaskResult::Failure, message, agent, children }
}

fn canceled(children: Vec<ChildRecord>, message: &str) -> AgentJobOutcome {
    let agent = children.last().and_then(|c| c.agent.clone());
    AgentJobOutcome { result: TaskResult::Canceled, message: message.to_string(), agent, children }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_seconds() {
        for attempt in 1..10 {
            let d = backoff(Duration::from_millis(200), attempt);
            let base = Duration::from_millis(200 * (1 << (attempt - 1))).min(Duration::from_secs(5));
            assert!(d >= base.mul_f64(0.5) && d <= base.mul_f64(1.5), "attempt {attempt}: {d:?} vs {base:?}");
        }
    }

    #[test]
    fn keys_name_execution_task_path_and_attempt() {
        let key = format!("{}/{}/{}", "e1", "Files[2]/Load", 1);
        assert_eq!(key, "e1/Files[2]/Load/1");
    }
}
