//! The writer thread (DESIGN.md §10): it owns the only write connection and commits whatever is
//! queued as one transaction (group commit), each request inside its own savepoint so a bad
//! request fails alone. What a request writes is the store's own, through [`Apply`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::{StoreError, Wal};

/// Requests committed in one transaction at most: large enough that a burst shares a handful
/// of commits, small enough that the first caller of a burst is not kept waiting long.
const MAX_BATCH: usize = 512;

/// Commits, or written records, between nudges to the checkpointer (which otherwise wakes on
/// its own timer). Records stand in for WAL frames, which the writer does not see: a burst of
/// large batches dirties many pages per commit (a report of 10,000 tasks is one request but
/// many rows), and checkpointing every thousand or so records keeps the WAL well below the
/// blocking-checkpoint threshold during a burst.
const COMMITS_PER_CHECKPOINT_SIGNAL: u32 = 64;
const RECORDS_PER_CHECKPOINT_SIGNAL: usize = 1024;

/// What a store adds to the shared writer: how one request is written, and what it keeps in
/// memory around the transaction (counters it assigns from, events to publish).
pub trait Apply: Send + 'static {
    /// One caller's changes, committed together or not at all.
    type Request: Send + 'static;
    /// What a committed request tells its caller.
    type Receipt: Send + 'static;

    /// Writes `request` inside its own savepoint. On an error the writer rolls the savepoint
    /// back and the rest of the transaction goes on, so an error must leave `self` as it was
    /// before the call (numbers assigned to the request given back).
    fn apply(&mut self, connection: &Connection, request: &Self::Request) -> Result<Self::Receipt, StoreError>;

    /// Rows `request` writes, roughly: what the checkpointer's nudges count.
    fn records(request: &Self::Request) -> usize;

    /// Runs after the transaction's last request, before COMMIT; an error fails the whole
    /// transaction.
    fn before_commit(&mut self, _connection: &Connection) -> rusqlite::Result<()> {
        Ok(())
    }

    /// Runs once the transaction is durable, before any caller hears of it, with the outcome of
    /// each request in queue order.
    fn committed(&mut self, _outcomes: &[Result<Self::Receipt, StoreError>]) {}

    /// Runs after the transaction failed and was rolled back: whatever `apply` assigned in it
    /// is to be forgotten.
    fn rolled_back(&mut self, _connection: &Connection) {}
}

/// A message to the writer.
pub enum Message<A: Apply> {
    /// Apply a request; reply after the commit.
    Write {
        /// The changes.
        request: A::Request,
        /// Where the outcome goes; a dropped receiver does not withdraw the request.
        reply: oneshot::Sender<Result<A::Receipt, StoreError>>,
    },
    /// Commit what is queued, reply, and stop.
    Shutdown {
        /// Told once the writer has stopped.
        reply: oneshot::Sender<()>,
    },
}

/// Whether the writer goes on after a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    /// Take the next batch.
    Run,
    /// A shutdown was in the batch.
    Stop,
}

/// Owns the write connection and the store's [`Apply`].
pub struct Writer<A: Apply> {
    connection: Connection,
    apply: A,
    wal: Arc<Wal>,
    checkpoint: SyncSender<()>,
    commits_since_signal: u32,
    records_since_signal: usize,
}

impl<A: Apply> Writer<A> {
    /// A writer on `connection` (from [`crate::open_writer`]) that counts into `wal` and nudges
    /// the checkpointer through `checkpoint` (a full channel means a nudge is already pending).
    pub fn new(connection: Connection, apply: A, wal: Arc<Wal>, checkpoint: SyncSender<()>) -> Writer<A> {
        Writer { connection, apply, wal, checkpoint, commits_since_signal: 0, records_since_signal: 0 }
    }

