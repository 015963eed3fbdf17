//! The checkpointer thread: copies the WAL back into the database off the commit path, and
//! keeps the WAL bounded with a blocking checkpoint only when it has grown long.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

/// How often a passive checkpoint runs when the writer has committed since the last one.
const PERIOD: Duration = Duration::from_millis(500);

/// WAL frames (pages) past which a blocking checkpoint runs. A passive checkpoint cannot
/// finish while readers hold old snapshots, and the WAL only restarts from its beginning once
/// fully checkpointed; past this length (about 16 MB of 4 KB pages) the checkpointer waits for
/// readers (holding off the writer briefly) so the WAL cannot grow without bound.
const BLOCKING_CHECKPOINT_FRAMES: i64 = 4000;

/// Lets a blocking checkpoint have the write lock. SQLite's busy handler polls, and a writer
/// that begins its next transaction as soon as it commits wins every poll, so under steady
/// load the checkpoint would never run and the WAL would grow without bound. Instead the
/// writer passes this gate before each transaction and waits while a blocking checkpoint holds it.
#[derive(Debug, Default)]
pub struct Gate {
    pending: AtomicBool,
    lock: Mutex<()>,
}

impl Gate {
    /// Called by the writer before each transaction; returns at once unless a blocking
    /// checkpoint is pending.
    pub fn pass(&self) {
        if self.pending.load(Ordering::Acquire) {
            drop(self.lock.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    /// Runs `checkpoint` while the writer waits at the gate (after its current transaction).
    fn hold<T>(&self, checkpoint: impl FnOnce() -> T) -> T {
        let _held = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        self.pending.store(true, Ordering::Release);
        let done = checkpoint();
        self.pending.store(false, Ordering::Release);
        done
    }
}

/// The state a store's writer, its checkpointer and its handles share: the database's path,
/// the counters behind [`StoreStats`] and the checkpoint gate.
pub struct Wal {
    /// The database file, for messages.
    pub path: PathBuf,
    /// Transactions committed by the writer.
    pub commits: AtomicU64,
    /// Write requests answered by the writer (committed or failed).
    pub requests: AtomicU64,
    /// Checkpoints run.
    pub checkpoints: AtomicU64,
    /// Blocking checkpoints that finished.
    pub blocking_checkpoints: AtomicU64,
    /// The writer passes it before each transaction.
    pub gate: Gate,
    /// Told how long each committed transaction took (metrics), once set.
    pub commit_observer: std::sync::OnceLock<CommitObserver>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("path", &self.path).field("stats", &self.stats()).finish_non_exhaustive()
    }
}

/// Told the duration of each committed transaction, from BEGIN to the end of COMMIT.
pub type CommitObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;

impl Wal {
    /// Fresh counters for the database at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            commits: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            blocking_checkpoints: AtomicU64::new(0),
            gate: Gate::default(),
            commit_observer: std::sync::OnceLock::new(),
        }
    }

    /// The counters as they stand.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            blocking_checkpoints: self.blocking_checkpoints.load(Ordering::Relaxed),
        }
    }
}

/// Counters since a store was opened, for metrics.
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

/// Runs the checkpointer on its own connection until the writer goes away (its end of
/// `nudges` closes).
pub fn run_checkpointer(connection: Connection, nudges: Receiver<()>, shared: Arc<Wal>) {
    let mut commits_checkpointed = 0;
    while let Ok(()) | Err(RecvTimeoutError::Timeout) = nudges.recv_timeout(PERIOD) {
        let commits = shared.commits.load(Ordering::Relaxed);
        if commits == commits_checkpointed {
            continue;
        }
        commits_checkpointed = commits;
        match checkpoint(&connection, Mode::Passive) {
            Ok(Done { frames, .. }) => {
                shared.checkpoints.fetch_add(1, Ordering::Relaxed);
                if frames > BLOCKING_CHECKPOINT_FRAMES {
                    match shared.gate.hold(|| checkpoint(&connection, Mode::Restart)) {
                        Ok(Done { busy: false, .. }) => {
                            shared.blocking_checkpoints.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Done { busy: true, .. }) => {
                            tracing::debug!(path = %shared.path.display(), frames, "blocking wal checkpoint waited too long for readers")
                        }
                        Err(error) => {
                            tracing::warn!(path = %shared.path.display(), %error, frames, "blocking wal checkpoint failed")
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(path = %shared.path.display(), %error, "wal checkpoint failed"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    /// Copies what it can without waiting for anyone.
    Passive,
    /// Waits for readers on old snapshots (and holds off the writer meanwhile), copies
    /// everything, and makes the next commit start the WAL from its beginning.
    Restart,
}

/// What `PRAGMA wal_checkpoint` reported.
#[derive(Debug, Clone, Copy)]
struct Done {
    /// It could not finish (a reader or the writer held on past the busy timeout).
    busy: bool,
    /// The WAL's length in frames.
    frames: i64,
}

/// Runs a checkpoint.
fn checkpoint(connection: &Connection, mode: Mode) -> rusqlite::Result<Done> {
    let sql = match mode {
        Mode::Passive => "PRAGMA wal_checkpoint(PASSIVE)",
        Mode::Restart => "PRAGMA wal_checkpoint(RESTART)",
    };
    connection
        .prepare_cached(sql)?
        .query_row([], |row| Ok(Done { busy: row.get::<_, i64>(0)? != 0, frames: row.get(1)? }))
}
