//! Simulated agents: many `switchyard.v1.Agent` servers in one process, each on its own loopback
//! listener, answering in memory with what the coordinator relies on (no store, no jobs run):
//! GetLoad (name, slots, the `bench` label, runs active, incarnation, last sequence, epoch),
//! WatchRuns (an in-memory outbox, resumable from a sequence within the incarnation), StartJob
//! (accepted at once with a run id and the sequence at acceptance; a repeated idempotency key
//! answers with the same run, a stale epoch is refused, a full agent refuses), and StopJob. Each
//! accepted run starts and succeeds at once: ACCEPTED, STARTED and FINISHED events, as the real
//! agent's outbox numbers them. Other calls are unimplemented.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::pin::Pin;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc as channel, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use switchyard_proto as pb;

use crate::cluster::POOL;

/// The one job the simulated agents know.
pub const JOB: &str = "noop";

/// How long a process of simulated agents may take to print its addresses.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// What the process prints on stderr before its addresses, separated by commas.
const LISTENING: &str = "listening on ";

/// The name of the simulated agent with this index.
pub fn name(index: usize) -> String {
    format!("sim-{index:04}")
}

/// One simulated agent's state.
struct SimAgent {
    name: String,
    slots: u32,
    incarnation: String,
    started: Instant,
    log: Mutex<Log>,
    /// Bumped after events are appended: wakes the WatchRuns feeds.
    appended: watch::Sender<u64>,
}

/// The in-memory outbox and what StartJob decides on.
#[derive(Default)]
struct Log {
    /// Event `n` (1-based sequence) at index `n - 1`.
    events: Vec<pb::RunEvent>,
    /// Answers by idempotency key.
    keys: HashMap<String, pb::StartJobResponse>,
    /// Runs accepted and not finished.
    active: u32,
    /// The highest fencing epoch seen.
    epoch: u64,
    runs: u64,
}

impl Log {
    /// Appends an event about `start` and returns its sequence.
    fn append(&mut self, agent: &SimAgent, run_id: &str, start: &pb::StartJobRequest, kind: pb::RunEventKind) -> u64 {
        let sequence = self.events.len() as u64 + 1;
        let (status, message) = match kind {
            pb::RunEventKind::Accepted => {
                (pb::RunStatus::Running, format!("Job '{}' started successfully.", start.job))
            }
            pb::RunEventKind::Finished => (
                pb::RunStatus::Succeeded,
                format!(
                    "The job succeeded.  The Job was invoked by User {}.  The last step to run was step 1 (noop).",
                    start.requested_by
                ),
            ),
            _ => (pb::RunStatus::Running, format!("job \"{}\" started", start.job)),
        };
        self.events.push(pb::RunEvent {
            sequence,
            incarnation: agent.incarnation.clone(),
            run_id: run_id.to_string(),
            job: start.job.clone(),
            idempotency_key: start.idempotency_key.clone(),
            kind: kind as i32,
            status: status as i32,
            message,
            at: Some(switchyard_proto::convert::timestamp(chrono::Utc::now())),
            execution_id: start.execution_id.clone(),
            task_path: start.task_path.clone(),
            attempt: start.attempt,
            ..pb::RunEvent::default()
        });
        sequence
    }
}

impl SimAgent {
    fn new(name: String, slots: u32) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let incarnation = format!("sim-{}-{nanos:x}-{name}", std::process::id());
        let (appended, _) = watch::channel(0);
        Self { name, slots, incarnation, started: Instant::now(), log: Mutex::default(), appended }
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Accepts a start, or answers a repeated key with its run; refuses as the real agent does.
    fn start(self: &Arc<Self>, start: pb::StartJobRequest) -> Result<pb::StartJobResponse, Status> {
        if start.job != JOB {
            return Err(Status::not_found(format!("no job named \"{}\" on agent \"{}\"", start.job, self.name)));
        }
        let mut log = self.lock();
        if start.epoch > 0 && start.epoch < log.epoch {
            return Err(Status::aborted(format!("stale epoch {} (current {})", start.epoch, log.epoch)));
        }
        if let Some(done) = log.keys.get(&start.idempotency_key) {
            return Ok(pb::StartJobResponse { existing: true, ..done.clone() });
        }
        if log.active >= self.slots {
            return Err(Status::resource_exhausted(format!(
                "no free slot on agent \"{}\": all {} slots are running jobs; try another agent or later",
                self.name, self.slots
            )));
        }
        log.epoch = log.epoch.max(start.epoch);
        log.active += 1;
        log.runs += 1;
        let run_id = format!("{}-run-{}", self.name, log.runs);
        let sequence = log.append(self, &run_id, &start, pb::RunEventKind::Accepted);
        let response = pb::StartJobResponse {
            run_id: run_id.clone(),
            sequence,
            incarnation: self.incarnation.clone(),
            message: format!("Job '{}' started successfully.", start.job),
            existing: false,
            status: pb::RunStatus::Running as i32,
            packages: vec!["noop.toml".to_string()],
        };
        if !start.idempotency_key.is_empty() {
            log.keys.insert(start.idempotency_key.clone(), response.clone());
        }
        drop(log);
        self.appended.send_replace(sequence);
        let agent = self.clone();
        tokio::spawn(async move { agent.finish(&run_id, &start) });
        Ok(response)
    }

