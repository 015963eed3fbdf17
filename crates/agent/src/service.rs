//! The `switchyard.v1.Agent` gRPC service: convert, act, reply.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use switchyard_proto as pb;

use crate::admin;
use crate::error::Error;
use crate::faults::Fault;
use crate::runtime::{AgentRuntime, StartRequest};
use crate::store::HistoryFilter;
use crate::wire;

/// The gRPC face of an [`AgentRuntime`].
pub struct AgentService {
    runtime: Arc<AgentRuntime>,
    /// The highest sequence a watcher has said it consumed (it resumes after it).
    pub(crate) consumed: Arc<AtomicU64>,
}

impl AgentService {
    /// A service over `runtime`.
    pub fn new(runtime: Arc<AgentRuntime>, consumed: Arc<AtomicU64>) -> Self {
        Self { runtime, consumed }
    }

    /// Refuses a request whose string fields exceed `[limits] field`, naming the field.
    fn bounded(&self, fields: &[(&str, &str)]) -> Result<(), Status> {
        self.runtime.config.limits.check_fields(fields).map_err(|e| Error::InvalidArgument(e).into())
    }
}

/// Refuses an empty required field as INVALID_ARGUMENT naming it (not NOT_FOUND for "").
fn required(field: &str, value: &str, what: &str) -> Result<(), Status> {
    switchyard_settings::Limits::require(field, value, what).map_err(|e| Error::InvalidArgument(e).into())
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RunEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_server::Agent for AgentService {
    async fn start_job(&self, request: Request<pb::StartJobRequest>) -> Result<Response<pb::StartJobResponse>, Status> {
        let r = request.into_inner();
        if r.job.is_empty() {
            return Err(Error::InvalidArgument("job: give the name of a job".into()).into());
        }
        let start = StartRequest {
            job: r.job,
            params: wire::map_from_struct(r.params),
            idempotency_key: Some(r.idempotency_key).filter(|k| !k.is_empty()),
            epoch: r.epoch,
            requested_by: if r.requested_by.is_empty() { "switchyard".into() } else { r.requested_by },
            execution_id: r.execution_id,
            task_path: r.task_path,
            attempt: r.attempt,
            secret_params: r.secret_params,
        };
        start.check(&self.runtime.config.limits).map_err(Error::InvalidArgument)?;
        // On its own task: a caller that gives up (a deadline, a reset stream) must not leave a
        // start half done, recorded and holding a slot but never run.
        let runtime = self.runtime.clone();
        let accepted = tokio::spawn(async move { runtime.start_job(start).await })
            .await
            .map_err(|e| Status::internal(format!("the start failed: {e}")))??;
        if let Some(delay) = self.runtime.faults.reply_delay() {
            // The run is accepted and recorded; only the reply is late (a lost or slow reply).
            tokio::time::sleep(delay).await;
        }
        Ok(Response::new(pb::StartJobResponse {
            run_id: accepted.run_id,
            sequence: accepted.sequence,
            incarnation: accepted.incarnation,
            message: accepted.message,
            existing: accepted.existing,
            status: wire::run_status(accepted.status) as i32,
            packages: accepted.packages,
        }))
    }

    async fn stop_job(&self, request: Request<pb::StopJobRequest>) -> Result<Response<pb::StopJobResponse>, Status> {
        let r = request.into_inner();
        self.bounded(&[("run_id", &r.run_id), ("job", &r.job), ("requested_by", &r.requested_by)])?;
        let by = if r.requested_by.is_empty() { "switchyard" } else { r.requested_by.as_str() };
        let (run_ids, message) = self.runtime.stop(Some(r.run_id.as_str()), Some(r.job.as_str()), by).await?;
        Ok(Response::new(pb::StopJobResponse { run_ids, message }))
    }

    async fn get_run(&self, request: Request<pb::GetRunRequest>) -> Result<Response<pb::Run>, Status> {
        self.runtime.faults.gate().await?;
        let r = request.into_inner();
        self.bounded(&[("run_id", &r.run_id), ("idempotency_key", &r.idempotency_key)])?;
        if r.run_id.is_empty() && r.idempotency_key.is_empty() {
            return Err(Error::InvalidArgument("run_id: give a run's id (or its idempotency_key)".into()).into());
        }
        let mut record = if r.run_id.is_empty() {
            let key = r.idempotency_key;
            self.runtime.store.run_by_key(&key).await.map_err(Error::from)?.ok_or(Error::UnknownKey(key))?
        } else {
            let run_id = r.run_id;
            self.runtime.store.run(&run_id).await.map_err(Error::from)?.ok_or(Error::UnknownRun(run_id))?
        };
        // The live state of a run in progress is in memory; the store is written behind it.
        if let Some(active) = self.runtime.active_runs().get(&record.run_id) {
            record.status = active.status;
            record.current_step = active.current_step;
        }
        Ok(Response::new(wire::run(&record)))
    }

    async fn get_run_output(
        &self,
        request: Request<pb::GetRunOutputRequest>,
    ) -> Result<Response<pb::GetRunOutputResponse>, Status> {
        self.runtime.faults.gate().await?;
        let r = request.into_inner();
        self.bounded(&[("run_id", &r.run_id)])?;
        required("run_id", &r.run_id, "a run's id")?;
        if self.runtime.store.run(&r.run_id).await.map_err(Error::from)?.is_none() {
            return Err(Error::UnknownRun(r.run_id).into());
        }
        let limit = if r.max_bytes == 0 { self.runtime.config.output_cap() } else { r.max_bytes as usize };
        let steps = self.runtime.store.outputs(&r.run_id).await.map_err(Error::from)?;
        let steps = steps
            .into_iter()
            .map(|o| {
                let (stdout, cut_out) = bounded(o.stdout, limit);
                let (stderr, cut_err) = bounded(o.stderr, limit);
                pb::StepOutput {
                    step_id: o.step_id,
                    step_name: o.step_name,
                    attempt: o.attempt,
                    stdout,
                    stderr,
                    truncated: o.truncated || cut_out || cut_err,
                }
            })
            .collect();
        Ok(Response::new(pb::GetRunOutputResponse { run_id: r.run_id, steps }))
    }

    async fn list_jobs(&self, _: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        self.runtime.faults.gate().await?;
        let jobs = admin::list_jobs(&self.runtime).await?;
        Ok(Response::new(pb::ListJobsResponse { jobs }))
    }

    async fn job_history(
        &self,
        request: Request<pb::JobHistoryRequest>,
    ) -> Result<Response<pb::JobHistoryResponse>, Status> {
        self.runtime.faults.gate().await?;
        let r = request.into_inner();
        self.bounded(&[("job", &r.job), ("run_id", &r.run_id)])?;
        let filter = HistoryFilter {
            job: Some(r.job).filter(|j| !j.is_empty()),
            run_id: Some(r.run_id).filter(|j| !j.is_empty()),
            since: r.since.as_ref().and_then(wire::from_timestamp),
            until: r.until.as_ref().and_then(wire::from_timestamp),
            limit: if r.limit == 0 { 100 } else { r.limit as usize },
        };
        let rows = self.runtime.store.history(filter).await.map_err(Error::from)?;
        let rows = rows.iter().map(|h| wire::history_row(h, self.runtime.name())).collect();
        Ok(Response::new(pb::JobHistoryResponse { rows }))
    }

    type WatchRunsStream = EventStream;

    async fn watch_runs(&self, request: Request<pb::WatchRunsRequest>) -> Result<Response<EventStream>, Status> {
        self.runtime.faults.gate().await?;
        let r = request.into_inner();
        self.bounded(&[("incarnation", &r.incarnation)])?;
        let ours = self.runtime.store.incarnation().to_string();
        let after = if r.incarnation.is_empty() || r.incarnation == ours { r.after_sequence } else { 0 };
        if after > 0 {
            self.consumed.fetch_max(after, Ordering::SeqCst);
        }
        let (tx, rx) = mpsc::channel(256);
        let kinds = EventFilter(r.kinds);
        tokio::spawn(feed_watcher(self.runtime.clone(), after, kinds, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_load(&self, _: Request<pb::GetLoadRequest>) -> Result<Response<pb::GetLoadResponse>, Status> {
        self.runtime.faults.gate().await?;
        let rt = &self.runtime;
        let (running, queued) = rt.load();
        Ok(Response::new(pb::GetLoadResponse {
            name: rt.name().to_string(),
            running,
            slots: rt.config.slots,
            queued,
            labels: rt.config.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: rt.uptime().as_millis() as u64,
            incarnation: rt.store.incarnation().to_string(),
            last_sequence: rt.store.last_sequence(),
            draining: rt.draining(),
            epoch: rt.epoch(),
        }))
    }

    async fn upsert_job(
        &self,
        request: Request<pb::UpsertJobRequest>,
    ) -> Result<Response<pb::UpsertJobResponse>, Status> {
        self.runtime.faults.gate().await?;
        let (name, hash, created) = admin::upsert_job(&self.runtime, &request.into_inner().definition).await?;
        Ok(Response::new(pb::UpsertJobResponse { name, hash, created }))
    }

    async fn delete_job(
        &self,
        request: Request<pb::DeleteJobRequest>,
    ) -> Result<Response<pb::DeleteJobResponse>, Status> {
        self.runtime.faults.gate().await?;
        let name = request.into_inner().name;
        self.bounded(&[("name", &name)])?;
        required("name", &name, "the name of a pushed job")?;
        admin::delete_job(&self.runtime, &name).await?;
        Ok(Response::new(pb::DeleteJobResponse {}))
    }

    async fn put_package(
        &self,
        request: Request<pb::PutPackageRequest>,
    ) -> Result<Response<pb::PutPackageResponse>, Status> {
        self.runtime.faults.gate().await?;
        let r = request.into_inner();
        self.bounded(&[("name", &r.name)])?;
        let hash = admin::put_package(&self.runtime, &r.name, &r.content).await?;
        Ok(Response::new(pb::PutPackageResponse { name: r.name, hash }))
    }

    async fn inject_fault(
        &self,
        request: Request<pb::InjectFaultRequest>,
    ) -> Result<Response<pb::InjectFaultResponse>, Status> {
        let rt = &self.runtime;
        if !rt.config.allow_fault_injection {
            return Err(Error::PermissionDenied(format!(
                "fault injection is disabled on agent \"{}\"; start it with allow_fault_injection = true to allow drills",
                rt.name()
            ))
            .into());
        }
        let r = request.into_inner();
        let duration = Duration::from_millis(if r.duration_ms == 0 { 10_000 } else { r.duration_ms });
        let delay = Duration::from_millis(if r.delay_ms == 0 { 5_000 } else { r.delay_ms });
        let kind = pb::FaultKind::try_from(r.kind).unwrap_or(pb::FaultKind::Unspecified);
        let message = match kind {
            pb::FaultKind::Crash => {
                tracing::warn!("simulated crash: aborting");
                // Answer first, then die like kill -9 (no cleanup; job processes die with us).
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    std::process::abort();
                });
                format!("agent \"{}\" crashes now", rt.name())
            }
            pb::FaultKind::Hang => {
                rt.faults.inject(Fault::Hang, duration);
                format!("agent \"{}\" hangs for {}", rt.name(), humantime::format_duration(duration))
            }
            pb::FaultKind::Refuse => {
                rt.faults.inject(Fault::Refuse, duration);
                format!("agent \"{}\" refuses calls for {}", rt.name(), humantime::format_duration(duration))
            }
            pb::FaultKind::Delay => {
                rt.faults.inject(Fault::Delay(delay), duration);
                format!(
                    "agent \"{}\" delays StartJob replies by {} for {}",
                    rt.name(),
                    humantime::format_duration(delay),
                    humantime::format_duration(duration)
                )
            }
            pb::FaultKind::Unspecified => {
                return Err(Error::InvalidArgument("kind: give crash, hang, refuse or delay".into()).into());
            }
        };
        tracing::warn!(fault = ?kind, "fault injected");
        Ok(Response::new(pb::InjectFaultResponse { message }))
    }
}

/// Sends outbox events after `after`: first from the store, then live ones as they commit,
/// going back to the store whenever the live feed skips (lag). Ends at shutdown.
/// The event kinds a watcher asked for; empty: every kind.
struct EventFilter(Vec<i32>);

impl EventFilter {
    fn wants(&self, event: &crate::model::OutboxEvent) -> bool {
        self.0.is_empty() || self.0.contains(&(wire::event_kind(event.kind) as i32))
    }
}

async fn feed_watcher(
    runtime: Arc<AgentRuntime>,
    mut last: u64,
    kinds: EventFilter,
    tx: mpsc::Sender<Result<pb::RunEvent, Status>>,
) {
    let incarnation = runtime.store.incarnation().to_string();
    let mut live = runtime.store.subscribe();
    loop {
        loop {
            let page = match runtime.store.events_after(last, 512).await {
                Ok(page) => page,
                Err(e) => {
                    let _ = tx.send(Err(Status::internal(format!("reading the outbox: {e}")))).await;
                    return;
                }
            };
            if page.is_empty() {
                break;
            }
            for event in page {
                last = event.sequence;
                if kinds.wants(&event) && tx.send(Ok(wire::run_event(&event, &incarnation))).await.is_err() {
                    return;
                }
            }
        }
        loop {
            let event = tokio::select! {
                _ = runtime.shutdown.cancelled() => return,
                _ = tx.closed() => return,
                received = live.recv() => received,
            };
            match event {
                Ok(event) if event.sequence <= last => {}
                Ok(event) if event.sequence == last + 1 => {
                    if runtime.faults.gate().await.is_err() {
                        let _ = tx.send(Err(Status::unavailable("agent refuses calls (simulated failure)"))).await;
                        return;
                    }
                    last = event.sequence;
                    if kinds.wants(&event) && tx.send(Ok(wire::run_event(&event, &incarnation))).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => break,
                Err(RecvError::Closed) => return,
            }
        }
    }
}

fn bounded(mut text: String, limit: usize) -> (String, bool) {
    if text.len() <= limit {
        return (text, false);
    }
    let mut cut = limit;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    (text, true)
}
