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
mod retention;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
mod fencing_tests;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

use switchyard_package::engine::{ChildRecord, ChildStatus, ExecutionStatus, TaskRecord};
use switchyard_sqlite::Database;
use switchyard_sqlite::columns::meta;
pub use switchyard_sqlite::{StoreError, StoreStats};

pub use crate::model::{ChildRunRecord, ExecutionRecord, Report, StoredEvent};
pub use crate::registry::StopReason;

use writer::Applier;

/// The file the store keeps in its directory.
pub const DATABASE_FILE: &str = "coordinator.db";

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
    /// Stores a child run, merged into the one with the same agent and run id: its status only
    /// moves forward, and a late outcome it does not take is kept as the agent's result.
    UpsertChild(ChildRunRecord),
    /// Records what reconciliation did to a child; nothing when the child is not stored.
    /// Superseded always applies; a late cancel only to a child still running.
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
    /// Owes `agent` a stop of `run_id` until [`Write::RemovePendingStop`]: written with the
    /// event that makes it (a child lost and superseded, a cancel that could not be delivered).
    AddPendingStop {
        /// The agent.
        agent: String,
        /// The run to stop.
        run_id: String,
        /// Why.
        reason: StopReason,
    },
    /// The stop of `run_id` reached `agent` (or found the run already ended).
    RemovePendingStop {
        /// The agent.
        agent: String,
        /// The run.
        run_id: String,
    },
    /// A start given up while in flight to `agent` (declared down): a run it accepts under
    /// this key is superseded.
    AddAbandonedStart {
        /// The agent.
        agent: String,
        /// The start's idempotency key.
        idempotency_key: String,
    },
    /// Forgets abandoned starts of `agent`: one key once its run is fenced, or (`None`) every
    /// key when the agent's data dir was recreated.
    RemoveAbandonedStarts {
        /// The agent.
        agent: String,
        /// The key, or every key of the agent.
        idempotency_key: Option<String>,
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
    /// Deletes executions with their events, task rows, child runs and winning attempts
    /// (retention, DESIGN.md §12); an id not stored is no error.
    DeleteExecutions(Vec<String>),
    /// Sets a free-form meta value; keys the store keeps itself are refused.
    SetMeta {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
}

/// The fencing facts a restarted coordinator reloads into its registry (DESIGN.md §4 Fencing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fences {
    /// Stops owed to agents, as (agent, run id, reason).
    pub stops: Vec<(String, String, StopReason)>,
    /// Starts given up while in flight, as (agent, idempotency key).
    pub abandoned: Vec<(String, String)>,
}

/// An execution's task rows counted (`Execution.tasks_total` and `tasks_failed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    /// Every task row.
    pub total: u32,
    /// Rows whose result is failure.
    pub failed: u32,
}

/// How the store is opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreOptions {
    /// `synchronous = FULL` (survives power loss, about a third slower) instead of NORMAL
    /// (survives a crash of the process).
    pub synchronous_full: bool,
}

