//! The coordinator's durable store: executions, their event logs, task rows and child runs, and
//! the outbox cursor of every agent, in one SQLite file (`coordinator.db` in the data dir).
//!
//! Shape (DESIGN.md §10), as the agent's store: one writer thread owns the only write connection
//! and commits whatever is queued as one transaction (group commit), each request inside its own
//! savepoint so a bad request fails alone. A `write(..).await` resolves only after its commit,
//! which in WAL mode survives kill -9 of the process (`synchronous = NORMAL`; FULL adds
//! power-loss safety). WAL checkpoints run on a checkpointer thread, off the commit path. Reads
//! use their own read-only connections on the blocking pool and never wait for the writer.
//!
//! A running execution's state lives in memory; this store is written behind it and read only
//! for reports, listings, resumption and recovery after a restart, never on the hot path.

mod queries;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use switchyard_package::engine::{ChildRecord, ChildStatus, Event, ExecutionStatus, TaskRecord};
use switchyard_package::expr::Map;
use tokio::sync::{mpsc, oneshot};

use crate::report::Report;

use switchyard_sqlite::Readers;
pub use switchyard_sqlite::StoreError;
use writer::{Request, Shared};

/// The file the store keeps in its directory.
pub const DATABASE_FILE: &str = "coordinator.db";

/// Requests the writer may have queued before `write` waits for room: enough for a burst of
/// events from many executions at once, small enough to push back on a runaway producer.
const REQUEST_QUEUE: usize = 4096;

/// Read-only connections; WAL lets them read while the writer commits.
const READERS: usize = 2;

/// One execution of a package, as the executions list and the report's header show it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// The execution's id.
    pub execution_id: String,
    /// The client's request id, unique across executions, so a retried submission is found.
    pub request_id: Option<String>,
    /// The package's name.
    pub package: String,
    /// The package file it was loaded from.
    pub package_file: String,
    /// Its status (SSISDB's catalog.executions).
    pub status: ExecutionStatus,
    /// Who started it.
    pub caller: String,
    /// The parameter values used.
    pub parameters: Map,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; None while it runs.
    pub ended_at: Option<DateTime<Utc>>,
    /// How long it ran; None while it runs.
    pub duration_ms: Option<u64>,
}

/// One entry of an execution's event log.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// The execution it belongs to.
    pub execution_id: String,
    /// Its position in the execution's log, assigned by the caller.
    pub sequence: u64,
    /// The event, stored as JSON.
    pub event: Event,
}

/// One start of a job on an agent for an `agent_job` task: one per attempt, so failed, lost
/// and superseded attempts stay in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRunRecord {
    /// The execution whose task started it.
    pub execution_id: String,
    /// The task's path, loop iterations included.
    pub task_path: String,
    /// Which attempt of the task (from 0).
    pub attempt: u32,
    /// The agent it was started on.
    pub agent: String,
    /// The job.
    pub job: String,
    /// The agent's run id; with `agent`, the record's key.
    pub run_id: String,
    /// The idempotency key the start carried.
    pub idempotency_key: String,
    /// How it stands.
    pub status: ChildStatus,
    /// When it was started.
    pub started_at: DateTime<Utc>,
    /// How long it ran, once it ended.
    pub duration_ms: Option<u64>,
    /// What the agent said of it.
    pub message: String,
    /// The child package the job ran, when known.
    pub package: Option<String>,
}

impl From<ChildRunRecord> for ChildRecord {
    /// The report's view of a child run. Empty agent, job or run id (a child run in process,
    /// which has none) become null.
    fn from(child: ChildRunRecord) -> ChildRecord {
        let present = |text: String| if text.is_empty() { None } else { Some(text) };
        ChildRecord {
            task: child.task_path,
            agent: present(child.agent),
            job: present(child.job),
            run_id: present(child.run_id),
            package: child.package,
            status: child.status,
            duration_ms: child.duration_ms,
            tasks: Vec::new(),
        }
    }
}

