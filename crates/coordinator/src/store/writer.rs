//! The coordinator's part of the group-commit writer (the loop itself is switchyard-sqlite's):
//! how each `Write` is applied.

use std::path::PathBuf;

use rusqlite::Connection;
use switchyard_sqlite::columns::set_meta;
use switchyard_sqlite::{Apply, StoreError};

use super::Write;
use super::rows;
use super::schema::RESERVED_META_KEYS;

/// Applies the coordinator's writes for the writer thread.
pub(super) struct Applier {
    path: PathBuf,
}

impl Applier {
    /// Errors name the database at `path`.
    pub fn new(path: PathBuf) -> Applier {
        Applier { path }
    }
}

impl Apply for Applier {
    type Request = Vec<Write>;
    type Receipt = ();

    fn apply(&mut self, connection: &Connection, batch: &Vec<Write>) -> Result<(), StoreError> {
        let path = &self.path;
        let sqlite = |error| StoreError::sqlite(path, error);
        for write in batch {
            match write {
                Write::InsertExecution(execution) => {
                    rows::put_execution(connection, rows::INSERT_EXECUTION, execution).map_err(sqlite)?
                }
                Write::UpdateExecution(execution) => {
                    rows::put_execution(connection, rows::UPSERT_EXECUTION, execution).map_err(sqlite)?
                }
                Write::AppendEvents(events) => {
                    for event in events {
                        rows::put_event(connection, event).map_err(sqlite)?;
                    }
                }
                Write::PutTasks { execution_id, tasks } => {
                    rows::replace_tasks(connection, execution_id, tasks).map_err(sqlite)?
                }
                Write::UpsertChild(child) => rows::upsert_child(connection, child).map_err(sqlite)?,
                Write::UpdateChildStatus { agent, run_id, status, duration_ms, message } => {
                    rows::update_child_status(connection, agent, run_id, *status, *duration_ms, message)
                        .map_err(sqlite)?
                }
                Write::AddPendingStop { agent, run_id, reason } => {
                    rows::add_pending_stop(connection, agent, run_id, reason.as_str()).map_err(sqlite)?
                }
                Write::RemovePendingStop { agent, run_id } => {
                    rows::remove_pending_stop(connection, agent, run_id).map_err(sqlite)?
                }
                Write::AddAbandonedStart { agent, idempotency_key } => {
                    rows::add_abandoned_start(connection, agent, idempotency_key).map_err(sqlite)?
                }
                Write::RemoveAbandonedStarts { agent, idempotency_key } => {
                    rows::remove_abandoned_starts(connection, agent, idempotency_key.as_deref()).map_err(sqlite)?
                }
                Write::SetAgentCursor { agent, incarnation, sequence } => {
                    rows::set_agent_cursor(connection, agent, incarnation, *sequence).map_err(sqlite)?
                }
                Write::DeleteExecutions(ids) => {
                    for id in ids {
                        super::retention::delete_execution(connection, id).map_err(sqlite)?;
                    }
                }
                Write::SetMeta { key, value } => {
                    if RESERVED_META_KEYS.contains(&key.as_str()) {
                        return Err(StoreError::ReservedMetaKey { path: path.clone(), key: key.clone() });
                    }
                    set_meta(connection, key, value).map_err(sqlite)?
                }
            }
        }
        Ok(())
    }

    /// Rows a request writes, roughly: a report of 10,000 tasks is one write but many rows.
    fn records(batch: &Vec<Write>) -> usize {
        batch
            .iter()
            .map(|write| match write {
                Write::AppendEvents(events) => events.len(),
                Write::PutTasks { tasks, .. } => tasks.len(),
                Write::DeleteExecutions(ids) => ids.len(),
                _ => 1,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc::sync_channel;

    use switchyard_package::engine::ExecutionStatus;
    use switchyard_sqlite::{Continue, Message, Wal, Writer};
    use tokio::sync::oneshot;

    use super::super::{ExecutionRecord, StoreOptions, schema};
    use super::*;

    fn execution(id: &str, request_id: &str) -> ExecutionRecord {
        ExecutionRecord {
            execution_id: id.into(),
            request_id: Some(request_id.into()),
            package: "nightly-load".into(),
            package_file: "nightly.toml".into(),
            status: ExecutionStatus::Running,
            caller: "alice".into(),
            parameters: Default::default(),
            started_at: chrono::Utc::now(),
            ended_at: None,
            duration_ms: None,
        }
    }

    #[test]
    fn a_failing_request_leaves_the_rest_of_its_group_commit_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("coordinator.db");
        let connection = schema::open(&path, &StoreOptions::default()).expect("open");
        let wal = Arc::new(Wal::new(path.clone()));
        let (signal, _signals) = sync_channel(1);
        let mut writer = Writer::new(connection, Applier::new(path.clone()), wal.clone(), signal);
        let request = |request| {
            let (reply, done) = oneshot::channel();
            (Message::Write { request, reply }, done)
        };

        let (first, mut first_done) = request(vec![Write::InsertExecution(execution("exec-1", "request-1"))]);
        assert_eq!(writer.commit(vec![first]), Continue::Run);
        first_done.try_recv().expect("replied").expect("first execution stored");

        // Both requests share one transaction: the repeated request id fails its own request only.
        let (duplicate, mut duplicate_done) = request(vec![
            Write::SetMeta { key: "duplicate".into(), value: "written".into() },
            Write::InsertExecution(execution("exec-2", "request-1")),
        ]);
        let (good, mut good_done) = request(vec![Write::InsertExecution(execution("exec-3", "request-3"))]);
        assert_eq!(writer.commit(vec![duplicate, good]), Continue::Run);
        let error = duplicate_done.try_recv().expect("replied").expect_err("repeated request id refused");
        assert!(error.is_constraint_violation(), "{error}");
        good_done.try_recv().expect("replied").expect("good request committed");
        assert_eq!(wal.stats().commits, 2);
        assert_eq!(wal.stats().requests, 3);

        let reader = switchyard_sqlite::open_reader(&path).expect("reader");
        let executions: Vec<String> = reader
            .prepare("SELECT execution_id FROM executions ORDER BY execution_id")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .expect("read executions");
        assert_eq!(executions, ["exec-1", "exec-3"]);
        let meta: i64 =
            reader.query_row("SELECT count(*) FROM meta WHERE key = 'duplicate'", [], |row| row.get(0)).expect("count");
        assert_eq!(meta, 0, "the failed request's other writes were undone");
    }
}
