//! The writer thread: group commit of queued requests, each inside its own savepoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::rows;
use super::schema::RESERVED_META_KEYS;
use super::{StoreError, StoreStats, Write};
use switchyard_sqlite::Wal;

/// Requests committed in one transaction at most: large enough that a burst shares a handful
/// of commits, small enough that the first caller of a burst is not kept waiting long.
const MAX_BATCH: usize = 512;

/// Commits, or written records, between nudges to the checkpointer (which otherwise wakes on
/// its own timer). Records stand in for WAL frames, which the writer does not see; a report of
/// 10,000 tasks is one record here but many pages, so it counts its rows.
const COMMITS_PER_CHECKPOINT_SIGNAL: u32 = 64;
const RECORDS_PER_CHECKPOINT_SIGNAL: usize = 1024;

/// What the store and its threads share.
pub(super) struct Shared {
    pub path: PathBuf,
    pub requests: AtomicU64,
    /// Commit and checkpoint counters, and the gate, shared with the checkpointer.
    pub wal: Arc<Wal>,
}

impl Shared {
    pub fn new(path: PathBuf) -> Shared {
        Shared { wal: Arc::new(Wal::new(path.clone())), path, requests: AtomicU64::new(0) }
    }

    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.wal.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            checkpoints: self.wal.checkpoints.load(Ordering::Relaxed),
            blocking_checkpoints: self.wal.blocking_checkpoints.load(Ordering::Relaxed),
        }
    }
}

/// A message to the writer.
pub(super) enum Request {
    /// Apply these changes atomically; reply after the commit.
    Write { batch: Vec<Write>, reply: oneshot::Sender<Result<(), StoreError>> },
    /// Commit what is queued, reply, and stop.
    Shutdown { reply: oneshot::Sender<()> },
}

/// Owns the write connection.
pub(super) struct Writer {
    connection: Connection,
    shared: Arc<Shared>,
    checkpoint: SyncSender<()>,
    commits_since_signal: u32,
    records_since_signal: usize,
}

impl Writer {
    pub fn new(connection: Connection, shared: Arc<Shared>, checkpoint: SyncSender<()>) -> Writer {
        Writer { connection, shared, checkpoint, commits_since_signal: 0, records_since_signal: 0 }
    }

    /// Commits whatever is queued, batch after batch, until the queue closes or a shutdown.
    pub fn run(mut self, mut queue: mpsc::Receiver<Request>) {
        while let Some(first) = queue.blocking_recv() {
            let mut requests = Vec::with_capacity(MAX_BATCH.min(queue.len() + 1));
            requests.push(first);
            while requests.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(request) => requests.push(request),
                    Err(_) => break,
                }
            }
            if self.commit(requests) == Continue::Stop {
                break;
            }
        }
        // Requests still queued are dropped with the queue; their callers get `Closed`.
    }

    /// Applies `requests` in one transaction, commits and replies.
    pub(super) fn commit(&mut self, requests: Vec<Request>) -> Continue {
        self.shared.wal.gate.pass();
        let mut outcomes = Vec::with_capacity(requests.len());
        match self.transaction(&requests, &mut outcomes) {
            Ok(()) => {
                self.shared.wal.commits.fetch_add(1, Ordering::Relaxed);
                let records = requests.iter().map(records).sum();
                self.nudge_checkpointer(records);
            }
            Err(error) => {
                tracing::error!(path = %self.shared.path.display(), %error, requests = requests.len(), "store commit failed");
                self.rollback();
                let error = Arc::new(error);
                outcomes.clear();
                outcomes.resize_with(requests.len(), || {
                    Err(StoreError::Sqlite { path: self.shared.path.clone(), source: error.clone() })
                });
            }
        }
        let mut next = Continue::Run;
        for (request, outcome) in requests.into_iter().zip(outcomes) {
            match request {
                Request::Write { reply, .. } => {
                    self.shared.requests.fetch_add(1, Ordering::Relaxed);
                    // A caller that stopped waiting still had its write committed.
                    let _ = reply.send(outcome);
                }
                Request::Shutdown { reply } => {
                    next = Continue::Stop;
                    let _ = reply.send(());
                }
            }
        }
        next
    }

    /// One transaction for all `requests`, pushing one outcome per request. An error here is a
    /// failure of the whole transaction; a request's own failure is its outcome.
    fn transaction(
        &mut self,
        requests: &[Request],
        outcomes: &mut Vec<Result<(), StoreError>>,
    ) -> rusqlite::Result<()> {
        self.connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        for request in requests {
            let outcome = match request {
                Request::Write { batch, .. } => self.apply_request(batch)?,
                // Stands in so outcomes line up with requests; a shutdown has nothing to report.
                Request::Shutdown { .. } => Ok(()),
            };
            outcomes.push(outcome);
        }
        self.connection.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    /// Applies one request inside a savepoint, undoing it when it fails. The outer error means
    /// the savepoint itself failed, and so the transaction.
    fn apply_request(&mut self, batch: &[Write]) -> rusqlite::Result<Result<(), StoreError>> {
        self.connection.prepare_cached("SAVEPOINT request")?.execute([])?;
        match self.apply_writes(batch) {
            Ok(()) => {
                self.connection.prepare_cached("RELEASE request")?.execute([])?;
                Ok(Ok(()))
            }
            Err(error) => {
                // Some errors (disk full, I/O) make SQLite roll the whole transaction back; then
                // the savepoint is gone and this fails, failing the batch as it must.
                self.connection.prepare_cached("ROLLBACK TO request")?.execute([])?;
                self.connection.prepare_cached("RELEASE request")?.execute([])?;
                Ok(Err(error))
            }
        }
    }

    fn apply_writes(&self, batch: &[Write]) -> Result<(), StoreError> {
        let path = &self.shared.path;
        let connection = &self.connection;
        let sqlite = |error| StoreError::sqlite(path, error);
        for write in batch {
            match write {
                Write::InsertExecution(execution) => {
                    rows::put_execution(connection, rows::INSERT_EXECUTION, execution).map_err(sqlite)?
                }
                Write::UpdateExecution(execution) => {
                    rows::put_execution(connection, rows::UPSERT_EXECUTION, execution).map_err(sqlite)?
                }
                Write::AppendEvents(events) => {
                    for event in events {
                        rows::put_event(connection, event).map_err(sqlite)?;
                    }
                }
                Write::PutTasks { execution_id, tasks } => {
                    rows::replace_tasks(connection, execution_id, tasks).map_err(sqlite)?
                }
                Write::UpsertChild(child) => rows::upsert_child(connection, child).map_err(sqlite)?,
                Write::UpdateChildStatus { agent, run_id, status, duration_ms, message } => {
                    rows::update_child_status(connection, agent, run_id, *status, *duration_ms, message)
                        .map_err(sqlite)?
                }
                Write::SetAgentCursor { agent, incarnation, sequence } => {
                    rows::set_agent_cursor(connection, agent, incarnation, *sequence).map_err(sqlite)?
                }
                Write::SetMeta { key, value } => {
                    if RESERVED_META_KEYS.contains(&key.as_str()) {
                        return Err(StoreError::ReservedMetaKey { path: path.clone(), key: key.clone() });
                    }
                    rows::set_meta(connection, key, value).map_err(sqlite)?
                }
            }
        }
        Ok(())
    }

    fn rollback(&self) {
        if self.connection.is_autocommit() {
            return;
        }
        if let Err(error) = self.connection.execute_batch("ROLLBACK") {
            tracing::error!(path = %self.shared.path.display(), %error, "store rollback failed");
        }
    }

    fn nudge_checkpointer(&mut self, records: usize) {
        self.commits_since_signal += 1;
        self.records_since_signal += records;
        if self.commits_since_signal >= COMMITS_PER_CHECKPOINT_SIGNAL
            || self.records_since_signal >= RECORDS_PER_CHECKPOINT_SIGNAL
        {
            self.commits_since_signal = 0;
            self.records_since_signal = 0;
            // Full means a nudge is already pending.
            let _ = self.checkpoint.try_send(());
        }
    }
}