/// One change to the store. The changes of one [`Store::write`] call commit together or not at all.
#[derive(Debug, Clone)]
pub enum Write {
    /// Records a new execution; fails when its id or request id is already stored.
    InsertExecution(ExecutionRecord),
    /// Replaces the execution with the same id (inserting it when missing).
    UpdateExecution(ExecutionRecord),
    /// Stores events; one with an execution and sequence already stored replaces it, so a
    /// retried write is harmless.
    AppendEvents(Vec<StoredEvent>),
    /// Replaces every task row of an execution; they read back in this order.
    PutTasks {
        /// The execution.
        execution_id: String,
        /// Its tasks, in report order.
        tasks: Vec<TaskRecord>,
    },
    /// Stores a child run, replacing the one with the same agent and run id.
    UpsertChild(ChildRunRecord),
    /// Records a child's outcome reported later (a fire-and-forget child); nothing when the
    /// child is not stored. A superseded child keeps that status and takes the rest.
    UpdateChildStatus {
        /// The agent it ran on.
        agent: String,
        /// The agent's run id.
        run_id: String,
        /// How it ended (or stands).
        status: ChildStatus,
        /// How long it ran.
        duration_ms: Option<u64>,
        /// What the agent said.
        message: String,
    },
    /// Records the last outbox sequence consumed from an agent, to resume from. Within one
    /// incarnation it only rises; a new incarnation replaces it.
    SetAgentCursor {
        /// The agent's name.
        agent: String,
        /// The agent's incarnation (its data dir's id).
        incarnation: String,
        /// The last sequence consumed.
        sequence: u64,
    },
    /// Sets a free-form meta value; keys the store keeps itself are refused.
    SetMeta {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// How the store is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `synchronous = FULL` (survives power loss, about a third slower) instead of NORMAL
    /// (survives a crash of the process).
    pub synchronous_full: bool,
}

/// Counters since the store was opened, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed by the writer.
    pub commits: u64,
    /// Write requests answered (committed or failed).
    pub requests: u64,
    /// Passive WAL checkpoints run.
    pub checkpoints: u64,
    /// Blocking WAL checkpoints run because the WAL grew too long.
    pub blocking_checkpoints: u64,
}

/// The coordinator's durable store. Cheap to clone; the writer stops when the last clone is
/// dropped or [`Store::close`] is called.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    readers: Readers,
    requests: Option<mpsc::Sender<Request>>,
    threads: Vec<JoinHandle<()>>,
}

