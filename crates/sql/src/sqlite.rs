//! SQLite sessions: one rusqlite connection, used on a blocking thread per statement and
//! interrupted (`sqlite3_interrupt`) when the task is canceled or times out.

use std::time::Duration;

use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, InterruptHandle};
use serde_json::Value;
use switchyard_package::engine::{DbFuture, Session};
use switchyard_package::model::{DatabaseKind, Isolation};
use tokio_util::sync::CancellationToken;

/// How long a statement waits for another connection's lock on the same file before it fails
/// with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A session on one SQLite file.
pub(crate) struct SqliteSession {
    /// None only while a statement runs on a blocking thread.
    connection: Option<Connection>,
    interrupt: std::sync::Arc<InterruptHandle>,
}

impl SqliteSession {
    /// Opens (creating it if missing) the database at `path`.
    pub async fn open(path: String) -> Result<Self, String> {
        let opened = tokio::task::spawn_blocking(move || {
            let connection = Connection::open(&path).map_err(|e| format!("cannot open SQLite database {path}: {e}"))?;
            connection.busy_timeout(BUSY_TIMEOUT).map_err(|e| e.to_string())?;
            Ok::<_, String>(connection)
        })
        .await
        .map_err(|e| e.to_string())??;
        let interrupt = std::sync::Arc::new(opened.get_interrupt_handle());
        Ok(Self { connection: Some(opened), interrupt })
    }

    async fn run<T: Send + 'static>(
        &mut self,
        cancel: &CancellationToken,
        work: impl FnOnce(&Connection) -> Result<T, String> + Send + 'static,
    ) -> Result<T, String> {
        let connection = self.connection.take().ok_or("the session was lost by an earlier statement")?;
        let mut handle = tokio::task::spawn_blocking(move || {
            let result = work(&connection);
            (connection, result)
        });
        let joined = tokio::select! {
            joined = &mut handle => joined,
            _ = cancel.cancelled() => {
                self.interrupt.interrupt();
                handle.await
            }
        };
        let (connection, result) = joined.map_err(|e| format!("the statement's thread failed: {e}"))?;
        self.connection = Some(connection);
        result
    }

    async fn batch(&mut self, sql: String) -> Result<(), String> {
        self.run(&CancellationToken::new(), move |c| c.execute_batch(&sql).map_err(|e| e.to_string())).await
    }
}

impl Session for SqliteSession {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Sqlite
    }

    fn execute<'a>(
        &'a mut self,
        statement: &'a str,
        binds: &'a [Value],
        want_result: bool,
        cancel: &'a CancellationToken,
    ) -> DbFuture<'a, Option<Value>> {
        let statement = statement.to_string();
        let binds: Vec<SqlValue> = binds.iter().map(to_sqlite).collect();
        Box::pin(self.run(cancel, move |c| {
            if binds.is_empty() && !want_result {
                return c.execute_batch(&statement).map(|()| None).map_err(|e| e.to_string());
            }
            let mut prepared = c.prepare(&statement).map_err(|e| e.to_string())?;
            let mut rows = prepared.query(rusqlite::params_from_iter(binds)).map_err(|e| e.to_string())?;
            let mut first = None;
            // Every row is stepped through: an INSERT ... RETURNING writes as it steps.
            while let Some(row) = rows.next().map_err(|e| e.to_string())? {
                if first.is_none() && row.as_ref().column_count() > 0 {
                    first = Some(from_sqlite(row.get_ref(0).map_err(|e| e.to_string())?));
                }
            }
            Ok(first)
        }))
    }

    fn begin(&mut self, _isolation: Isolation) -> DbFuture<'_, ()> {
        // SQLite transactions are serializable whatever the level; IMMEDIATE takes the write
        // lock at the start, so two transactions cannot deadlock upgrading their locks.
        Box::pin(self.batch("BEGIN IMMEDIATE".into()))
    }

    fn commit(&mut self) -> DbFuture<'_, ()> {
        Box::pin(self.batch("COMMIT".into()))
    }

    fn rollback(&mut self) -> DbFuture<'_, ()> {
        Box::pin(self.batch("ROLLBACK".into()))
    }

    fn prepare(&mut self, _gid: &str) -> DbFuture<'_, ()> {
        Box::pin(async { Err("SQLite has no two-phase commit".to_string()) })
    }

    fn finish_prepared(&mut self, _gid: &str, _commit: bool) -> DbFuture<'_, ()> {
        Box::pin(async { Err("SQLite has no two-phase commit".to_string()) })
    }
}

fn to_sqlite(value: &Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None => SqlValue::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Text(other.to_string()),
    }
}

fn from_sqlite(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(b.iter().map(|byte| format!("{byte:02x}")).collect()),
    }
}