/// Whether the writer goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Continue {
    Run,
    Stop,
}

/// Rows a request writes, roughly: what the checkpointer nudges count.
fn records(request: &Request) -> usize {
    let Request::Write { batch, .. } = request else {
        return 0;
    };
    batch
        .iter()
        .map(|write| match write {
            Write::AppendEvents(events) => events.len(),
            Write::PutTasks { tasks, .. } => tasks.len(),
            _ => 1,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use switchyard_package::engine::ExecutionStatus;

    use super::super::{ExecutionRecord, StoreOptions, schema};
    use super::*;

    fn execution(id: &str, request_id: &str) -> ExecutionRecord {
        ExecutionRecord {
            execution_id: id.into(),
            request_id: Some(request_id.into()),
            package: "nightly-load".into(),
            package_file: "nightly.toml".into(),
            status: ExecutionStatus::Running,
            caller: "alice".into(),
            parameters: Default::default(),
            started_at: chrono::Utc::now(),
            ended_at: None,
            duration_ms: None,
        }
    }

    #[test]
    fn a_failing_request_leaves_the_rest_of_its_group_commit_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("coordinator.db");
        let connection = schema::open(&path, &StoreOptions::default()).expect("open");
        let shared = Arc::new(Shared::new(path.clone()));
        let (signal, _signals) = sync_channel(1);
        let mut writer = Writer::new(connection, shared.clone(), signal);
        let request = |batch| {
            let (reply, done) = oneshot::channel();
            (Request::Write { batch, reply }, done)
        };

        let (first, mut first_done) = request(vec![Write::InsertExecution(execution("exec-1", "request-1"))]);
        assert_eq!(writer.commit(vec![first]), Continue::Run);
        first_done.try_recv().expect("replied").expect("first execution stored");

        // Both requests share one transaction: the repeated request id fails its own request only.
        let (duplicate, mut duplicate_done) = request(vec![
            Write::SetMeta { key: "duplicate".into(), value: "written".into() },
            Write::InsertExecution(execution("exec-2", "request-1")),
        ]);
        let (good, mut good_done) = request(vec![Write::InsertExecution(execution("exec-3", "request-3"))]);
        assert_eq!(writer.commit(vec![duplicate, good]), Continue::Run);
        let error = duplicate_done.try_recv().expect("replied").expect_err("repeated request id refused");
        assert!(error.is_constraint_violation(), "{error}");
        good_done.try_recv().expect("replied").expect("good request committed");
        assert_eq!(shared.stats().commits, 2);
        assert_eq!(shared.stats().requests, 3);

        let reader = schema::open_reader(&path).expect("reader");
        let executions: Vec<String> = reader
            .prepare("SELECT execution_id FROM executions ORDER BY execution_id")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .expect("read executions");
        assert_eq!(executions, ["exec-1", "exec-3"]);
        let meta: i64 =
            reader.query_row("SELECT count(*) FROM meta WHERE key = 'duplicate'", [], |row| row.get(0)).expect("count");
        assert_eq!(meta, 0, "the failed request's other writes were undone");
    }
}