/// The coordinator's durable store. Cheap to clone; the writer stops when the last clone is
/// dropped or [`Store::close`] is called.
#[derive(Clone)]
pub struct Store {
    database: Database<Applier>,
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
        let database = Database::start(&path, connection, Applier::new(path.clone()))?;
        Ok(Store { database })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.database.path()
    }

    /// Counters since the store was opened.
    pub fn stats(&self) -> StoreStats {
        self.database.stats()
    }

    /// Tells `observe` how long each commit takes (metrics); false when one is already set.
    pub fn observe_commits(&self, observe: switchyard_sqlite::CommitObserver) -> bool {
        self.database.observe_commits(observe)
    }

    /// Applies `batch` atomically and resolves once it is committed (durable). Requests queued
    /// together share one transaction; a request that fails (a repeated request id, say) gets
    /// its error and leaves the others' writes in place. Dropping the future after the request
    /// was queued does not withdraw it.
    pub async fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.database.write(batch).await
    }

    /// The execution with this id.
    pub async fn execution(&self, execution_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.database
            .read(move |connection| queries::execution(connection, queries::ExecutionKey::ExecutionId, &execution_id))
            .await
    }

    /// The execution started with this client request id.
    pub async fn execution_by_request(&self, request_id: &str) -> Result<Option<ExecutionRecord>, StoreError> {
        let request_id = request_id.to_owned();
        self.database
            .read(move |connection| queries::execution(connection, queries::ExecutionKey::RequestId, &request_id))
            .await
    }

    /// Up to `limit` executions (0: all), newest started first.
    pub async fn executions(&self, limit: usize) -> Result<Vec<ExecutionRecord>, StoreError> {
        self.database.read(move |connection| queries::executions(connection, limit)).await
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
        self.database.read(move |connection| queries::executions_with_status(connection, &statuses)).await
    }

    /// Up to `limit` events (0: all) of an execution with a sequence above `after`, in order.
    pub async fn events_after(
        &self,
        execution_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.database.read(move |connection| queries::events_after(connection, &execution_id, after, limit)).await
    }

    /// How many task rows, and failed ones, each of `execution_ids` has stored (executions
    /// without rows are left out).
    pub async fn task_counts(
        &self,
        execution_ids: &[String],
    ) -> Result<std::collections::HashMap<String, TaskCounts>, StoreError> {
        if execution_ids.is_empty() {
            return Ok(std::collections::HashMap::new());
        }
        let ids = execution_ids.to_vec();
        self.database.read(move |connection| queries::task_counts(connection, &ids)).await
    }

    /// The task rows of an execution, in the order they were put.
    pub async fn tasks(&self, execution_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.database.read(move |connection| queries::tasks(connection, &execution_id)).await
    }

    /// The child runs of an execution, by start time.
    pub async fn children(&self, execution_id: &str) -> Result<Vec<ChildRunRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.database.read(move |connection| queries::children(connection, &execution_id)).await
    }

    /// The child runs of an execution as the report shows them, by start time, each with the
    /// agent's own result when its recorded status did not take it (a late outcome).
    pub async fn child_records(&self, execution_id: &str) -> Result<Vec<ChildRecord>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.database.read(move |connection| queries::child_records(connection, &execution_id)).await
    }

    /// The finished executions retention removes, oldest first: those started before `cutoff`
    /// (when given) and those beyond the newest `keep` executions (when given). One still
    /// running, or with a fire-and-forget child still running, is never among them.
    pub async fn due_for_pruning(
        &self,
        cutoff: Option<chrono::DateTime<chrono::Utc>>,
        keep: Option<usize>,
    ) -> Result<Vec<String>, StoreError> {
        self.database.read(move |connection| retention::due(connection, cutoff, keep)).await
    }

    /// How many executions are stored.
    pub async fn execution_count(&self) -> Result<u64, StoreError> {
        self.database.read(queries::execution_count).await
    }

    /// Stops still owed to agents and starts abandoned, for a restarted coordinator.
    pub async fn fences(&self) -> Result<Fences, StoreError> {
        self.database.read(queries::fences).await
    }

    /// The child run with this agent and run id.
    pub async fn child(&self, agent: &str, run_id: &str) -> Result<Option<ChildRunRecord>, StoreError> {
        let (agent, run_id) = (agent.to_owned(), run_id.to_owned());
        self.database.read(move |connection| queries::child(connection, &agent, &run_id)).await
    }

    /// The last outbox sequence consumed from each agent, as (agent, incarnation, sequence), by
    /// agent name.
    pub async fn agent_cursors(&self) -> Result<Vec<(String, String, u64)>, StoreError> {
        self.database.read(queries::agent_cursors).await
    }

    /// A meta value, including those the store keeps (`schema_version`, `created_at`).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.database.read(move |connection| meta(connection, &key)).await
    }

    /// The Overview report of an execution (its record, tasks and children) read from one
    /// snapshot.
    pub async fn report(&self, execution_id: &str) -> Result<Option<Report>, StoreError> {
        let execution_id = execution_id.to_owned();
        self.database.read(move |connection| queries::report(connection, &execution_id)).await
    }

    /// Commits what is queued and stops the writer for every clone (their later writes get
    /// [`StoreError::Closed`]); the threads end and the files close with the last clone.
    pub async fn close(self) {
        self.database.close().await
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path()).finish()
    }
}
