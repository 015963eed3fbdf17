//! Read connections: reads never wait on the writer (WAL), and each takes a free connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError, TryLockError};

use rusqlite::Connection;

/// A few read-only connections, used from blocking threads.
#[derive(Debug)]
pub struct Readers {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    /// A pool over `connections` (at least one).
    pub fn new(connections: Vec<Connection>) -> Self {
        assert!(!connections.is_empty(), "a read pool needs a connection");
        Self { connections: connections.into_iter().map(Mutex::new).collect(), next: AtomicUsize::new(0) }
    }

    /// Runs `query` on a free connection, or waits for one in turn.
    pub fn with<T>(&self, query: impl FnOnce(&Connection) -> T) -> T {
        for connection in &self.connections {
            match connection.try_lock() {
                Ok(connection) => return query(&connection),
                // A panic in an earlier query leaves the connection itself usable.
                Err(TryLockError::Poisoned(poisoned)) => return query(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        query(&self.connections[index].lock().unwrap_or_else(PoisonError::into_inner))
    }
}
