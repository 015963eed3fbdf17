//! Retention (DESIGN.md §12): which executions fall out of `execution_retention` or
//! `executions_max`, and deleting one with everything stored about it.
//!
//! Only finished executions go: one still running, stopping or waiting keeps its rows, and so
//! does one with a fire-and-forget child whose outcome has not arrived yet (it would land on a
//! missing execution). Stops owed to agents (`pending_stops`) stay until delivered: they fence
//! runs on agents, whatever happened to the execution that made them.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use switchyard_sqlite::columns::timestamp;

/// The statuses after which an execution never changes (DESIGN.md §3).
const FINISHED: &str = "('succeeded', 'failed', 'canceled', 'ended_unexpectedly', 'completed')";

/// The executions to prune, oldest first: finished ones started before `cutoff` (when given),
/// and finished ones beyond the newest `keep` executions of any status (when given).
pub(super) fn due(
    connection: &Connection,
    cutoff: Option<DateTime<Utc>>,
    keep: Option<usize>,
) -> rusqlite::Result<Vec<String>> {
    let settled = format!(
        "e.status IN {FINISHED} AND NOT EXISTS \
         (SELECT 1 FROM children c WHERE c.execution_id = e.execution_id AND c.status = 'running')"
    );
    let mut due: Vec<(String, String)> = Vec::new();
    if let Some(cutoff) = cutoff {
        let sql =
            format!("SELECT e.execution_id, e.started_at FROM executions e WHERE e.started_at < ?1 AND {settled}");
        let mut statement = connection.prepare_cached(&sql)?;
        let rows = statement.query_map([timestamp(&cutoff)], |row| Ok((row.get(0)?, row.get(1)?)))?;
        for row in rows {
            due.push(row?);
        }
    }
    if let Some(keep) = keep {
        // Newest first past the first `keep`: LIMIT -1 is SQLite's "no limit".
        let sql = format!(
            "SELECT e.execution_id, e.started_at FROM \
             (SELECT execution_id FROM executions ORDER BY started_at DESC, execution_id DESC LIMIT -1 OFFSET ?1) old \
             JOIN executions e ON e.execution_id = old.execution_id WHERE {settled}"
        );
        let mut statement = connection.prepare_cached(&sql)?;
        let rows =
            statement.query_map([i64::try_from(keep).unwrap_or(i64::MAX)], |row| Ok((row.get(0)?, row.get(1)?)))?;
        for row in rows {
            due.push(row?);
        }
    }
    due.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    due.dedup_by(|a, b| a.0 == b.0);
    Ok(due.into_iter().map(|(id, _)| id).collect())
}

/// Deletes an execution with its events, task rows, child runs and winning attempts.
pub(super) fn delete_execution(connection: &Connection, execution_id: &str) -> rusqlite::Result<()> {
    for sql in [
        "DELETE FROM events WHERE execution_id = ?1",
        "DELETE FROM tasks WHERE execution_id = ?1",
        "DELETE FROM children WHERE execution_id = ?1",
        "DELETE FROM task_winners WHERE execution_id = ?1",
        "DELETE FROM executions WHERE execution_id = ?1",
    ] {
        connection.prepare_cached(sql)?.execute(params![execution_id])?;
    }
    Ok(())
}
