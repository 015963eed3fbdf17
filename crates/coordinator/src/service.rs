//! The `switchyard.v1.Coordinator` gRPC service: convert, act, reply.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use switchyard_proto as pb;
use switchyard_proto::convert::timestamp;

use crate::error::Error;
use crate::executions::{Executions, StartExecution};
use crate::registry::{AgentSource, Registry};
use crate::store::{ExecutionRecord, StoredEvent};

/// The gRPC face of the coordinator.
pub struct CoordinatorService {
    executions: Executions,
    registry: Registry,
    call_timeout: Duration,
    /// Fires when the coordinator shuts down: every response stream ends then.
    shutdown: CancellationToken,
}

impl CoordinatorService {
    /// A service over the executions and the registry; its streams end when `shutdown` fires.
    pub fn new(
        executions: Executions,
        registry: Registry,
        call_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self { executions, registry, call_timeout, shutdown }
    }

    /// Ends `stream` when the coordinator shuts down, with UNAVAILABLE saying why: tonic's
    /// graceful shutdown otherwise waits for open streams (a `switchyard watch`) forever.
    fn until_shutdown<T: Send + 'static>(
        &self,
        stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
    ) -> Stream_<T> {
        let shutdown = self.shutdown.clone();
        let said = futures::stream::once(async {
            Err(Status::unavailable("the coordinator is shutting down; try again once it is back"))
        })
        .filter(move |_| std::future::ready(shutdown.is_cancelled()));
        Box::pin(stream.take_until(self.shutdown.clone().cancelled_owned()).chain(said))
    }
}

impl CoordinatorService {
    /// Refuses a request whose string fields exceed `[limits] field`, naming the field.
    fn bounded(&self, fields: &[(&str, &str)]) -> Result<(), Status> {
        self.executions.limits().check_fields(fields).map_err(|e| Error::InvalidArgument(e).into())
    }

    /// An execution id: given, and within `[limits] field`.
    fn execution_id(&self, id: &str) -> Result<(), Status> {
        self.bounded(&[("execution_id", id)])?;
        required("execution_id", id, "the id of an execution (`switchyard executions` lists them)")
    }

    /// A job start's parameters: at most `[limits] parameters`, names within `field` and each
    /// value's encoding within `value`.
    fn bounded_params(&self, params: Option<&prost_types::Struct>) -> Result<(), Status> {
        let limits = self.executions.limits();
        let fields = params.map(|p| &p.fields);
        let check = || -> Result<(), String> {
            let Some(fields) = fields else { return Ok(()) };
            limits.check_parameter_count(fields.len())?;
            for (name, value) in fields {
                limits.check_field("a parameter name", name)?;
                limits.check_value(name, prost::Message::encoded_len(value))?;
            }
            Ok(())
        };
        check().map_err(|e| Error::InvalidArgument(e).into())
    }
}

/// Refuses an empty required field as INVALID_ARGUMENT naming it (not NOT_FOUND for "").
fn required(field: &str, value: &str, what: &str) -> Result<(), Status> {
    switchyard_settings::Limits::require(field, value, what).map_err(|e| Error::InvalidArgument(e).into())
}

