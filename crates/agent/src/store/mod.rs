//! The agent's durable store: runs, history, the outbox and captured output in one SQLite file.
//!
//! Shape (DESIGN.md §10): one writer thread owns the only write connection and commits whatever
//! is queued as one transaction (group commit), each request inside its own savepoint so a bad
//! request fails alone. A `write(..).await` resolves only after its commit, which in WAL mode
//! survives kill -9 of the process (`synchronous = NORMAL`; FULL adds power-loss safety). WAL
//! checkpoints run on a separate checkpointer thread, off the commit path. Reads use their own
//! read-only connections on the blocking pool and never wait for the writer.
//!
//! Invariants: outbox sequences and history instance ids are assigned by the writer in commit
//! order, contiguous for sequences, and never reused (their high-water marks live in `meta`, so
//! pruning every row does not rewind them). Events reach subscribers only after they are durable.

mod queries;
mod retention;
mod rows;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use switchyard_sqlite::Database;
use switchyard_sqlite::columns::meta;
pub use switchyard_sqlite::{StoreError, StoreStats};
use tokio::sync::broadcast;

use crate::model::{HistoryRecord, OutboxEvent, RunRecord, RunStatus, StepOutputRecord};

use writer::{Applier, Shared};

/// The file the store keeps in its directory.
pub const DATABASE_FILE: &str = "agent.db";

/// Events kept for slow subscribers; one that falls further behind gets `Lagged` and catches up
/// with [`Store::events_after`].
const EVENT_CHANNEL: usize = 8192;

/// How the store is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// `synchronous = FULL` (survives power loss, about a third slower) instead of NORMAL
    /// (survives a crash of the process).
    pub synchronous_full: bool,
    /// History rows kept overall, oldest removed first (0: no limit).
    pub history_max_rows: usize,
    /// History rows kept per job, oldest removed first (0: no limit).
    pub history_max_rows_per_job: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { synchronous_full: false, history_max_rows: 1000, history_max_rows_per_job: 100 }
    }
}

/// One change to the store. The changes of one [`Store::write`] call commit together or not at all.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Records a new run; fails when the run id or its idempotency key is already stored. An
    /// `accepted_sequence` of 0 is set to the sequence of the next event of the same batch (its
    /// ACCEPTED event, which follows it).
    InsertRun(RunRecord),
    /// Replaces the run with the same run id (inserting it when missing).
    UpdateRun(RunRecord),
    /// Appends a history row; the store assigns its instance id (the given one is ignored).
    AppendHistory(HistoryRecord),
    /// Appends an outbox event; the store assigns its sequence (the given one is ignored).
    AppendEvent(OutboxEvent),
    /// Stores a step attempt's output, replacing any with the same run, step and attempt.
    PutOutput(StepOutputRecord),
    /// Stores a job definition, replacing any with the same name.
    UpsertJob {
        /// The job's name.
        name: String,
        /// Its definition (TOML).
        definition: String,
        /// SHA-256 of the definition.
        hash: String,
    },
    /// Removes a job definition (nothing when it is missing).
    DeleteJob {
        /// The job's name.
        name: String,
    },
    /// Stores a package, replacing any with the same name.
    PutPackage {
        /// The package's name.
        name: String,
        /// Its content (TOML).
        content: String,
        /// SHA-256 of the content.
        hash: String,
    },
    /// Sets a free-form meta value; keys the store keeps itself are refused.
    SetMeta {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Records that the coordinator consumed the outbox up to this sequence (kept at the highest
    /// value ever set).
    SetConsumed(u64),
    /// Deletes outbox events that are both consumed (sequence <= `consumed_up_to`) and older than
    /// `older_than`; the count lands in [`WriteReceipt::pruned`].
    PruneOutbox {
        /// The highest sequence the coordinator has consumed.
        consumed_up_to: u64,
        /// Events at or after this instant are kept.
        older_than: DateTime<Utc>,
    },
}

/// What a committed [`Store::write`] assigned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteReceipt {
    /// The sequence of each `AppendEvent`, in order.
    pub sequences: Vec<u64>,
    /// The instance id of each `AppendHistory`, in order.
    pub instance_ids: Vec<u64>,
    /// The committed events, with their sequences.
    pub events: Vec<OutboxEvent>,
    /// Outbox rows deleted by `PruneOutbox`.
    pub pruned: u64,
}

/// Which history rows [`Store::history`] returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryFilter {
    /// Only this job.
    pub job: Option<String>,
    /// Only this run.
    pub run_id: Option<String>,
    /// Only rows that started at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// Only rows that started before this instant.
    pub until: Option<DateTime<Utc>>,
    /// At most this many rows (0: all).
    pub limit: usize,
}

/// A stored job definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    /// The job's name.
    pub name: String,
    /// Its definition (TOML).
    pub definition: String,
    /// SHA-256 of the definition.
    pub hash: String,
}

/// A stored package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPackage {
    /// The package's name.
    pub name: String,
    /// Its content (TOML).
    pub content: String,
    /// SHA-256 of the content.
    pub hash: String,
}

/// The agent's durable store. Cheap to clone; the writer stops when the last clone is dropped
/// or [`Store::close`] is called.
#[derive(Clone)]
pub struct Store {
    database: Database<Applier>,
    shared: Arc<Shared>,
}

