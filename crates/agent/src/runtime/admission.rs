//! Admission: StartJob decided under one short lock (the job's concurrency policy and the
//! agent's slots), recorded durably with its ACCEPTED event, then handed to the runner.
//! A repeated idempotency key is answered with the run it already started.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use switchyard_package::expr::Map;

use super::{ActiveRun, AgentRuntime, JobEntry};
use crate::error::Error;
use crate::jobs::{Concurrency, JobDefinition};
use crate::model::{EventKind, OutboxEvent, RunRecord, RunStatus};
use crate::runner::{self, Permits};
use crate::store::Write;

/// A start request, in domain terms.
#[derive(Debug, Clone, Default)]
pub struct StartRequest {
    /// The job.
    pub job: String,
    /// Parameters for its packages.
    pub params: Map,
    /// Makes a repeated request answer with the run it started.
    pub idempotency_key: Option<String>,
    /// Fencing epoch (0: not fenced).
    pub epoch: u64,
    /// Who asks.
    pub requested_by: String,
    /// Coordinator execution id, task path and attempt, recorded with the run.
    pub execution_id: String,
    /// See `execution_id`.
    pub task_path: String,
    /// See `execution_id`.
    pub attempt: u32,
    /// The names of `params` whose values are secret: recorded as `***`, kept in clear only in
    /// memory for the run.
    pub secret_params: Vec<String>,
}

impl StartRequest {
    /// Checks every string of the request against `[limits]` (`field` for the job, key, caller
    /// and origin; `value` and `parameters` for the params); the refusal names the field.
    pub fn check(&self, limits: &switchyard_settings::Limits) -> Result<(), String> {
        limits.check_field("job", &self.job)?;
        limits.check_field("idempotency_key", self.idempotency_key.as_deref().unwrap_or(""))?;
        limits.check_field("requested_by", &self.requested_by)?;
        limits.check_field("execution_id", &self.execution_id)?;
        limits.check_field("task_path", &self.task_path)?;
        limits.check_parameter_count(self.params.len())?;
        for (name, value) in &self.params {
            limits.check_field("a parameter name", name)?;
            let len = match value {
                serde_json::Value::String(text) => text.len(),
                other => other.to_string().len(),
            };
            limits.check_value(name, len)?;
        }
        Ok(())
    }
}

/// What StartJob answers.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The run.
    pub run_id: String,
    /// Its ACCEPTED event's outbox sequence.
    pub sequence: u64,
    /// The outbox incarnation.
    pub incarnation: String,
    /// "Job 'x' started successfully."
    pub message: String,
    /// True when an earlier request with the same key started it.
    pub existing: bool,
    /// Queued or running.
    pub status: RunStatus,
    /// The packages the job's steps run, in step order.
    pub packages: Vec<String>,
    /// The job it started.
    pub job: String,
}

impl AgentRuntime {
    /// StartJob: accepts and records a run, or refuses it; never waits for the run.
    pub async fn start_job(self: &Arc<Self>, request: StartRequest) -> Result<Accepted, Error> {
        self.faults.gate().await?;
        if self.draining() {
            return Err(Error::Unavailable(format!(
                "agent \"{}\" is shutting down and accepts no new runs; start the job on another agent",
                self.name()
            )));
        }
        let current = self.epoch();
        if request.epoch > 0 && request.epoch < current {
            return Err(Error::StaleEpoch { given: request.epoch, current });
        }
        let Some(key) = request.idempotency_key.clone().filter(|k| !k.is_empty()) else {
            return self.accept(request).await;
        };
        let cell = self.keys.lock().unwrap_or_else(|p| p.into_inner()).entry(key.clone()).or_default().clone();
        if let Some(done) = cell.get() {
            return same_job(&key, &request.job, Accepted { existing: true, ..done.clone() });
        }
        let job = request.job.clone();
        // Keys of active runs are answered from memory; a key whose run has ended (or that an
        // earlier incarnation of this process accepted) is refused by the store's unique index,
        // and then answered from the store. No read on the path of a new start.
        let mut initialized_here = false;
        let accepted = cell
            .get_or_try_init(|| {
                initialized_here = true;
                self.accept(request)
            })
            .await;
        let accepted = match accepted {
            Ok(accepted) => accepted.clone(),
            Err(Error::Store(e)) if e.is_constraint_violation() => {
                self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                return match self.store.run_by_key(&key).await? {
                    Some(record) => same_job(&key, &job, self.existing(&record)),
                    None => Err(Error::Store(e)),
                };
            }
            Err(e) => return Err(e),
        };
        same_job(&key, &job, Accepted { existing: !initialized_here, ..accepted })
    }