    /// The run starts and succeeds at once.
    fn finish(&self, run_id: &str, start: &pb::StartJobRequest) {
        let mut log = self.lock();
        log.append(self, run_id, start, pb::RunEventKind::Started);
        let sequence = log.append(self, run_id, start, pb::RunEventKind::Finished);
        log.active -= 1;
        drop(log);
        self.appended.send_replace(sequence);
    }

    fn events_after(&self, after: u64) -> Vec<pb::RunEvent> {
        let log = self.lock();
        log.events.get(after as usize..).map(<[pb::RunEvent]>::to_vec).unwrap_or_default()
    }

    fn load(&self) -> pb::GetLoadResponse {
        let log = self.lock();
        pb::GetLoadResponse {
            name: self.name.clone(),
            running: log.active,
            slots: self.slots,
            queued: 0,
            labels: vec![POOL.to_string()],
            version: "sim".to_string(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            incarnation: self.incarnation.clone(),
            last_sequence: log.events.len() as u64,
            draining: false,
            epoch: log.epoch,
        }
    }
}

/// Sends events after `last`, then each batch as it is appended, until the watcher goes away.
async fn feed(agent: Arc<SimAgent>, mut last: u64, tx: channel::Sender<Result<pb::RunEvent, Status>>) {
    let mut appended = agent.appended.subscribe();
    loop {
        appended.borrow_and_update();
        for event in agent.events_after(last) {
            last = event.sequence;
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            changed = appended.changed() => if changed.is_err() { return },
            _ = tx.closed() => return,
        }
    }
}

/// The gRPC face of a [`SimAgent`].
struct SimService(Arc<SimAgent>);

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::RunEvent, Status>> + Send>>;

fn unimplemented<T>(call: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!("{call} is not simulated")))
}

#[tonic::async_trait]
impl pb::agent_server::Agent for SimService {
    async fn start_job(&self, request: Request<pb::StartJobRequest>) -> Result<Response<pb::StartJobResponse>, Status> {
        self.0.start(request.into_inner()).map(Response::new)
    }

    async fn stop_job(&self, request: Request<pb::StopJobRequest>) -> Result<Response<pb::StopJobResponse>, Status> {
        // Runs end as soon as they start: there is never one to stop.
        let r = request.into_inner();
        Err(Status::failed_precondition(format!("run \"{}\" already ended (succeeded)", r.run_id)))
    }

    async fn get_run(&self, _: Request<pb::GetRunRequest>) -> Result<Response<pb::Run>, Status> {
        unimplemented("GetRun")
    }

    async fn get_run_output(
        &self,
        _: Request<pb::GetRunOutputRequest>,
    ) -> Result<Response<pb::GetRunOutputResponse>, Status> {
        unimplemented("GetRunOutput")
    }

    async fn list_jobs(&self, _: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        unimplemented("ListJobs")
    }

    async fn job_history(&self, _: Request<pb::JobHistoryRequest>) -> Result<Response<pb::JobHistoryResponse>, Status> {
        unimplemented("JobHistory")
    }

    type WatchRunsStream = EventStream;