type Stream_<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Executions on the wire with their stored task counts (a running execution's tasks are
/// stored when it ends, so it counts 0 until then).
async fn executions_with_counts(
    store: &crate::store::Store,
    records: &[ExecutionRecord],
) -> Result<Vec<pb::Execution>, Status> {
    let ids: Vec<String> = records.iter().map(|record| record.execution_id.clone()).collect();
    let counts = store.task_counts(&ids).await.map_err(Error::from)?;
    Ok(records
        .iter()
        .map(|record| {
            let mut execution = pb::Execution::from(record);
            if let Some(counts) = counts.get(&record.execution_id) {
                execution.tasks_total = counts.total;
                execution.tasks_failed = counts.failed;
            }
            execution
        })
        .collect())
}

fn event(stored: &StoredEvent) -> pb::ExecutionEvent {
    use switchyard_package::engine::EventKind;
    let e = &stored.event;
    let agent = match &e.kind {
        EventKind::TaskFinished { agent, .. } => agent.clone().unwrap_or_default(),
        _ => String::new(),
    };
    let (kind, result, message, duration_ms, task_kind) = match &e.kind {
        EventKind::PackageStarted { package } => ("package_started", String::new(), package.clone(), 0, ""),
        EventKind::PackageFinished { status, duration_ms } => {
            ("package_finished", status.as_str().to_string(), String::new(), *duration_ms, "")
        }
        EventKind::TaskStarted { kind } => ("task_started", String::new(), String::new(), 0, *kind),
        EventKind::TaskFinished { kind, result, duration_ms, message, .. } => {
            ("task_finished", result.as_str().to_string(), message.clone(), *duration_ms, *kind)
        }
        EventKind::TaskNotRun { reason } => ("task_not_run", "not_run".to_string(), reason.clone(), 0, ""),
        EventKind::Resumed { replayed } => {
            ("resumed", String::new(), format!("resumed after a restart; {replayed} ended task(s) kept"), 0, "")
        }
        EventKind::NotResumed { reason } => ("not_resumed", String::new(), reason.clone(), 0, ""),
        EventKind::TransactionEnded { committed, message } => {
            let result = if *committed { "committed" } else { "rolled_back" };
            ("transaction_ended", result.to_string(), message.clone(), 0, "")
        }
    };
    pb::ExecutionEvent {
        sequence: stored.sequence,
        at: Some(timestamp(e.at)),
        path: e.path.clone(),
        kind: kind.to_string(),
        result,
        message,
        duration_ms,
        task_kind: task_kind.to_string(),
        agent,
    }
}

#[tonic::async_trait]
impl pb::coordinator_server::Coordinator for CoordinatorService {
    async fn register_agent(
        &self,
        request: Request<pb::RegisterAgentRequest>,
    ) -> Result<Response<pb::RegisterAgentResponse>, Status> {
        let r = request.into_inner();
        self.bounded(&[("name", &r.name), ("address", &r.address)])?;
        if r.name.is_empty() || r.address.is_empty() {
            return Err(Error::InvalidArgument("name and address: an agent registers with both".into()).into());
        }
        self.registry
            .add_agent(&r.name, &r.address, None, AgentSource::Registered)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        tracing::info!(agent = %r.name, address = %r.address, "agent registered");
        Ok(Response::new(pb::RegisterAgentResponse { epoch: self.registry.epoch(&r.name) }))
    }

    async fn start_execution(
        &self,
        request: Request<pb::StartExecutionRequest>,
    ) -> Result<Response<pb::StartExecutionResponse>, Status> {
        let r = request.into_inner();
        let start = StartExecution {
            request_id: Some(r.request_id).filter(|id| !id.is_empty()),
            package: r.package,
            files: r.files.into_iter().map(|f| (f.path, f.content)).collect(),
            parameters: r.parameters.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            caller: if r.caller.is_empty() { "switchyard".into() } else { r.caller },
            max_concurrent: (r.max_concurrent != 0).then_some(r.max_concurrent),
            restart: r.restart,
        };
        let started = self.executions.start(start).await?;
        Ok(Response::new(pb::StartExecutionResponse {
            execution_id: started.execution_id,
            existing: started.existing,
            checkpoint: started.checkpoint,
        }))
    }

    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let id = request.into_inner().execution_id;
        self.execution_id(&id)?;
        let record = self.executions.execution(&id).await?;
        let mut executions = executions_with_counts(self.executions.store(), std::slice::from_ref(&record)).await?;
        Ok(Response::new(executions.remove(0)))
    }

    type WatchExecutionStream = Stream_<pb::ExecutionEvent>;

    async fn watch_execution(
        &self,
        request: Request<pb::WatchExecutionRequest>,
    ) -> Result<Response<Self::WatchExecutionStream>, Status> {
        let r = request.into_inner();
        self.execution_id(&r.execution_id)?;
        if self.executions.store().execution(&r.execution_id).await.map_err(Error::from)?.is_none() {
            return Err(Error::UnknownExecution(r.execution_id).into());
        }
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(feed_watcher(self.executions.clone(), r.execution_id, r.after_sequence, tx));
        Ok(Response::new(self.until_shutdown(ReceiverStream::new(rx))))
    }

    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let limit = match request.into_inner().limit {
            0 => 50,
            n => n as usize,
        };
        let records = self.executions.executions(limit).await?;
        let executions = executions_with_counts(self.executions.store(), &records).await?;
        Ok(Response::new(pb::ListExecutionsResponse { executions }))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::CancelExecutionResponse>, Status> {
        let id = request.into_inner().execution_id;
        self.execution_id(&id)?;
        let status = self.executions.cancel(&id).await?;
        Ok(Response::new(pb::CancelExecutionResponse {
            status: status.as_str().to_string(),
            message: format!("execution \"{id}\" is stopping: no new task starts and its children are being stopped"),
        }))
    }

    type GetReportStream = Stream_<pb::ReportPart>;

    async fn get_report(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Result<Response<Self::GetReportStream>, Status> {
        let r = request.into_inner();
        self.execution_id(&r.execution_id)?;
        let report = self.executions.report(&r.execution_id).await?;
        let page = if r.page_size == 0 { 500 } else { r.page_size as usize };
        let parts = report.to_proto_parts(page);
        let stream = tokio_stream::iter(parts.into_iter().map(Ok));
        Ok(Response::new(self.until_shutdown(stream)))
    }

    async fn list_agents(&self, _: Request<pb::ListAgentsRequest>) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let agents = self
            .registry
            .agents()
            .into_iter()
            .map(|a| pb::AgentInfo {
                name: a.name,
                address: a.address,
                state: a.state.as_str().to_string(),
                labels: a.labels,
                running: a.running,
                slots: a.slots,
                queued: a.queued,
                incarnation: a.incarnation,
                epoch: a.epoch,
                source: match a.source {
                    AgentSource::Config => "config".into(),
                    AgentSource::Registered => "registered".into(),
                },
                version: a.version,
                last_seen_ms_ago: a.last_seen.map_or(u64::MAX, |t| t.elapsed().as_millis() as u64),
                last_error: a.last_error.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn drain_agent(
        &self,
        request: Request<pb::DrainAgentRequest>,
    ) -> Result<Response<pb::DrainAgentResponse>, Status> {
        let r = request.into_inner();
        self.bounded(&[("name", &r.name)])?;
        required("name", &r.name, "the name of an agent")?;
        let state = self.registry.set_draining(&r.name, r.drain).map_err(|_| Error::UnknownAgent(r.name.clone()))?;
        Ok(Response::new(pb::DrainAgentResponse { state: state.as_str().to_string() }))
    }

    async fn start_job(
        &self,
        request: Request<pb::CoordinatorStartJobRequest>,
    ) -> Result<Response<pb::CoordinatorStartJobResponse>, Status> {
        let r = request.into_inner();
        self.bounded(&[("agent", &r.agent), ("job", &r.job), ("requested_by", &r.requested_by)])?;
        required("agent", &r.agent, "the name of an agent")?;
        required("job", &r.job, "the name of a job on that agent")?;
        self.bounded_params(r.params.as_ref())?;
        let mut client = self.registry.client(&r.agent).ok_or_else(|| Error::UnknownAgent(r.agent.clone()))?;
        let mut call = Request::new(pb::StartJobRequest {
            job: r.job,
            params: r.params,
            requested_by: if r.requested_by.is_empty() { "switchyard".into() } else { r.requested_by },
            ..Default::default()
        });
        call.set_timeout(self.call_timeout);
        let reply = client.start_job(call).await?.into_inner();
        Ok(Response::new(pb::CoordinatorStartJobResponse {
            agent: r.agent,
            run_id: reply.run_id,
            message: reply.message,
            sequence: reply.sequence,
            incarnation: reply.incarnation,
        }))
    }

    async fn deploy_job(
        &self,
        request: Request<pb::DeployJobRequest>,
    ) -> Result<Response<pb::DeployJobResponse>, Status> {
        let r = request.into_inner();
        self.bounded(&[("agent", &r.agent), ("pool", &r.pool)])?;
        for package in &r.packages {
            self.bounded(&[("packages.path", &package.path)])?;
        }
        // Checked whole first: an invalid request replaces nothing on any agent.
        let problems = crate::deploy::problems(&r.job, &r.packages, self.executions.limits());
        if !problems.is_empty() {
            return Err(Error::InvalidArgument(problems.join("\n")).into());
        }
        let targets: Vec<String> = match (r.agent.is_empty(), r.pool.is_empty()) {
            (false, true) => {
                if self.registry.agent(&r.agent).is_none() {
                    return Err(Error::UnknownAgent(r.agent).into());
                }
                vec![r.agent.clone()]
            }
            (true, false) => {
                let agents: Vec<String> =
                    self.registry.agents().into_iter().filter(|a| a.labels.contains(&r.pool)).map(|a| a.name).collect();
                if agents.is_empty() {
                    return Err(Error::InvalidArgument(format!("pool: no agent has label \"{}\"", r.pool)).into());
                }
                agents
            }
            _ => return Err(Error::InvalidArgument("give either agent or pool".into()).into()),
        };
        let mut results = Vec::new();
        let mut job_name = String::new();
        for agent in targets {
            let outcome = self.deploy_to(&agent, &r.job, &r.packages).await;
            let (ok, message) = match outcome {
                Ok(name) => {
                    job_name = name.clone();
                    (true, format!("job \"{name}\" deployed with {} package(s)", r.packages.len()))
                }
                Err(message) => (false, message),
            };
            results.push(pb::DeployTarget { agent, ok, message });
        }
        Ok(Response::new(pb::DeployJobResponse { job: job_name, targets: results }))
    }

    async fn prune_executions(
        &self,
        request: Request<pb::PruneExecutionsRequest>,
    ) -> Result<Response<pb::PruneExecutionsResponse>, Status> {
        let mut retention = self.executions.retention();
        if let Some(ms) = request.into_inner().older_than_ms {
            retention.max_age = Some(Duration::from_millis(ms));
        }
        let pruned = self.executions.prune(retention).await?;
        Ok(Response::new(pb::PruneExecutionsResponse {
            execution_ids: pruned.execution_ids,
            remaining: pruned.remaining,
        }))
    }
}

impl CoordinatorService {
    /// Pushes packages, then the job, to one agent (as a master server does to its targets).
    async fn deploy_to(&self, agent: &str, job: &str, packages: &[pb::PackageFile]) -> Result<String, String> {
        let mut client = self.registry.client(agent).ok_or_else(|| format!("agent \"{agent}\" is not registered"))?;
        for package in packages {
            let mut call =
                Request::new(pb::PutPackageRequest { name: package.path.clone(), content: package.content.clone() });
            call.set_timeout(self.call_timeout);
            client.put_package(call).await.map_err(|e| format!("package \"{}\": {}", package.path, e.message()))?;
        }
        let mut call = Request::new(pb::UpsertJobRequest { definition: job.to_string() });
        call.set_timeout(self.call_timeout);
        let reply = client.upsert_job(call).await.map_err(|e| format!("job: {}", e.message()))?;
        Ok(reply.into_inner().name)
    }
}

/// Sends an execution's events after `after`: stored ones, then live ones until it ends.
async fn feed_watcher(
    executions: Executions,
    id: String,
    mut last: u64,
    tx: mpsc::Sender<Result<pb::ExecutionEvent, Status>>,
) {
    // Subscribe before reading the store so nothing falls between the two.
    let mut live = executions.subscribe(&id);
    loop {
        let page = match executions.store().events_after(&id, last, 1000).await {
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(Status::internal(format!("reading events: {e}")))).await;
                return;
            }
        };
        if page.is_empty() {
            break;
        }
        for stored in page {
            last = stored.sequence;
            if tx.send(Ok(event(&stored))).await.is_err() {
                return;
            }
        }
    }
    let Some(feed) = live.as_mut() else { return };
    loop {
        // A watcher that went away (or a stream ended by shutdown) ends this feed at once.
        let received = tokio::select! {
            received = feed.recv() => received,
            _ = tx.closed() => return,
        };
        match received {
            Ok(stored) if stored.sequence <= last => {}
            Ok(stored) => {
                last = stored.sequence;
                let finished =
                    matches!(stored.event.kind, switchyard_package::engine::EventKind::PackageFinished { .. })
                        && stored.event.path.is_empty();
                if finished {
                    // The report is complete once the result is stored: end the stream after that.
                    executions.wait_finished(&id).await;
                }
                if tx.send(Ok(event(&stored))).await.is_err() || finished {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Catch up from the store, then go on live.
                match executions.store().events_after(&id, last, usize::MAX).await {
                    Ok(page) => {
                        for stored in page {
                            last = stored.sequence;
                            if tx.send(Ok(event(&stored))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(format!("reading events: {e}")))).await;
                        return;
                    }
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