    fn existing(&self, record: &RunRecord) -> Accepted {
        Accepted {
            run_id: record.run_id.clone(),
            sequence: record.accepted_sequence,
            incarnation: self.store.incarnation().to_string(),
            message: format!("Job '{}' started successfully.", record.job),
            existing: true,
            status: record.status,
            packages: self.job(&record.job).map(|e| packages_of(&e.definition)).unwrap_or_default(),
            job: record.job.clone(),
        }
    }

    async fn accept(self: &Arc<Self>, request: StartRequest) -> Result<Accepted, Error> {
        let entry = self
            .job(&request.job)
            .ok_or_else(|| Error::UnknownJob { job: request.job.clone(), agent: self.name().to_string() })?;
        // Time-ordered ids: new runs append to the end of the table's B-tree, so a group commit
        // writes a few shared pages instead of one page per run.
        let run_id = uuid::Uuid::now_v7().to_string();
        let cancel = CancellationToken::new();
        let (status, permits) = self.reserve(&entry, &request, &run_id, &cancel)?;

        let now = Utc::now();
        let record = RunRecord {
            run_id: run_id.clone(),
            job: request.job.clone(),
            status,
            idempotency_key: request.idempotency_key.clone().filter(|k| !k.is_empty()),
            epoch: request.epoch,
            requested_by: request.requested_by.clone(),
            execution_id: request.execution_id.clone(),
            task_path: request.task_path.clone(),
            attempt: request.attempt,
            params: shown_params(&request.params, &request.secret_params),
            secrets: request
                .params
                .iter()
                .filter(|(name, _)| request.secret_params.contains(name))
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            accepted_at: now,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            message: format!("Job '{}' started successfully.", request.job),
            current_step: 0,
            job_hash: entry.definition.hash.clone(),
            package_hashes: Vec::new(),
            accepted_sequence: 0,
            process_groups: Vec::new(),
        };
        let accepted_event = OutboxEvent::about(&record, EventKind::Accepted, record.message.clone());
        // A run that got its slot starts now: its start is recorded in the same commit.
        let record = if status == RunStatus::Running { RunRecord { started_at: Some(now), ..record } } else { record };
        let mut batch = vec![Write::InsertRun(record.clone()), Write::AppendEvent(accepted_event)];
        if status == RunStatus::Running {
            batch.push(Write::AppendEvent(OutboxEvent::started(&record)));
        }
        if request.epoch > self.epoch() {
            batch.push(Write::SetMeta { key: "epoch".into(), value: request.epoch.to_string() });
        }
        let receipt = match self.store.write(batch).await {
            Ok(r) => r,
            Err(e) => {
                self.forget_active(&run_id);
                return Err(e.into());
            }
        };
        self.epoch.fetch_max(request.epoch, Ordering::SeqCst);
        let sequence = receipt.sequences.first().copied().unwrap_or_default();
        let record = RunRecord { accepted_sequence: sequence, ..record };
        // The coordinator's side logs the start under the same ids (DESIGN.md §12).
        let span = tracing::info_span!(
            "run",
            execution_id = %record.execution_id,
            task = %record.task_path,
            agent = %self.name(),
            run_id = %run_id,
        );
        span.in_scope(|| tracing::info!(job = %record.job, sequence, status = status.as_str(), "run accepted"));
        let run = runner::execute(self.clone(), record.clone(), entry.definition.clone(), permits, cancel);
        tokio::spawn(run.instrument(span));
        Ok(Accepted {
            run_id,
            sequence,
            incarnation: self.store.incarnation().to_string(),
            message: record.message,
            existing: false,
            status,
            packages: packages_of(&entry.definition),
            job: entry.definition.name.clone(),
        })
    }

