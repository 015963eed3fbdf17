//! The agent's part of the group-commit writer (the loop itself is switchyard-sqlite's): how
//! each `Write` is applied, sequence and instance id assignment, history retention, and
//! publication of events once durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension};
use switchyard_sqlite::columns::{Unsigned, set_meta};
use switchyard_sqlite::{Apply, StoreError};
use tokio::sync::broadcast;

use crate::model::{OutboxEvent, RunRecord};

use super::retention::Retention;
use super::rows;
use super::schema::{META_LAST_INSTANCE_ID, META_LAST_SEQUENCE, RESERVED_META_KEYS};
use super::{EVENT_CHANNEL, StoreOptions, Write, WriteReceipt};

/// What the store's handles and its writer share.
pub(super) struct Shared {
    /// The incarnation id.
    pub incarnation: String,
    /// True when this open created the database.
    pub created: bool,
    /// The highest committed outbox sequence.
    pub last_sequence: AtomicU64,
    /// Committed events, published once durable.
    pub events: broadcast::Sender<OutboxEvent>,
}

impl Shared {
    pub fn new(incarnation: String, created: bool, last_sequence: u64) -> Shared {
        Shared {
            incarnation,
            created,
            last_sequence: AtomicU64::new(last_sequence),
            events: broadcast::Sender::new(EVENT_CHANNEL),
        }
    }
}

/// Applies the agent's writes for the writer thread, and owns the counters it assigns from.
pub(super) struct Applier {
    path: PathBuf,
    shared: Arc<Shared>,
    options: StoreOptions,
    last_sequence: u64,
    last_instance_id: u64,
    /// The counters as of the last commit, to go back to when a transaction fails.
    committed: (u64, u64),
    /// History rows written by the transaction's requests so far, as (instance id, job).
    history_added: Vec<(u64, String)>,
    retention: Retention,
}

impl Applier {
    /// Reads the history rows kept (for retention) on the write `connection`.
    pub fn new(
        connection: &Connection,
        path: PathBuf,
        shared: Arc<Shared>,
        options: StoreOptions,
        last_instance_id: u64,
    ) -> rusqlite::Result<Applier> {
        let last_sequence = shared.last_sequence.load(Ordering::Acquire);
        let retention = Retention::load(connection, options.history_max_rows, options.history_max_rows_per_job)?;
        Ok(Applier {
            path,
            shared,
            options,
            last_sequence,
            last_instance_id,
            committed: (last_sequence, last_instance_id),
            history_added: Vec::new(),
            retention,
        })
    }
}

impl Apply for Applier {
    type Request = Vec<Write>;
    type Receipt = WriteReceipt;

    /// Applies one request, giving back the numbers it assigned when it fails.
    fn apply(&mut self, connection: &Connection, batch: &Vec<Write>) -> Result<WriteReceipt, StoreError> {
        let before = (self.last_sequence, self.last_instance_id, self.history_added.len());
        let mut receipt = WriteReceipt::default();
        match self.apply_writes(connection, batch, &mut receipt) {
            Ok(()) => Ok(receipt),
            Err(error) => {
                (self.last_sequence, self.last_instance_id) = (before.0, before.1);
                self.history_added.truncate(before.2);
                Err(error)
            }
        }
    }

    fn records(batch: &Vec<Write>) -> usize {
        batch.len()
    }

    /// Trims history and records the counters' high-water marks in the same transaction.
    fn before_commit(&mut self, connection: &Connection) -> rusqlite::Result<()> {
        if !self.history_added.is_empty() {
            self.trim_history(connection)?;
        }
        if self.last_sequence != self.committed.0 {
            set_meta(connection, META_LAST_SEQUENCE, &self.last_sequence.to_string())?;
        }
        if self.last_instance_id != self.committed.1 {
            set_meta(connection, META_LAST_INSTANCE_ID, &self.last_instance_id.to_string())?;
        }
        Ok(())
    }

    /// Publishes the sequence and the events, now durable.
    fn committed(&mut self, outcomes: &[Result<WriteReceipt, StoreError>]) {
        self.committed = (self.last_sequence, self.last_instance_id);
        self.shared.last_sequence.store(self.last_sequence, Ordering::Release);
        for receipt in outcomes.iter().flatten() {
            for event in &receipt.events {
                // No subscribers is not an error.
                let _ = self.shared.events.send(event.clone());
            }
        }
    }

    /// Gives back every number the transaction assigned and reads the kept history again.
    fn rolled_back(&mut self, connection: &Connection) {
        (self.last_sequence, self.last_instance_id) = self.committed;
        self.history_added.clear();
        self.reload_retention(connection);
    }
}