    /// Commits whatever is queued, batch after batch, until the queue closes or a shutdown.
    pub fn run(mut self, mut queue: mpsc::Receiver<Message<A>>) {
        while let Some(first) = queue.blocking_recv() {
            let mut messages = Vec::with_capacity(MAX_BATCH.min(queue.len() + 1));
            messages.push(first);
            while messages.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(message) => messages.push(message),
                    Err(_) => break,
                }
            }
            if self.commit(messages) == Continue::Stop {
                break;
            }
        }
        // Requests still queued are dropped with the queue; their callers get `Closed`.
    }

    /// Applies the requests in `messages` in one transaction, commits and replies.
    pub fn commit(&mut self, messages: Vec<Message<A>>) -> Continue {
        self.wal.gate.pass();
        let mut outcomes = Vec::with_capacity(messages.len());
        let began = std::time::Instant::now();
        let failure = match self.transaction(&messages, &mut outcomes) {
            Ok(()) => {
                self.wal.commits.fetch_add(1, Ordering::Relaxed);
                if let Some(observe) = self.wal.commit_observer.get() {
                    observe(began.elapsed());
                }
                self.apply.committed(&outcomes);
                let records = messages
                    .iter()
                    .map(|message| match message {
                        Message::Write { request, .. } => A::records(request),
                        Message::Shutdown { .. } => 0,
                    })
                    .sum();
                self.nudge_checkpointer(records);
                None
            }
            Err(error) => {
                tracing::error!(path = %self.wal.path.display(), %error, requests = messages.len(), "store commit failed");
                self.rollback();
                self.apply.rolled_back(&self.connection);
                Some(Arc::new(error))
            }
        };
        let mut outcomes = outcomes.into_iter();
        let mut next = Continue::Run;
        for message in messages {
            match message {
                Message::Write { reply, .. } => {
                    self.wal.requests.fetch_add(1, Ordering::Relaxed);
                    let outcome = match &failure {
                        None => outcomes.next().expect("the transaction gave every request an outcome"),
                        Some(error) => Err(StoreError::Sqlite { path: self.wal.path.clone(), source: error.clone() }),
                    };
                    // A caller that stopped waiting (or queued without waiting) still had its
                    // write committed, or its failure is logged here.
                    if let Err(Err(error)) = reply.send(outcome) {
                        tracing::error!(path = %self.wal.path.display(), %error, "a queued write failed");
                    }
                }
                Message::Shutdown { reply } => {
                    next = Continue::Stop;
                    let _ = reply.send(());
                }
            }
        }
        next
    }

    /// One transaction for the requests in `messages`, pushing one outcome per request. An
    /// error here is a failure of the whole transaction; a request's own failure is its outcome.
    fn transaction(
        &mut self,
        messages: &[Message<A>],
        outcomes: &mut Vec<Result<A::Receipt, StoreError>>,
    ) -> rusqlite::Result<()> {
        self.connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        for message in messages {
            if let Message::Write { request, .. } = message {
                outcomes.push(self.apply_request(request)?);
            }
        }
        self.apply.before_commit(&self.connection)?;
        self.connection.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    }

    /// Applies one request inside a savepoint, undoing it when it fails. The outer error means
    /// the savepoint itself failed, and so the transaction.
    fn apply_request(&mut self, request: &A::Request) -> rusqlite::Result<Result<A::Receipt, StoreError>> {
        self.connection.prepare_cached("SAVEPOINT request")?.execute([])?;
        match self.apply.apply(&self.connection, request) {
            Ok(receipt) => {
                self.connection.prepare_cached("RELEASE request")?.execute([])?;
                Ok(Ok(receipt))
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

    fn rollback(&self) {
        if self.connection.is_autocommit() {
            return;
        }
        if let Err(error) = self.connection.execute_batch("ROLLBACK") {
            tracing::error!(path = %self.wal.path.display(), %error, "store rollback failed");
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

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::mpsc::sync_channel;

    use super::*;
    use crate::{Database, Found, Schema, StoreStats, Synchronous, open_writer};

    const SCHEMA: Schema = Schema {
        program: "test",
        version: 1,
        tables: "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) WITHOUT ROWID;
                 CREATE TABLE items (name TEXT PRIMARY KEY NOT NULL) WITHOUT ROWID;",
    };

    /// Inserts names; counts what the hooks saw.
    struct Items {
        path: PathBuf,
        committed: usize,
        rolled_back: usize,
    }

    impl Apply for Items {
        type Request = Vec<String>;
        type Receipt = usize;

        fn apply(&mut self, connection: &Connection, names: &Vec<String>) -> Result<usize, StoreError> {
            for name in names {
                connection
                    .prepare_cached("INSERT INTO items (name) VALUES (?1)")
                    .and_then(|mut insert| insert.execute([name]))
                    .map_err(|error| StoreError::sqlite(&self.path, error))?;
            }
            Ok(names.len())
        }

        fn records(names: &Vec<String>) -> usize {
            names.len()
        }

        fn committed(&mut self, outcomes: &[Result<usize, StoreError>]) {
            self.committed += outcomes.len();
        }

        fn rolled_back(&mut self, _connection: &Connection) {
            self.rolled_back += 1;
        }
    }

    fn open(path: &Path) -> Connection {
        let (connection, found) =
            open_writer(path, Synchronous::Normal, &SCHEMA, |_, found| Ok(found)).expect("open the writer");
        assert_eq!(found, Found::Created);
        connection
    }

    fn names(path: &Path) -> Vec<String> {
        let reader = crate::open_reader(path).expect("reader");
        let mut statement = reader.prepare("SELECT name FROM items ORDER BY name").expect("prepare");
        statement.query_map([], |row| row.get(0)).and_then(Iterator::collect).expect("read names")
    }

    #[test]
    fn a_failing_request_is_undone_alone_and_a_failed_transaction_fails_every_request() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("test.db");
        let items = Items { path: path.clone(), committed: 0, rolled_back: 0 };
        let wal = Arc::new(Wal::new(path.clone()));
        let (signal, _signals) = sync_channel(1);
        let mut writer = Writer::new(open(&path), items, wal.clone(), signal);
        let write = |names: &[&str]| {
            let (reply, outcome) = oneshot::channel();
            (Message::Write { request: names.iter().map(|name| name.to_string()).collect(), reply }, outcome)
        };

        let (first, mut first_done) = write(&["a"]);
        let (repeated, mut repeated_done) = write(&["b", "a"]);
        let (last, mut last_done) = write(&["c"]);
        assert_eq!(writer.commit(vec![first, repeated, last]), Continue::Run);
        assert_eq!(first_done.try_recv().expect("replied").expect("stored"), 1);
        let error = repeated_done.try_recv().expect("replied").expect_err("a repeated name is refused");
        assert!(error.is_constraint_violation(), "{error}");
        assert_eq!(last_done.try_recv().expect("replied").expect("stored"), 1);
        assert_eq!(names(&path), ["a", "c"], "the refused request's first insert was undone");
        assert_eq!(writer.apply.committed, 3);

        // A transaction that cannot begin (one is already open) fails every request in it.
        writer.connection.execute_batch("BEGIN").expect("begin");
        let (doomed, mut doomed_done) = write(&["d"]);
        let (shutdown, stopped) = oneshot::channel();
        assert_eq!(writer.commit(vec![doomed, Message::Shutdown { reply: shutdown }]), Continue::Stop);
        assert!(doomed_done.try_recv().expect("replied").is_err());
        drop(stopped);
        assert_eq!(writer.apply.rolled_back, 1);
        assert_eq!(wal.stats(), StoreStats { commits: 1, requests: 4, ..StoreStats::default() });
    }

    #[tokio::test]
    async fn a_database_writes_reads_and_refuses_writes_once_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("test.db");
        let items = Items { path: path.clone(), committed: 0, rolled_back: 0 };
        let database = Database::start(&path, open(&path), items).expect("start");
        assert_eq!(database.write(vec!["a".into(), "b".into()]).await.expect("write"), 2);
        database.queue(vec!["c".into()]).await.expect("queue");
        database.write(Vec::new()).await.expect("a later write commits after the queued one");
        let count: i64 = database
            .read(|connection| connection.query_row("SELECT count(*) FROM items", [], |row| row.get(0)))
            .await
            .expect("read");
        assert_eq!(count, 3);

        let other = database.clone();
        database.close().await;
        let error = other.write(vec!["d".into()]).await.expect_err("closed");
        assert!(matches!(error, StoreError::Closed { .. }), "{error}");
        assert_eq!(other.read(|_| Ok(1)).await.expect("reads go on"), 1);
    }

    #[test]
    fn a_database_of_another_schema_version_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("test.db");
        drop(open(&path));
        let newer = Schema { version: 2, ..SCHEMA };
        let error = open_writer(&path, Synchronous::Full, &newer, |_, _| Ok(())).expect_err("refused");
        assert!(error.to_string().contains("has schema version 1, this test reads version 2"), "{error}");
    }
}