impl Store {
    /// Opens (creating when missing) `coordinator.db` in `dir` with `synchronous = NORMAL` and
    /// starts the writer and checkpointer threads. Blocks briefly on file I/O.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_options(dir, StoreOptions::default())
    }

    /// As [`Store::open`], with options.
    pub fn open_with_options(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DATABASE_FILE);
        let connection = schema::open(&path, &options)?;
        let shared = Arc::new(Shared::new(path.clone()));
        let readers = (0..READERS).map(|_| schema::open_reader(&path)).collect::<Result<Vec<_>, _>>()?;
        let checkpoint_connection = schema::open_checkpointer(&path)?;

        // A full signal slot means a checkpoint is already due; the writer never waits on it.
        let (signal, signals) = std::sync::mpsc::sync_channel(1);
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let writer = writer::Writer::new(connection, shared.clone(), signal);
        let writer_thread = spawn(&path, "store writer", move || writer.run(queue))?;
        let wal = shared.wal.clone();
        let checkpointer_thread = spawn(&path, "store checkpointer", move || {
            switchyard_sqlite::run_checkpointer(checkpoint_connection, signals, wal)
        })?;

        let inner = Inner {
            shared,
            readers: Readers::new(readers),
            requests: Some(requests),
            threads: vec![writer_thread, checkpointer_thread],
        };
        Ok(Store { inner: Arc::new(inner) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        self.inner.shared.stats()
    }

    /// Applies `batch` atomically and resolves once it is committed (durable). Requests queued
    /// together share one transaction; a request that fails (a repeated request id, say) gets
    /// its error and leaves the others' writes in place. Dropping the future after the request
    /// was queued does not withdraw it.
    pub async fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        let sender = self.inner.requests.as_ref().ok_or_else(|| self.closed())?;
        let (reply, done) = oneshot::channel();
        sender.send(Request::Write { batch, reply }).await.map_err(|_| self.closed())?;
        done.await.map_err(|_| self.closed())?
    }

    /// The execution with this id.
    pub async fn execution(&self, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.read(move |connection| queries::execution(connection, queries::ExecutionKey::ExecutionId, &execution_id))
            .await
    }

    /// The execution started with this client request id.
    pub async fn execution_by_request(&self, request_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let request_id = request_id.to_owned();
        self.read(move |connection| queries::execution(connection, queries::ExecutionKey::RequestId, &request_id)).await
    }

    /// Up to `limit` executions (0: all), newest started first.
    pub async fn executions(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.read(move |connection| queries::executions(connection, limit)).await
    }

    /// Executions in any of these statuses, oldest started first (after a restart, those left
    /// `running` or `stopping` ended unexpectedly).
    pub async fn executions_with_status(
        &self,
        statuses: &[ExecutionStatus],
    ) -> Result<Vec<ExecutionRecord>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let statuses = statuses.to_vec();
        self.read(move |connection| queries::executions_with_status(connection, &statuses)).await
    }

    /// Up to `limit` events (0: all) of an execution with a sequence above `after`, in order.
    pub async fn events_after(
        &self,
        execution_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.read(move |connection| queries::events_after(connection, &execution_id, after, limit)).await
    }

    /// The task rows of an execution, in the order they were put.
    pub async fn tasks(&self, execution_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.read(move |connection| queries::tasks(connection, &execution_id)).await
    }

    /// The child runs of an execution, by start time.
    pub async fn children(&self, execution_id: &str) -> Result<Vec<ChildRunRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.read(move |connection| queries::children(connection, &execution_id)).await
    }

    /// The child run with this agent and run id.
    pub async fn child(&self, agent: &str, run_id: &str) -> Result<Option<ChildRunRecord>, StoreError> {
        let (agent, run_id) = (agent.to_owned(), run_id.to_owned());
        self.read(move |connection| queries::child(connection, &agent, &run_id)).await
    }

    /// The last outbox sequence consumed from each agent, as (agent, incarnation, sequence), by
    /// agent name.
    pub async fn agent_cursors(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.read(queries::agent_cursors).await
    }

    /// A meta value, including those the store keeps (`schema_version`, `created_at`).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.read(move |connection| queries::meta(connection, &key)).await
    }

    /// The Overview report of an execution (its record, tasks and children) read from one
    /// snapshot.
    pub async fn report(&self, execution_id: &str) -> Result<Option<Report>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.read(move |connection| queries::report(connection, &execution_id)).await
    }

    /// Commits what is queued and stops the writer for every clone (their later writes get
    /// [`StoreError::Closed`]); the threads end and the files close with the last clone.
    pub async fn close(self) {
        if let Some(sender) = &self.inner.requests {
            let (reply, stopped) = oneshot::channel();
            if sender.send(Request::Shutdown { reply }).await.is_ok() {
                let _ = stopped.await;
            }
        }
        // Dropping the last clone joins the threads; keep that off the async worker.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed { path: self.inner.shared.path.clone() }
    }

    async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let joined = tokio::task::spawn_blocking(move || {
            inner.readers.with(query).map_err(|error| StoreError::sqlite(&inner.shared.path, error))
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(self.closed()),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path()).finish()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue ends the writer, whose end disconnects the checkpointer.
        self.requests.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn spawn(
    path: &Path,
    thread: &'static str,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, StoreError> {
    std::thread::Builder::new().name(thread.replace(' ', "-")).spawn(body).map_err(|source| StoreError::Thread {
        path: path.to_path_buf(),
        thread,
        source,
    })
}
