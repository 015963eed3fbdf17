//! A store's running database: the writer and checkpointer threads, the queue to the writer and
//! the read connections, behind one cheap handle the store's async methods go through.

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{open_checkpointer, open_reader};
use crate::writer::{Apply, Message, Writer};
use crate::{CommitObserver, Readers, StoreError, StoreStats, Wal, run_checkpointer};

/// Requests the writer may have queued before `write` waits for room: enough for a burst of
/// starts or events from everyone at once, small enough to push back on a runaway producer.
const REQUEST_QUEUE: usize = 4096;

/// Read-only connections; WAL lets them read while the writer commits.
const READERS: usize = 2;

/// A database with one group-commit writer. Cheap to clone; the threads stop and the files
/// close when the last clone is dropped, or the writer stops for every clone on [`Database::close`].
pub struct Database<A: Apply> {
    inner: Arc<Inner<A>>,
}

struct Inner<A: Apply> {
    wal: Arc<Wal>,
    readers: Readers,
    requests: Option<mpsc::Sender<Message<A>>>,
    threads: Vec<JoinHandle<()>>,
}

impl<A: Apply> Database<A> {
    /// Opens the read and checkpointer connections to `path` and starts the writer on
    /// `connection` (from [`crate::open_writer`]) with `apply`, and the checkpointer. Blocks
    /// briefly on file I/O.
    pub fn start(path: &Path, connection: Connection, apply: A) -> Result<Database<A>, StoreError> {
        let wal = Arc::new(Wal::new(path.to_path_buf()));
        let readers = (0..READERS).map(|_| open_reader(path)).collect::<Result<Vec<_>, _>>()?;
        let checkpoint_connection = open_checkpointer(path)?;

        // A full signal slot means a checkpoint is already due; the writer never waits on it.
        let (signal, signals) = std::sync::mpsc::sync_channel(1);
        let (requests, queue) = mpsc::channel(REQUEST_QUEUE);
        let writer = Writer::new(connection, apply, wal.clone(), signal);
        let writer_thread = spawn(path, "store writer", move || writer.run(queue))?;
        let checkpointer_wal = wal.clone();
        let checkpointer_thread = spawn(path, "store checkpointer", move || {
            run_checkpointer(checkpoint_connection, signals, checkpointer_wal)
        })?;

        let inner = Inner {
            wal,
            readers: Readers::new(readers),
            requests: Some(requests),
            threads: vec![writer_thread, checkpointer_thread],
        };
        Ok(Database { inner: Arc::new(inner) })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.wal.path
    }

    /// Counters since the database was opened.
    pub fn stats(&self) -> StoreStats {
        self.inner.wal.stats()
    }

    /// Tells `observe` how long each committed transaction takes from now on (metrics); only
    /// the first observer set is kept, and it returns false for a later one.
    pub fn observe_commits(&self, observe: CommitObserver) -> bool {
        self.inner.wal.commit_observer.set(observe).is_ok()
    }

    /// Queues `request` and resolves once it is committed (durable). Requests queued together
    /// share one transaction; one that fails gets its error and leaves the others' writes in
    /// place. Dropping the future after the request was queued does not withdraw it.
    pub async fn write(&self, request: A::Request) -> Result<A::Receipt, StoreError> {
        let sender = self.inner.requests.as_ref().ok_or_else(|| self.closed())?;
        let (reply, receipt) = oneshot::channel();
        sender.send(Message::Write { request, reply }).await.map_err(|_| self.closed())?;
        receipt.await.map_err(|_| self.closed())?
    }

    /// Queues `request` like [`Database::write`] without waiting for its commit: requests are
    /// applied in the order they are queued. A failure of the request is logged by the writer.
    pub async fn queue(&self, request: A::Request) -> Result<(), StoreError> {
        let sender = self.inner.requests.as_ref().ok_or_else(|| self.closed())?;
        let (reply, _receipt) = oneshot::channel();
        sender.send(Message::Write { request, reply }).await.map_err(|_| self.closed())
    }

    /// Runs `query` on a read-only connection on the blocking pool; it never waits for the
    /// writer. A panic in `query` resumes in the caller.
    pub async fn read<T, F>(&self, query: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        let joined = tokio::task::spawn_blocking(move || {
            inner.readers.with(query).map_err(|error| StoreError::sqlite(&inner.wal.path, error))
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(_) => Err(self.closed()),
        }
    }

    /// Commits what is queued and stops the writer for every clone (their later writes get
    /// [`StoreError::Closed`]); the threads end and the files close with the last clone.
    pub async fn close(self) {
        if let Some(sender) = &self.inner.requests {
            let (reply, stopped) = oneshot::channel();
            if sender.send(Message::Shutdown { reply }).await.is_ok() {
                let _ = stopped.await;
            }
        }
        // Dropping the last clone joins the threads; keep that off the async worker.
        let _ = tokio::task::spawn_blocking(move || drop(self)).await;
    }

    fn closed(&self) -> StoreError {
        StoreError::Closed { path: self.inner.wal.path.clone() }
    }
}

impl<A: Apply> Clone for Database<A> {
    fn clone(&self) -> Self {
        Database { inner: self.inner.clone() }
    }
}

impl<A: Apply> std::fmt::Debug for Database<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("path", &self.path()).finish()
    }
}

impl<A: Apply> Drop for Inner<A> {
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
