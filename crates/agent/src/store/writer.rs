//! The writer thread: group commit of queued requests, a savepoint per request, sequence and
//! instance id assignment, history retention, and publication of events once durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;

use rusqlite::Connection;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::model::{OutboxEvent, RunRecord};

use super::retention::Retention;
use super::rows::{self, Unsigned};
use super::schema::{META_LAST_INSTANCE_ID, META_LAST_SEQUENCE, RESERVED_META_KEYS};
use super::{EVENT_CHANNEL, StoreError, StoreOptions, StoreStats, Write, WriteReceipt};
use switchyard_sqlite::Wal;

/// Requests committed in one transaction at most: large enough that a burst shares a handful
/// of commits, small enough that the first caller of a burst is not kept waiting long.
const MAX_BATCH: usize = 512;

/// Commits, or written records, between nudges to the checkpointer (which otherwise wakes on
/// its own timer). Records stand in for WAL frames, which the writer does not see: a burst of
/// large batches dirties many pages per commit, and checkpointing every thousand or so records
/// keeps the WAL well below the blocking-checkpoint threshold during a burst.
const COMMITS_PER_CHECKPOINT_SIGNAL: u32 = 64;
const RECORDS_PER_CHECKPOINT_SIGNAL: usize = 1024;

/// What the store and its threads share.
pub(super) struct Shared {
    pub path: PathBuf,
    pub last_sequence: AtomicU64,
    pub requests: AtomicU64,
    /// Commit and checkpoint counters, and the gate, shared with the checkpointer.
    pub wal: Arc<Wal>,
    pub events: broadcast::Sender<OutboxEvent>,
}

