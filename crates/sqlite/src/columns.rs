//! Values to columns and back, as both stores write them: times as fixed-width RFC 3339 text,
//! unsigned integers checked into SQLite's signed ones, JSON text, and the `meta` table.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::{ToSqlOutput, Type};
use rusqlite::{Connection, OptionalExtension, Row, ToSql};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Sets a value in the `meta (key, value)` table.
pub fn set_meta(connection: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    let sql = "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";
    connection.prepare_cached(sql)?.execute([key, value])?;
    Ok(())
}

/// A value from the `meta (key, value)` table.
pub fn meta(connection: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    connection.prepare_cached("SELECT value FROM meta WHERE key = ?1")?.query_row([key], |row| row.get(0)).optional()
}

/// RFC 3339 UTC with nine fractional digits: fixed width, so text order is time order and a
/// time reads back exactly as written.
pub fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A `u64` bound as SQLite's 64-bit signed integer; values past `i64::MAX` (never reached by
/// counters, sequences, epochs or millisecond durations) are refused rather than wrapped.
#[derive(Debug, Clone, Copy)]
pub struct Unsigned(pub u64);

impl ToSql for Unsigned {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        i64::try_from(self.0)
            .map(ToSqlOutput::from)
            .map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
    }
}

/// Reads a column written from [`Unsigned`].
pub fn unsigned(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    to_unsigned(index, row.get(index)?)
}

/// Reads a nullable column written from [`Unsigned`].
pub fn optional_unsigned(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<u64>> {
    row.get::<_, Option<i64>>(index)?.map(|value| to_unsigned(index, value)).transpose()
}

/// Reads a column written from [`timestamp`].
pub fn time(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    let text: String = row.get(index)?;
    parse_time(index, &text)
}

/// Reads a nullable column written from [`timestamp`].
pub fn optional_time(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(index)?;
    text.map(|text| parse_time(index, &text)).transpose()
}

/// A value as JSON text, for a column read whole and never queried into.
pub fn to_json(value: &impl Serialize) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|error| rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
}

/// Reads a column written from [`to_json`].
pub fn from_json<T: DeserializeOwned>(row: &Row<'_>, index: usize) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(error)))
}

/// The error for a column whose value this build does not know (an unknown status name, say).
pub fn bad_value(index: usize, column_type: Type, detail: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, column_type, detail.into())
}

/// A `LIMIT` for "at most `limit` rows, 0 for all": SQLite reads a negative limit as none.
pub fn sql_limit(limit: usize) -> i64 {
    if limit == 0 { -1 } else { i64::try_from(limit).unwrap_or(i64::MAX) }
}

fn to_unsigned(index: usize, value: i64) -> rusqlite::Result<u64> {
    u64::try_from(value)
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(index, Type::Integer, Box::new(error)))
}

fn parse_time(index: usize, text: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|error| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, Box::new(error)))
}