    /// Applies the job's concurrency policy and the agent's slots under one lock.
    fn reserve(
        &self,
        entry: &JobEntry,
        request: &StartRequest,
        run_id: &str,
        cancel: &CancellationToken,
    ) -> Result<(RunStatus, Permits), Error> {
        let mut active = self.lock_active();
        let running_of_job = self.active_per_job.lock().unwrap_or_else(|p| p.into_inner()).get(&request.job).copied();
        let running_of_job = running_of_job.unwrap_or(0);
        // The job's runs are listed only when a policy needs them (a refusal, a queue).
        let of_job = || -> Vec<&ActiveRun> { active.values().filter(|r| r.job == request.job).collect() };
        let refusal = |other: &ActiveRun| {
            format!(
                "Request to run job {} (from User {}) refused because the job is already running from a request by User {}.",
                request.job, request.requested_by, other.requested_by
            )
        };
        let mut queued = false;
        match entry.definition.concurrency {
            Concurrency::Forbid => {
                if running_of_job > 0
                    && let Some(other) = of_job().first()
                {
                    return Err(Error::AlreadyRunning(refusal(other)));
                }
            }
            Concurrency::Allow { max_running } => {
                if running_of_job >= max_running as usize
                    && let Some(other) = of_job().first()
                {
                    return Err(Error::AlreadyRunning(format!("{} (max_running = {max_running})", refusal(other))));
                }
            }
            Concurrency::Queue { max_queue } => {
                if running_of_job > 0 {
                    let waiting = of_job().iter().filter(|r| r.status == RunStatus::Queued).count();
                    if waiting >= max_queue as usize {
                        return Err(Error::Exhausted(format!(
                            "the queue of job \"{}\" is full ({waiting} waiting, max_queue = {max_queue}); try again later",
                            request.job
                        )));
                    }
                    queued = true;
                }
            }
        }
        let mut permits = Permits { slot: None, turn: None };
        if !queued {
            permits.slot = Some(self.slots.clone().try_acquire_owned().map_err(|_| {
                Error::Exhausted(format!(
                    "no free slot on agent \"{}\": all {} slots are running jobs; try another agent or later",
                    self.name(),
                    self.config.slots
                ))
            })?);
            if matches!(entry.definition.concurrency, Concurrency::Queue { .. }) {
                permits.turn = entry.turn.clone().try_acquire_owned().ok();
            }
        }
        let status = if queued { RunStatus::Queued } else { RunStatus::Running };
        *self.active_per_job.lock().unwrap_or_else(|p| p.into_inner()).entry(request.job.clone()).or_default() += 1;
        active.insert(
            run_id.to_string(),
            ActiveRun {
                job: request.job.clone(),
                requested_by: request.requested_by.clone(),
                status,
                current_step: 0,
                cancel: cancel.clone(),
                stopped_by: None,
            },
        );
        Ok((status, permits))
    }
}

/// The package paths of a job's package steps, in step order.
fn packages_of(job: &JobDefinition) -> Vec<String> {
    job.steps
        .iter()
        .filter_map(|s| match &s.work {
            crate::jobs::StepWork::Package { path, .. } => Some(path.clone()),
            crate::jobs::StepWork::Command { .. } => None,
        })
        .collect()
}

/// `params` as recorded: the secret ones shown as `***`.
fn shown_params(params: &Map, secret: &[String]) -> Map {
    let mut shown = params.clone();
    for (name, value) in shown.iter_mut() {
        if secret.contains(name) {
            *value = serde_json::Value::String(switchyard_package::engine::MASK.to_string());
        }
    }
    shown
}

/// A key names one start: the run it started is the answer only to a start of the same job
/// (Stripe's rule for idempotency keys); a key reused for another job is refused, naming both.
fn same_job(key: &str, job: &str, accepted: Accepted) -> Result<Accepted, Error> {
    if accepted.job == job {
        return Ok(accepted);
    }
    Err(Error::InvalidArgument(format!(
        "idempotency_key \"{key}\" already started job \"{}\" (run {}); a key names one start: use a new key \
         for job \"{job}\"",
        accepted.job, accepted.run_id
    )))
}