    async fn watch_runs(&self, request: Request<pb::WatchRunsRequest>) -> Result<Response<EventStream>, Status> {
        let r = request.into_inner();
        let after = if r.incarnation.is_empty() || r.incarnation == self.0.incarnation { r.after_sequence } else { 0 };
        let (tx, rx) = channel::channel(256);
        tokio::spawn(feed(self.0.clone(), after, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn get_load(&self, _: Request<pb::GetLoadRequest>) -> Result<Response<pb::GetLoadResponse>, Status> {
        Ok(Response::new(self.0.load()))
    }

    async fn upsert_job(&self, _: Request<pb::UpsertJobRequest>) -> Result<Response<pb::UpsertJobResponse>, Status> {
        unimplemented("UpsertJob")
    }

    async fn delete_job(&self, _: Request<pb::DeleteJobRequest>) -> Result<Response<pb::DeleteJobResponse>, Status> {
        unimplemented("DeleteJob")
    }

    async fn put_package(&self, _: Request<pb::PutPackageRequest>) -> Result<Response<pb::PutPackageResponse>, Status> {
        unimplemented("PutPackage")
    }

    async fn inject_fault(
        &self,
        _: Request<pb::InjectFaultRequest>,
    ) -> Result<Response<pb::InjectFaultResponse>, Status> {
        Err(Status::permission_denied("fault injection is disabled on simulated agents"))
    }
}

/// `__sim-agents COUNT FIRST SLOTS`: serves COUNT simulated agents named from index FIRST, each
/// with SLOTS slots on its own listener; prints `listening on ADDR,ADDR,...` (in index order) on
/// stderr and stops when stdin closes.
pub fn serve() -> ExitCode {
    let args: Vec<usize> = std::env::args().skip(2).filter_map(|a| a.parse().ok()).collect();
    let [count, first, slots] = args[..] else {
        eprintln!("usage: switchyard-bench {} COUNT FIRST SLOTS", super::SERVER_ARG);
        return ExitCode::from(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let stop = CancellationToken::new();
        let mut addresses = Vec::with_capacity(count);
        for index in first..first + count {
            let agent = Arc::new(SimAgent::new(name(index), slots as u32));
            addresses.push(spawn_server(agent, stop.clone()).await.to_string());
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut buffer = [0u8; 64];
            while matches!(std::io::stdin().read(&mut buffer), Ok(n) if n > 0) {}
            let _ = stop_tx.send(());
        });
        eprintln!("{count} simulated agents {LISTENING}{}", addresses.join(","));
        let _ = stop_rx.await;
        stop.cancel();
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    ExitCode::SUCCESS
}

/// Serves one agent on a fresh loopback port with TCP_NODELAY, as the product's agent does.
async fn spawn_server(agent: Arc<SimAgent>, stop: CancellationToken) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a port");
    let address = listener.local_addr().expect("the bound address");
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = pb::agent_server::AgentServer::new(SimService(agent));
    tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            eprintln!("ERROR a simulated agent stopped serving: {e}");
        }
    });
    address
}

/// A process of simulated agents; killed when dropped, and by the kernel if this process dies.
pub struct SimAgents {
    child: Child,
    /// The process id, for its CPU time.
    pub pid: u32,
    /// Agent `first + i` listens on `addresses[i]`.
    pub first: usize,
    pub addresses: Vec<SocketAddr>,
}

impl SimAgents {
    /// Starts `count` simulated agents from index `first`, and waits (bounded) for their
    /// addresses.
    pub fn spawn(count: usize, first: usize, slots: u32) -> Self {
        let exe = std::env::current_exe().expect("the bench binary's path");
        let mut command = Command::new(exe);
        command.arg(super::SERVER_ARG).args([count, first, slots as usize].map(|n| n.to_string()));
        command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        // SAFETY: the hook only calls prctl, which is async-signal-safe. The parent-death signal
        // fires when the spawning thread ends: the scenario spawns from the main thread.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting simulated agents: {e}"));
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                match line.find(LISTENING) {
                    Some(at) if tx.is_some() => {
                        let _ = tx.take().expect("checked").send(line[at + LISTENING.len()..].trim().to_string());
                    }
                    _ => eprintln!("  [sim-agents {first}] {line}"),
                }
            }
        });
        let Ok(line) = rx.recv_timeout(START_DEADLINE) else {
            let _ = child.kill();
            panic!("simulated agents did not print their addresses within {} s", START_DEADLINE.as_secs());
        };
        let addresses: Vec<SocketAddr> =
            line.split(',').map(|a| a.parse().unwrap_or_else(|e| panic!("bad address {a:?}: {e}"))).collect();
        assert_eq!(addresses.len(), count, "one address per simulated agent");
        Self { child, pid, first, addresses }
    }
}

impl Drop for SimAgents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
