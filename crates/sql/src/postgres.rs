//! PostgreSQL sessions through tokio-postgres: placeholders bound as text (the server converts
//! them to the parameter's type), the first column read back typed, and a cancel request sent to
//! the server when the task is canceled or times out.

use std::error::Error as _;

use serde_json::Value;
use switchyard_package::engine::{DbFuture, Session};
use switchyard_package::model::{DatabaseKind, Isolation};
use tokio_postgres::types::{Format, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Row};
use tokio_util::sync::CancellationToken;

/// A session on one PostgreSQL database.
pub(crate) struct PostgresSession {
    client: Client,
}

impl PostgresSession {
    /// Connects to `url` (`postgres://user@host:port/db`, TLS off).
    pub async fn open(url: &str) -> Result<Self, String> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(|e| message(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(Self { client })
    }

    async fn batch(&mut self, sql: String) -> Result<(), String> {
        self.client.batch_execute(&sql).await.map_err(|e| message(&e))
    }
}

impl Session for PostgresSession {
    fn kind(&self) -> DatabaseKind {
        DatabaseKind::Postgres
    }

    fn execute<'a>(
        &'a mut self,
        statement: &'a str,
        binds: &'a [Value],
        want_result: bool,
        cancel: &'a CancellationToken,
    ) -> DbFuture<'a, Option<Value>> {
        Box::pin(async move {
            let client = &self.client;
            let work = async {
                if binds.is_empty() && !want_result {
                    return client.batch_execute(statement).await.map(|()| None);
                }
                let params: Vec<TextParam> = binds.iter().map(TextParam::from_json).collect();
                let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                let rows = client.query(statement, &refs).await?;
                Ok(rows.first().map(first_column))
            };
            tokio::pin!(work);
            let done = tokio::select! {
                done = &mut work => done,
                _ = cancel.cancelled() => {
                    // Canceled on the server: the statement ends there with "canceling statement
                    // due to user request", which `work` then returns.
                    if let Err(e) = client.cancel_token().cancel_query(NoTls).await {
                        tracing::warn!(error = %e, "cannot send a cancel request to PostgreSQL");
                    }
                    work.await
                }
            };
            match done {
                Ok(Some(Ok(value))) => Ok(Some(value)),
                Ok(Some(Err(e))) => Err(e),
                Ok(None) => Ok(None),
                Err(e) => Err(message(&e)),
            }
        })
    }

    fn begin(&mut self, isolation: Isolation) -> DbFuture<'_, ()> {
        Box::pin(self.batch(format!("BEGIN ISOLATION LEVEL {}", isolation.sql())))
    }

    fn commit(&mut self) -> DbFuture<'_, ()> {
        Box::pin(self.batch("COMMIT".into()))
    }

    fn rollback(&mut self) -> DbFuture<'_, ()> {
        Box::pin(self.batch("ROLLBACK".into()))
    }

    fn prepare(&mut self, gid: &str) -> DbFuture<'_, ()> {
        Box::pin(self.batch(format!("PREPARE TRANSACTION '{}'", quote(gid))))
    }

    fn finish_prepared(&mut self, gid: &str, commit: bool) -> DbFuture<'_, ()> {
        let verb = if commit { "COMMIT" } else { "ROLLBACK" };
        Box::pin(self.batch(format!("{verb} PREPARED '{}'", quote(gid))))
    }
}

/// True when `error` says the prepared transaction does not exist (already resolved).
pub(crate) fn is_unknown_prepared(error: &str) -> bool {
    error.contains("SQLSTATE 42704")
}

fn quote(text: &str) -> String {
    text.replace('\'', "''")
}

/// The database's own message (severity, text, SQLSTATE, detail and hint), or the client's.
pub(crate) fn message(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text = format!("{text}; detail: {detail}");
            }
            if let Some(hint) = db.hint() {
                text = format!("{text}; hint: {hint}");
            }
            text
        }
        None => match error.source() {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// The first column of a row as JSON, by its type.
fn first_column(row: &Row) -> Result<Value, String> {
    let Some(column) = row.columns().first() else { return Ok(Value::Null) };
    let ty = column.type_().clone();
    let read = |e: tokio_postgres::Error| format!("cannot read column \"{}\" ({ty}): {e}", column.name());
    Ok(match ty {
        Type::BOOL => row.try_get::<_, Option<bool>>(0).map_err(read)?.map(Value::Bool).unwrap_or(Value::Null),
        Type::INT2 => row.try_get::<_, Option<i16>>(0).map_err(read)?.map(Value::from).unwrap_or(Value::Null),
        Type::INT4 => row.try_get::<_, Option<i32>>(0).map_err(read)?.map(Value::from).unwrap_or(Value::Null),
        Type::INT8 => row.try_get::<_, Option<i64>>(0).map_err(read)?.map(Value::from).unwrap_or(Value::Null),
        Type::OID => row.try_get::<_, Option<u32>>(0).map_err(read)?.map(Value::from).unwrap_or(Value::Null),
        Type::FLOAT4 => row
            .try_get::<_, Option<f32>>(0)
            .map_err(read)?
            .and_then(|f| serde_json::Number::from_f64(f64::from(f)))
            .map_or(Value::Null, Value::Number),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(0)
            .map_err(read)?
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            row.try_get::<_, Option<String>>(0).map_err(read)?.map(Value::String).unwrap_or(Value::Null)
        }
        other => {
            return Err(format!(
                "column \"{}\" has type {other}, which a result cannot hold: cast it in the statement (::text, ::bigint, ::float8 or ::boolean)",
                column.name()
            ));
        }
    })
}

/// A bound value sent as text: the server parses it as the placeholder's type.
#[derive(Debug)]
struct TextParam(Option<String>);

impl TextParam {
    fn from_json(value: &Value) -> Self {
        TextParam(match value {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut tokio_postgres::types::private::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match &self.0 {
            None => Ok(IsNull::Yes),
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}