impl Applier {
    fn apply_writes(
        &mut self,
        connection: &Connection,
        batch: &[Write],
        receipt: &mut WriteReceipt,
    ) -> Result<(), StoreError> {
        let path = &self.path;
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
                    self.history_added.push((instance_id, row.job.clone()));
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
                    set_meta(connection, key, value).map_err(sqlite)?
                }
                Write::SetConsumed(sequence) => rows::set_consumed(connection, *sequence).map_err(sqlite)?,
                Write::PruneOutbox { consumed_up_to, older_than } => {
                    receipt.pruned += rows::prune_outbox(connection, *consumed_up_to, older_than).map_err(sqlite)?;
                }
            }
        }
        Ok(())
    }

    /// Keeps the newest rows per job and overall, as SQL Server Agent does: the rows the
    /// transaction added push older ones out, deleted by id. Inside a savepoint: a failure here
    /// is logged and left for the next batch rather than failing writes that were fine.
    fn trim_history(&mut self, connection: &Connection) -> rusqlite::Result<()> {
        let evicted = self.retention.add(self.history_added.drain(..));
        if evicted.is_empty() {
            return Ok(());
        }
        connection.prepare_cached("SAVEPOINT retention")?.execute([])?;
        let trimmed = (|| -> rusqlite::Result<()> {
            let mut delete = connection.prepare_cached(rows::DELETE_HISTORY_ROW)?;
            let mut runs = std::collections::BTreeSet::new();
            for id in evicted {
                let run_id: Option<String> = delete.query_row([Unsigned(id)], |row| row.get(0)).optional()?;
                runs.extend(run_id);
            }
            // A run goes with its last history row, and its captured output with it.
            let mut delete_run = connection.prepare_cached(rows::DELETE_ENDED_RUN)?;
            let mut delete_output = connection.prepare_cached(rows::DELETE_ORPHAN_OUTPUT)?;
            for run_id in &runs {
                delete_run.execute([run_id])?;
                delete_output.execute([run_id])?;
            }
            Ok(())
        })();
        if let Err(error) = trimmed {
            tracing::warn!(path = %self.path.display(), %error, "trimming job history failed; retried on the next write");
            connection.prepare_cached("ROLLBACK TO retention")?.execute([])?;
            connection.prepare_cached("RELEASE retention")?.execute([])?;
            self.reload_retention(connection);
            return Ok(());
        }
        connection.prepare_cached("RELEASE retention")?.execute([])?;
        Ok(())
    }

    /// Reads the kept history rows again after a write that did not go as recorded.
    fn reload_retention(&mut self, connection: &Connection) {
        let options = &self.options;
        match Retention::load(connection, options.history_max_rows, options.history_max_rows_per_job) {
            Ok(retention) => self.retention = retention,
            Err(error) => tracing::error!(path = %self.path.display(), %error, "cannot read job history ids"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::sync_channel;

    use switchyard_sqlite::{Continue, Message, Wal, Writer};
    use tokio::sync::oneshot;

    use super::super::schema;
    use super::super::tests::{at, event, run_record};
    use super::*;

    #[test]
    fn a_failing_request_leaves_the_rest_of_its_group_commit_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.db");
        let opened = schema::open(&path, &StoreOptions::default()).expect("open");
        let shared = Arc::new(Shared::new(opened.incarnation, opened.created, opened.last_sequence));
        let applier = Applier::new(
            &opened.connection,
            path.clone(),
            shared.clone(),
            StoreOptions::default(),
            opened.last_instance_id,
        )
        .expect("applier");
        let wal = Arc::new(Wal::new(path.clone()));
        let (signal, _signals) = sync_channel(1);
        let mut writer = Writer::new(opened.connection, applier, wal.clone(), signal);
        let request = |request| {
            let (reply, receipt) = oneshot::channel();
            (Message::Write { request, reply }, receipt)
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
        assert_eq!(wal.stats().commits, 2);
        assert_eq!(shared.last_sequence.load(Ordering::Acquire), 1);

        let reader = switchyard_sqlite::open_reader(&path).expect("reader");
        let runs: Vec<String> = reader
            .prepare("SELECT run_id FROM runs ORDER BY run_id")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .expect("read runs");
        assert_eq!(runs, vec!["run-1", "run-3"]);
        let events: i64 = reader.query_row("SELECT count(*) FROM outbox", [], |row| row.get(0)).expect("count");
        assert_eq!(events, 1);
    }
}