impl Store {
    /// Opens (creating when missing) `agent.db` in `dir` and starts the writer and checkpointer
    /// threads. Blocks briefly on file I/O.
    pub fn open(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_path_buf(), source })?;
        let path = dir.join(DATABASE_FILE);
        let opened = schema::open(&path, &options)?;
        let shared = Arc::new(Shared::new(opened.incarnation, opened.created, opened.last_sequence));
        let applier = Applier::new(&opened.connection, path.clone(), shared.clone(), options, opened.last_instance_id)
            .map_err(|error| StoreError::sqlite(&path, error))?;
        let database = Database::start(&path, opened.connection, applier)?;
        Ok(Store { database, shared })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.database.path()
    }

    /// The incarnation id: a UUID made when the database was created.
    pub fn incarnation(&self) -> &str {
        &self.shared.incarnation
    }

    /// True when this open created the database (and so a new incarnation).
    pub fn created(&self) -> bool {
        self.shared.created
    }

    /// The highest committed outbox sequence (0 before the first event).
    pub fn last_sequence(&self) -> u64 {
        self.shared.last_sequence.load(Ordering::Acquire)
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
    /// together share one transaction; a request that fails (a broken constraint, say) gets its
    /// error and leaves the others' writes in place. Dropping the future after the request was
    /// queued does not withdraw it.
    pub async fn write(&self, batch: Vec<Write>) -> Result<WriteReceipt, StoreError> {
        self.database.write(batch).await
    }

    /// Queues `batch` like [`Store::write`] without waiting for its commit: writes are applied
    /// in the order they are queued, so a later awaited write is committed with or after it.
    /// A failure of the request is logged by the writer.
    pub async fn queue(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        self.database.queue(batch).await
    }

    /// Committed outbox events from now on, each once it is durable.
    pub fn subscribe(&self) -> broadcast::Receiver<OutboxEvent> {
        self.shared.events.subscribe()
    }

    /// The run with this id.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        let run_id = run_id.to_owned();
        self.database.read(move |connection| queries::run(connection, queries::RunKey::RunId, &run_id)).await
    }

    /// The run started with this idempotency key.
    pub async fn run_by_key(&self, key: &str) -> Result<Option<RunRecord>, StoreError> {
        let key = key.to_owned();
        self.database.read(move |connection| queries::run(connection, queries::RunKey::IdempotencyKey, &key)).await
    }

    /// Runs in any of these statuses, oldest accepted first.
    pub async fn runs_with_status(&self, statuses: &[RunStatus]) -> Result<Vec<RunRecord>, StoreError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let statuses = statuses.to_vec();
        self.database.read(move |connection| queries::runs_with_status(connection, &statuses)).await
    }

    /// The newest run (by acceptance) of each job, by job name.
    pub async fn latest_runs_by_job(&self) -> Result<Vec<RunRecord>, StoreError> {
        self.database.read(queries::latest_runs_by_job).await
    }

    /// History rows matching `filter`, newest first.
    pub async fn history(&self, filter: HistoryFilter) -> Result<Vec<HistoryRecord>, StoreError> {
        self.database.read(move |connection| queries::history(connection, &filter)).await
    }

    /// Up to `limit` outbox events with a sequence above `after`, in sequence order.
    pub async fn events_after(&self, after: u64, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.database.read(move |connection| queries::events_after(connection, after, limit)).await
    }

    /// The captured output of a run, by step and attempt.
    pub async fn outputs(&self, run_id: &str) -> Result<Vec<StepOutputRecord>, StoreError> {
        let run_id = run_id.to_owned();
        self.database.read(move |connection| queries::outputs(connection, &run_id)).await
    }

    /// Stored job definitions, by name.
    pub async fn jobs(&self) -> Result<Vec<StoredJob>, StoreError> {
        self.database.read(queries::jobs).await
    }

    /// Stored packages, by name.
    pub async fn packages(&self) -> Result<Vec<StoredPackage>, StoreError> {
        self.database.read(queries::packages).await
    }

    /// A meta value, including those the store keeps (`incarnation`, `consumed_sequence`, …).
    pub async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.database.read(move |connection| meta(connection, &key)).await
    }

    /// The highest sequence recorded with [`Write::SetConsumed`] (0 when none).
    pub async fn consumed(&self) -> Result<u64, StoreError> {
        let value = self.meta(schema::META_CONSUMED_SEQUENCE).await?;
        Ok(value.and_then(|value| value.parse().ok()).unwrap_or(0))
    }

    /// Deletes outbox events that are both consumed (sequence <= `consumed_up_to`) and older
    /// than `older_than`, through the writer; returns how many.
    pub async fn prune_outbox(&self, consumed_up_to: u64, older_than: DateTime<Utc>) -> Result<u64, StoreError> {
        let receipt = self.write(vec![Write::PruneOutbox { consumed_up_to, older_than }]).await?;
        Ok(receipt.pruned)
    }

    /// Commits what is queued and stops the writer for every clone (their later writes get
    /// [`StoreError::Closed`]); the threads end and the files close with the last clone.
    pub async fn close(self) {
        self.database.close().await
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path()).field("incarnation", &self.incarnation()).finish()
    }
}