impl Shared {
    pub fn new(path: PathBuf, last_sequence: u64) -> Shared {
        Shared {
            wal: Arc::new(Wal::new(path.clone())),
            path,
            last_sequence: AtomicU64::new(last_sequence),
            requests: AtomicU64::new(0),
            events: broadcast::Sender::new(EVENT_CHANNEL),
        }
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
    Write { batch: Vec<Write>, reply: oneshot::Sender<Result<WriteReceipt, StoreError>> },
    /// Commit what is queued, reply, and stop.
    Shutdown { reply: oneshot::Sender<()> },
}

/// Owns the write connection and the counters it assigns from.
pub(super) struct Writer {
    connection: Connection,
    shared: Arc<Shared>,
    options: StoreOptions,
    last_sequence: u64,
    last_instance_id: u64,
    checkpoint: SyncSender<()>,
    commits_since_signal: u32,
    records_since_signal: usize,
    retention: Retention,
}

impl Writer {
    pub fn new(
        connection: Connection,
        shared: Arc<Shared>,
        options: StoreOptions,
        last_instance_id: u64,
        checkpoint: SyncSender<()>,
    ) -> rusqlite::Result<Writer> {
        let last_sequence = shared.last_sequence.load(Ordering::Acquire);
        let retention = Retention::load(&connection, options.history_max_rows, options.history_max_rows_per_job)?;
        Ok(Writer {
            connection,
            shared,
            options,
            last_sequence,
            last_instance_id,
            checkpoint,
            commits_since_signal: 0,
            records_since_signal: 0,
            retention,
        })
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

    /// Applies `requests` in one transaction, commits, publishes and replies.
    pub(super) fn commit(&mut self, requests: Vec<Request>) -> Continue {
        self.shared.wal.gate.pass();
        let before = (self.last_sequence, self.last_instance_id);
        let mut outcomes = Vec::with_capacity(requests.len());
        match self.transaction(&requests, &mut outcomes) {
            Ok(()) => {
                self.shared.last_sequence.store(self.last_sequence, Ordering::Release);
                self.shared.wal.commits.fetch_add(1, Ordering::Relaxed);
                for receipt in outcomes.iter().flatten() {
                    for event in &receipt.events {
                        // No subscribers is not an error.
                        let _ = self.shared.events.send(event.clone());
                    }
                }
                let records = requests
                    .iter()
                    .map(|request| match request {
                        Request::Write { batch, .. } => batch.len(),
                        Request::Shutdown { .. } => 0,
                    })
                    .sum();
                self.nudge_checkpointer(records);
            }
            Err(error) => {
                tracing::error!(path = %self.shared.path.display(), %error, requests = requests.len(), "store commit failed");
                self.rollback();
                (self.last_sequence, self.last_instance_id) = before;
                self.reload_retention();
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
                    // A caller that stopped waiting (or queued without waiting) still had its
                    // write committed, or its failure is logged here.
                    if let Err(Err(error)) = reply.send(outcome) {
                        tracing::error!(path = %self.shared.path.display(), %error, "a queued write failed");
                    }
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
        outcomes: &mut Vec<Result<WriteReceipt, StoreError>>,
    ) -> rusqlite::Result<()> {
        let before = (self.last_sequence, self.last_instance_id);
        self.connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let mut history_rows = Vec::new();
        for request in requests {
            let outcome = match request {
                Request::Write { batch, .. } => self.apply_request(batch, &mut history_rows)?,
                // Stands in so outcomes line up with requests; a shutdown has nothing to report.
                Request::Shutdown { .. } => Ok(WriteReceipt::default()),
            };
            outcomes.push(outcome);
        }
        if !history_rows.is_empty() {
            self.trim_history(history_rows)?;
        }
        if self.last_sequence != before.0 {
            rows::set_meta(&self.connection, META_LAST_SEQUENCE, &self.last_sequence.to_string())?;
        }
        if self.last_instance_id != before.1 {
            rows::set_meta(&self.connection, META_LAST_INSTANCE_ID, &self.last_instance_id.to_string())?;
        }
        self.connection.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    /// Applies one request inside a savepoint, undoing it (writes and assigned numbers) when
    /// it fails. The outer error means the savepoint itself failed, and so the transaction.
    fn apply_request(
        &mut self,
        batch: &[Write],
        history_rows: &mut Vec<(u64, String)>,
    ) -> rusqlite::Result<Result<WriteReceipt, StoreError>> {
        let before = (self.last_sequence, self.last_instance_id);
        self.connection.prepare_cached("SAVEPOINT request")?.execute([])?;
        let mut receipt = WriteReceipt::default();
        let mut jobs = Vec::new();
        match self.apply_writes(batch, &mut receipt, &mut jobs) {
            Ok(()) => {
                self.connection.prepare_cached("RELEASE request")?.execute([])?;
                history_rows.extend(jobs);
                Ok(Ok(receipt))
            }
            Err(error) => {
                // Some errors (disk full, I/O) make SQLite roll the whole transaction back; then
                // the savepoint is gone and this fails, failing the batch as it must.
                self.connection.prepare_cached("ROLLBACK TO request")?.execute([])?;
                self.connection.prepare_cached("RELEASE request")?.execute([])?;
                (self.last_sequence, self.last_instance_id) = before;
                Ok(Err(error))
            }
        }
    }

    fn apply_writes(
        &mut self,
        batch: &[Write],
        receipt: &mut WriteReceipt,
        jobs: &mut Vec<(u64, String)>,
    ) -> Result<(), StoreError> {
        let path = &self.shared.path;
        let connection = &self.connection;
        let sqlite = |error| StoreError::sqlite(path, error);
        for write in batch {
            match write {
                Write::InsertRun(run) if run.accepted_sequence == 0 => {
                    let run = RunRecord { accepted_sequence: self.last_sequence + 1, ..run.clone() };
                    rows::put_run(connection, rows::INSERT_RUN, &run).map_err(sqlite)?
                }
                Write::InsertRun(run) => rows::put_run(connection, rows::INSERT_RUN, run).map_err(sqlite)?,
                Write::UpdateRun(run) => rows::put_run(connection, rows::UPSERT_RUN, run).map_err(sqlite)?,
                Write::AppendHistory(row) => {
                    let instance_id = self.last_instance_id + 1;
                    rows::insert_history(connection, instance_id, row).map_err(sqlite)?;
                    self.last_instance_id = instance_id;
                    receipt.instance_ids.push(instance_id);
                    jobs.push((instance_id, row.job.clone()));
                }
                Write::AppendEvent(event) => {
                    let event = OutboxEvent { sequence: self.last_sequence + 1, ..event.clone() };
                    rows::insert_event(connection, &event).map_err(sqlite)?;
                    self.last_sequence = event.sequence;
                    receipt.sequences.push(event.sequence);
                    receipt.events.push(event);
                }
                Write::PutOutput(output) => rows::put_output(connection, output).map_err(sqlite)?,
                Write::UpsertJob { name, definition, hash } => {
                    rows::upsert_job(connection, name, definition, hash).map_err(sqlite)?
                }
                Write::DeleteJob { name } => rows::delete_job(connection, name).map_err(sqlite)?,
                Write::PutPackage { name, content, hash } => {
                    rows::put_package(connection, name, content, hash).map_err(sqlite)?
                }
                Write::SetMeta { key, value } => {
                    if RESERVED_META_KEYS.contains(&key.as_str()) {
                        return Err(StoreError::ReservedMetaKey { path: path.clone(), key: key.clone() });
                    }
                    rows::set_meta(connection, key, value).map_err(sqlite)?
                }
                Write::SetConsumed(sequence) => rows::set_consumed(connection, *sequence).map_err(sqlite)?,
                Write::PruneOutbox { consumed_up_to, older_than } => {
                    receipt.pruned += rows::prune_outbox(connection, *consumed_up_to, older_than).map_err(sqlite)?;
                }
            }
        }
        Ok(())
    }

    /// Keeps the newest rows per job and overall, as SQL Server Agent does: the rows `added`
    /// push out are deleted by id. Inside a savepoint: a failure here is logged and left for the
    /// next batch rather than failing writes that were fine.
    fn trim_history(&mut self, added: Vec<(u64, String)>) -> rusqlite::Result<()> {
        let evicted = self.retention.add(added);
        if evicted.is_empty() {
            return Ok(());
        }
        let connection = &self.connection;
        connection.prepare_cached("SAVEPOINT retention")?.execute([])?;
        let trimmed = (|| -> rusqlite::Result<()> {
            let mut delete = connection.prepare_cached(rows::DELETE_HISTORY_ROW)?;
            for id in evicted {
                delete.execute([Unsigned(id)])?;
            }
            Ok(())
        })();
        if let Err(error) = trimmed {
            tracing::warn!(path = %self.shared.path.display(), %error, "trimming job history failed; retried on the next write");
            connection.prepare_cached("ROLLBACK TO retention")?.execute([])?;
            connection.prepare_cached("RELEASE retention")?.execute([])?;
            self.reload_retention();
            return Ok(());
        }
        connection.prepare_cached("RELEASE retention")?.execute([])?;
        Ok(())
    }

    /// Reads the kept history rows again after a write that did not go as recorded.
    fn reload_retention(&mut self) {
        let options = &self.options;
        match Retention::load(&self.connection, options.history_max_rows, options.history_max_rows_per_job) {
            Ok(retention) => self.retention = retention,
            Err(error) => tracing::error!(path = %self.shared.path.display(), %error, "cannot read job history ids"),
        }
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use super::super::schema;
    use super::super::tests::{at, event, run_record};
    use super::*;

    #[test]
    fn a_failing_request_leaves_the_rest_of_its_group_commit_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.db");
        let opened = schema::open(&path, &StoreOptions::default()).expect("open");
        let shared = Arc::new(Shared::new(path.clone(), opened.last_sequence));
        let (signal, _signals) = sync_channel(1);
        let mut writer =
            Writer::new(opened.connection, shared.clone(), StoreOptions::default(), opened.last_instance_id, signal)
                .expect("writer");
        let request = |batch| {
            let (reply, receipt) = oneshot::channel();
            (Request::Write { batch, reply }, receipt)
        };

        let (first, mut first_done) = request(vec![Write::InsertRun(run_record("run-1", "load", Some("key-1")))]);
        assert_eq!(writer.commit(vec![first]), Continue::Run);
        first_done.try_recv().expect("replied").expect("first run stored");

        // Both requests share one transaction: the duplicate key fails its own request only.
        let (duplicate, mut duplicate_done) = request(vec![
            Write::AppendEvent(event("run-2", at(0))),
            Write::InsertRun(run_record("run-2", "load", Some("key-1"))),
        ]);
        let (good, mut good_done) = request(vec![
            Write::AppendEvent(event("run-3", at(0))),
            Write::InsertRun(run_record("run-3", "load", Some("key-3"))),
        ]);
        assert_eq!(writer.commit(vec![duplicate, good]), Continue::Run);
        let error = duplicate_done.try_recv().expect("replied").expect_err("duplicate key refused");
        assert!(error.is_constraint_violation(), "{error}");
        let receipt = good_done.try_recv().expect("replied").expect("good request committed");
        assert_eq!(receipt.sequences, vec![1], "the failed request gave its sequence back");
        assert_eq!(shared.stats().commits, 2);
        assert_eq!(shared.last_sequence.load(Ordering::Acquire), 1);

        let reader = schema::open_reader(&path).expect("reader");
        let runs: Vec<String> = reader
            .prepare("SELECT run_id FROM runs ORDER BY run_id")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .expect("read runs");
        assert_eq!(runs, vec!["run-1", "run-3"]);
        let events: i64 = reader.query_row("SELECT count(*) FROM outbox", [], |row| row.get(0)).expect("count");
        assert_eq!(events, 1);
    }
}
