//! Transactions with SSIS's TransactionOption rules: Required starts one unless its parent has
//! one, then joins; Supported joins only; NotSupported runs outside. The starter commits when it
//! succeeds and rolls back otherwise; within a transaction, connections with the same url share
//! one session; several PostgreSQL databases commit in two phases; outside one, sessions come
//! from the run's pool and commit statement by statement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use tokio::sync::Mutex;

use super::database::{Databases, Session};
use crate::model::{DatabaseKind, Isolation, TransactionOption};

/// A session shared by the tasks of a transaction that use its url.
pub(crate) type SharedSession = Arc<Mutex<Box<dyn Session>>>;

/// One transaction and the sessions it has enlisted.
pub(crate) struct Transaction {
    /// Names it in two-phase ids.
    id: String,
    /// What started it, for messages: `package "A"` or `task "Load"`.
    pub starter: String,
    isolation: Isolation,
    sessions: Mutex<Vec<Enlisted>>,
}

struct Enlisted {
    url: String,
    connection: String,
    kind: DatabaseKind,
    session: SharedSession,
}

/// Where a package, container or task runs with respect to transactions.
pub(crate) enum Membership {
    /// Outside any transaction.
    Outside,
    /// Inside its parent's transaction.
    Joined(Arc<Transaction>),
    /// Inside a transaction it started and ends.
    Started(Arc<Transaction>),
}

impl Membership {
    /// The transaction its children see.
    pub fn transaction(&self) -> Option<Arc<Transaction>> {
        match self {
            Membership::Outside => None,
            Membership::Joined(t) | Membership::Started(t) => Some(t.clone()),
        }
    }
}

/// Applies `option` under the parent's transaction `parent`; `starter` names what would start one.
pub(crate) fn enter(
    option: TransactionOption,
    isolation: Isolation,
    parent: Option<&Arc<Transaction>>,
    starter: impl FnOnce() -> String,
) -> Membership {
    match (option, parent) {
        (TransactionOption::NotSupported, _) | (TransactionOption::Supported, None) => Membership::Outside,
        (TransactionOption::Required | TransactionOption::Supported, Some(parent)) => {
            Membership::Joined(parent.clone())
        }
        (TransactionOption::Required, None) => Membership::Started(Arc::new(Transaction {
            id: uuid::Uuid::new_v4().simple().to_string(),
            starter: starter(),
            isolation,
            sessions: Mutex::new(Vec::new()),
        })),
    }
}

impl Transaction {
    /// The session this transaction holds on `url`, opened (and its transaction begun with the
    /// starter's isolation) on first use. Refuses a second database when either is SQLite.
    pub async fn session(
        &self,
        databases: &dyn Databases,
        connection: &str,
        url: &str,
    ) -> Result<SharedSession, String> {
        let mut sessions = self.sessions.lock().await;
        if let Some(enlisted) = sessions.iter().find(|e| e.url == url) {
            return Ok(enlisted.session.clone());
        }
        let kind = DatabaseKind::of_url(url).ok_or_else(|| format!("unsupported connection url \"{url}\""))?;
        if let Some(other) = sessions.iter().find(|e| e.kind == DatabaseKind::Sqlite || kind == DatabaseKind::Sqlite) {
            return Err(format!(
                "the transaction started by {} would mix {} connection \"{}\" ({}) with {kind} connection \"{connection}\" ({url}): a transaction spans PostgreSQL connections (two-phase commit) or a single SQLite database",
                self.starter, other.kind, other.connection, other.url
            ));
        }
        let mut session = databases.open(url).await.map_err(|e| format!("connection \"{connection}\": {e}"))?;
        session
            .begin(self.isolation)
            .await
            .map_err(|e| format!("connection \"{connection}\": cannot begin the transaction: {e}"))?;
        let session: SharedSession = Arc::new(Mutex::new(session));
        sessions.push(Enlisted {
            url: url.to_string(),
            connection: connection.to_string(),
            kind,
            session: session.clone(),
        });
        Ok(session)
    }

