//! How the engine reaches databases: the [`Databases`] and [`Session`] traits, implemented
//! outside this crate (`switchyard-sql`), so that the engine itself holds no database client and
//! no network code, as `agent_job` tasks reach agents only through [`super::AgentJobLauncher`].

use std::future::Future;
use std::pin::Pin;

use tokio_util::sync::CancellationToken;

use crate::model::{DatabaseKind, Isolation};

/// A database operation in flight; errors are the database's own message.
pub type DbFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send + 'a>>;

/// Opens sessions and commits transactions that span several databases.
pub trait Databases: Send + Sync {
    /// Opens a session on `url` (rendered; a SQLite path is absolute).
    fn open(&self, url: &str) -> DbFuture<'static, Box<dyn Session>>;

    /// Commits one transaction whose work is open on several sessions, all PostgreSQL: records
    /// the prepared ids durably, prepares each, then commits each prepared transaction. On
    /// failure before every session is prepared, everything is rolled back. `id` names the
    /// transaction; `sessions` pairs each session with the url it is open on.
    fn commit_two_phase(&self, id: &str, sessions: Vec<(String, Box<dyn Session>)>) -> DbFuture<'static, ()>;
}

/// One open database session.
pub trait Session: Send {
    /// The database it is open on.
    fn kind(&self) -> DatabaseKind;

    /// Runs `statement` with `binds` for its placeholders; returns the first column of the
    /// first row (None when there is no row). When `cancel` fires the statement is canceled on
    /// the server (PostgreSQL's cancel request, SQLite's interrupt), and this returns its error.
    /// Without binds a statement may hold several statements separated by `;`.
    fn execute<'a>(
        &'a mut self,
        statement: &'a str,
        binds: &'a [serde_json::Value],
        want_result: bool,
        cancel: &'a CancellationToken,
    ) -> DbFuture<'a, Option<serde_json::Value>>;

    /// Starts a transaction with `isolation`.
    fn begin(&mut self, isolation: Isolation) -> DbFuture<'_, ()>;

    /// Commits the open transaction.
    fn commit(&mut self) -> DbFuture<'_, ()>;

    /// Rolls the open transaction back.
    fn rollback(&mut self) -> DbFuture<'_, ()>;

    /// Prepares the open transaction for a two-phase commit under `gid` (PostgreSQL's PREPARE
    /// TRANSACTION); a database without two-phase commit refuses.
    fn prepare(&mut self, gid: &str) -> DbFuture<'_, ()>;

    /// Commits (or, with `commit` false, rolls back) the prepared transaction `gid`.
    fn finish_prepared(&mut self, gid: &str, commit: bool) -> DbFuture<'_, ()>;
}