    /// Commits (when `commit`) or rolls back everything enlisted. Ok says what happened (None
    /// when no connection was used); Err says why a commit did not happen.
    pub async fn end(&self, databases: Option<&Arc<dyn Databases>>, commit: bool) -> Result<Option<String>, String> {
        let enlisted = std::mem::take(&mut *self.sessions.lock().await);
        if enlisted.is_empty() {
            return Ok(None);
        }
        self.end_sessions(enlisted, databases, commit).await.map(Some)
    }

    async fn end_sessions(
        &self,
        enlisted: Vec<Enlisted>,
        databases: Option<&Arc<dyn Databases>>,
        commit: bool,
    ) -> Result<String, String> {
        let mut sessions = Vec::with_capacity(enlisted.len());
        for e in enlisted {
            // Every task of the transaction has ended: nothing else holds its sessions.
            let session = Arc::try_unwrap(e.session)
                .map(Mutex::into_inner)
                .map_err(|_| format!("connection \"{}\" is still in use by a task", e.connection))?;
            sessions.push((e.connection, e.url, session));
        }
        let count = sessions.len();
        if !commit {
            let mut problems = Vec::new();
            for (connection, _, mut session) in sessions {
                if let Err(e) = session.rollback().await {
                    problems.push(format!("connection \"{connection}\": {e}"));
                }
            }
            return if problems.is_empty() {
                Ok(format!("rolled back on {count} connection(s)"))
            } else {
                Err(format!("rolling back failed: {}", problems.join("; ")))
            };
        }
        if count == 1 {
            let (connection, _, mut session) = sessions.remove(0);
            return match session.commit().await {
                Ok(()) => Ok("committed on 1 connection".into()),
                Err(e) => Err(format!("commit failed on connection \"{connection}\": {e}")),
            };
        }
        let Some(databases) = databases else {
            return Err("no database driver to commit with".into());
        };
        let names: Vec<String> = sessions.iter().map(|(c, _, _)| format!("\"{c}\"")).collect();
        let sessions = sessions.into_iter().map(|(_, url, s)| (url, s)).collect();
        match databases.commit_two_phase(&self.id, sessions).await {
            Ok(()) => Ok(format!("committed on {count} connections ({}) with two-phase commit", names.join(", "))),
            Err(e) => Err(format!("two-phase commit on {} failed: {e}", names.join(", "))),
        }
    }
}

/// Sessions used outside transactions, kept open for the rest of the run (and its child
/// packages) by url.
#[derive(Default)]
pub(crate) struct SessionPool {
    idle: StdMutex<HashMap<String, Vec<Box<dyn Session>>>>,
}

impl SessionPool {
    /// An idle session on `url`, or a new one.
    pub async fn take(&self, databases: &dyn Databases, url: &str) -> Result<Box<dyn Session>, String> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).get_mut(url).and_then(Vec::pop);
        match idle {
            Some(session) => Ok(session),
            None => databases.open(url).await,
        }
    }

    /// Returns a session that is healthy (its last statement succeeded) for another task.
    pub fn put(&self, url: &str, session: Box<dyn Session>) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).entry(url.to_string()).or_default().push(session);
    }
}

/// Ends a transaction a task or package started: commits when `succeeded`, else rolls back;
/// records a TransactionEnded event at `event_path`. Err says why a commit failed.
pub(crate) async fn settle(
    shared: &super::RunShared,
    transaction: &Transaction,
    event_path: &str,
    succeeded: bool,
) -> Result<(), String> {
    let ended = transaction.end(shared.databases.as_ref(), succeeded).await;
    let (committed, message, outcome) = match ended {
        Ok(None) => return Ok(()),
        Ok(Some(message)) => (succeeded, message, Ok(())),
        Err(e) if succeeded => (false, e.clone(), Err(e)),
        Err(e) => (false, e, Ok(())),
    };
    tracing::debug!(execution = %shared.execution_id, starter = %transaction.starter, committed, %message, "transaction ended");
    shared.events.emit(event_path, super::EventKind::TransactionEnded { committed, message });
    outcome
}

/// What a package run inherits from the task that runs it: its transaction (when the `package`
/// task joined one) and the run's pool of sessions.
#[derive(Clone, Default)]
pub(crate) struct Enclosing {
    pub transaction: Option<Arc<Transaction>>,
    pub pool: Arc<SessionPool>,
}
