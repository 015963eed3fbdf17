//! Store tests on real SQLite files in temporary directories.

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use switchyard_package::engine::{ChildStatus, Event, EventKind, ExecutionStatus, TaskRecord};
use switchyard_package::expr::Map;
use switchyard_package::model::TaskResult;

use super::*;

pub(super) fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_795_000_000_000 + ms).single().expect("a valid time")
}

fn open(dir: &Path) -> Store {
    Store::open(dir).expect("open the store")
}

pub(super) fn execution(id: &str, request_id: Option<&str>, started_ms: i64) -> ExecutionRecord {
    let mut parameters = Map::new();
    parameters.insert("run_date".into(), json!("2026-11-21"));
    parameters.insert("batch".into(), json!({"size": 3, "tags": ["a", "b"]}));
    ExecutionRecord {
        execution_id: id.into(),
        request_id: request_id.map(Into::into),
        package: "nightly-load".into(),
        package_file: "nightly.toml".into(),
        status: ExecutionStatus::Running,
        caller: "alice".into(),
        parameters,
        started_at: at(started_ms),
        ended_at: None,
        duration_ms: None,
    }
}

pub(super) fn event(execution_id: &str, sequence: u64, kind: EventKind) -> StoredEvent {
    let event = Event { seq: sequence, at: at(sequence as i64), path: format!("Task {sequence}"), kind };
    StoredEvent { execution_id: execution_id.into(), sequence, event }
}

pub(super) fn task_finished(sequence: u64) -> EventKind {
    EventKind::TaskFinished {
        kind: "agent_job",
        result: TaskResult::Failure,
        duration_ms: sequence * 10,
        message: format!("attempt {sequence} failed"),
        exit_code: None,
        output: String::new(),
        agent: Some("server-a".into()),
        errors: 1,
    }
}

pub(super) fn task(index: usize) -> TaskRecord {
    let (process, ran) = (index.is_multiple_of(2), !index.is_multiple_of(3));
    TaskRecord {
        path: format!("Files[{index}]/Copy"),
        kind: if process { "process" } else { "agent_job" },
        result: if ran { TaskResult::Success } else { TaskResult::NotRun },
        started_at: ran.then(|| at(index as i64)),
        duration_ms: ran.then_some(index as u64),
        agent: (!process).then(|| "server-a".to_owned()),
        message: format!("task {index}"),
        exit_code: process.then_some(index as i32),
    }
}

pub(super) fn child(execution_id: &str, agent: &str, run_id: &str, started_ms: i64) -> ChildRunRecord {
    ChildRunRecord {
        execution_id: execution_id.into(),
        task_path: "Stage/Load orders".into(),
        attempt: 0,
        agent: agent.into(),
        job: "load_orders".into(),
        run_id: run_id.into(),
        idempotency_key: format!("{execution_id}/Stage/Load orders/0"),
        status: ChildStatus::Running,
        started_at: at(started_ms),
        duration_ms: None,
        message: "accepted".into(),
        package: Some("load_orders.toml".into()),
    }
}

fn event_json(events: &[StoredEvent]) -> Vec<(String, u64, serde_json::Value)> {
    events
        .iter()
        .map(|stored| {
            let event = serde_json::to_value(&stored.event).expect("an event serializes");
            (stored.execution_id.clone(), stored.sequence, event)
        })
        .collect()
}

fn task_json(tasks: &[TaskRecord]) -> serde_json::Value {
    serde_json::to_value(tasks).expect("tasks serialize")
}

#[tokio::test]
async fn every_record_reads_back_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut record = execution("exec-1", Some("request-1"), 0);
    let events = vec![
        event("exec-1", 1, EventKind::PackageStarted { package: "nightly-load".into() }),
        event("exec-1", 2, EventKind::TaskStarted { kind: "agent_job" }),
        event("exec-1", 3, task_finished(3)),
        event("exec-1", 4, EventKind::TaskNotRun { reason: "constraint not met".into() }),
        event(
            "exec-1",
            5,
            EventKind::PackageFinished { status: ExecutionStatus::EndedUnexpectedly, duration_ms: 1234 },
        ),
    ];
    let tasks: Vec<TaskRecord> = (0..6).map(task).collect();
    let child_run = child("exec-1", "server-a", "run-1", 5);
    store
        .write(vec![
            Write::InsertExecution(record.clone()),
            Write::AppendEvents(events.clone()),
            Write::PutTasks { execution_id: "exec-1".into(), tasks: tasks.clone() },
            Write::UpsertChild(child_run.clone()),
            Write::SetMeta { key: "owner".into(), value: "coordinator-1".into() },
        ])
        .await
        .expect("write");

    assert_eq!(store.execution("exec-1").await.expect("read"), Some(record.clone()));
    assert_eq!(store.execution("exec-2").await.expect("read"), None);
    assert_eq!(event_json(&store.events_after("exec-1", 0, 0).await.expect("read")), event_json(&events));
    assert_eq!(task_json(&store.tasks("exec-1").await.expect("read")), task_json(&tasks));
    assert_eq!(store.children("exec-1").await.expect("read"), vec![child_run.clone()]);
    assert_eq!(store.child("server-a", "run-1").await.expect("read"), Some(child_run.clone()));
    assert_eq!(store.child("server-b", "run-1").await.expect("read"), None, "a run id is per agent");
    assert_eq!(store.meta("owner").await.expect("read").as_deref(), Some("coordinator-1"));
    assert_eq!(store.meta("schema_version").await.expect("read").as_deref(), Some("2"));

    record.status = ExecutionStatus::Succeeded;
    record.ended_at = Some(at(1234));
    record.duration_ms = Some(1234);
    store.write(vec![Write::UpdateExecution(record.clone())]).await.expect("update");
    assert_eq!(store.execution("exec-1").await.expect("read"), Some(record.clone()));

    let report = store.report("exec-1").await.expect("read").expect("a report");
    assert_eq!(report.execution, record);
    assert_eq!(task_json(&report.tasks), task_json(&tasks));
    assert_eq!(report.children.len(), 1);
    assert_eq!(report.children[0].run_id.as_deref(), Some("run-1"));
    assert!(store.report("exec-2").await.expect("read").is_none());
}

#[tokio::test]
async fn a_request_id_belongs_to_one_execution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.write(vec![Write::InsertExecution(execution("exec-1", Some("request-1"), 0))]).await.expect("first");
    store.write(vec![Write::InsertExecution(execution("exec-2", None, 1))]).await.expect("no request id");
    store.write(vec![Write::InsertExecution(execution("exec-3", None, 2))]).await.expect("many without one");

    let error = store
        .write(vec![
            Write::SetMeta { key: "rolled_back".into(), value: "yes".into() },
            Write::InsertExecution(execution("exec-4", Some("request-1"), 3)),
        ])
        .await
        .expect_err("a repeated request id is refused");
    assert!(error.is_constraint_violation(), "{error}");
    let error = store
        .write(vec![Write::InsertExecution(execution("exec-1", Some("request-9"), 3))])
        .await
        .expect_err("a repeated execution id is refused");
    assert!(error.is_constraint_violation(), "{error}");

    let found = store.execution_by_request("request-1").await.expect("read").expect("found");
    assert_eq!(found.execution_id, "exec-1");
    assert_eq!(store.execution("exec-4").await.expect("read"), None);
    assert_eq!(store.meta("rolled_back").await.expect("read"), None, "the failed request wrote nothing");
    assert_eq!(store.execution_by_request("request-9").await.expect("read"), None);
}

#[tokio::test]
async fn executions_list_newest_first_and_by_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut writes = Vec::new();
    for (i, started_ms) in [(1, 300), (2, 100), (3, 200), (4, 400)] {
        let mut record = execution(&format!("exec-{i}"), None, started_ms);
        if i % 2 == 0 {
            record.status = ExecutionStatus::Succeeded;
        }
        writes.push(Write::InsertExecution(record));
    }
    store.write(writes).await.expect("write");

    let ids = |records: Vec<ExecutionRecord>| records.into_iter().map(|r| r.execution_id).collect::<Vec<_>>();
    assert_eq!(ids(store.executions(0).await.expect("read")), ["exec-4", "exec-1", "exec-3", "exec-2"]);
    assert_eq!(ids(store.executions(2).await.expect("read")), ["exec-4", "exec-1"]);
    let unfinished =
        store.executions_with_status(&[ExecutionStatus::Running, ExecutionStatus::Stopping]).await.expect("read");
    assert_eq!(ids(unfinished), ["exec-3", "exec-1"], "oldest first");
    assert!(store.executions_with_status(&[]).await.expect("read").is_empty());
}

#[tokio::test]
async fn events_page_in_sequence_order_per_execution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    // Written out of order and interleaved with another execution's.
    let mut events: Vec<StoredEvent> =
        (1..=25).rev().map(|sequence| event("exec-1", sequence, task_finished(sequence))).collect();
    events.extend((1..=5).map(|sequence| event("exec-2", sequence, task_finished(sequence))));
    store.write(vec![Write::AppendEvents(events)]).await.expect("write");

    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = store.events_after("exec-1", after, 10).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.sequence;
        pages.push(page.iter().map(|stored| stored.sequence).collect::<Vec<_>>());
    }
    assert_eq!(pages, [(1..=10).collect::<Vec<_>>(), (11..=20).collect(), (21..=25).collect()]);
    assert_eq!(store.events_after("exec-2", 3, 10).await.expect("read").len(), 2);
    let fifth = &store.events_after("exec-1", 4, 1).await.expect("read")[0];
    assert!(
        matches!(&fifth.event.kind, EventKind::TaskFinished { kind: "agent_job", message, .. } if message == "attempt 5 failed")
    );

    // A retried write replaces rather than failing.
    let again = event("exec-1", 5, EventKind::TaskNotRun { reason: "retried".into() });
    store.write(vec![Write::AppendEvents(vec![again])]).await.expect("rewrite");
    let fifth = &store.events_after("exec-1", 4, 1).await.expect("read")[0];
    assert!(matches!(&fifth.event.kind, EventKind::TaskNotRun { reason } if reason == "retried"));
}

#[tokio::test]
async fn ten_thousand_tasks_keep_their_order_and_a_put_replaces_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    // Paths that sort differently from their order, so order must come from the position.
    let mut tasks: Vec<TaskRecord> = (0..10_000).map(task).collect();
    tasks.reverse();
    store.write(vec![Write::PutTasks { execution_id: "exec-1".into(), tasks: tasks.clone() }]).await.expect("write");
    store.write(vec![Write::PutTasks { execution_id: "exec-2".into(), tasks: vec![task(1)] }]).await.expect("write");
    let stored = store.tasks("exec-1").await.expect("read");
    assert_eq!(stored.len(), 10_000);
    assert_eq!(task_json(&stored), task_json(&tasks));

    let fewer: Vec<TaskRecord> = (0..3).map(task).collect();
    store.write(vec![Write::PutTasks { execution_id: "exec-1".into(), tasks: fewer.clone() }]).await.expect("write");
    assert_eq!(task_json(&store.tasks("exec-1").await.expect("read")), task_json(&fewer));
    assert_eq!(store.tasks("exec-2").await.expect("read").len(), 1, "another execution's rows stay");
}

#[tokio::test]
async fn a_child_outcome_reported_later_updates_its_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let later = child("exec-1", "server-b", "run-2", 50);
    let mut superseded = child("exec-1", "server-a", "run-1", 10);
    superseded.status = ChildStatus::Superseded;
    store
        .write(vec![
            Write::UpsertChild(later.clone()),
            Write::UpsertChild(superseded.clone()),
            Write::UpsertChild(child("exec-2", "server-a", "run-3", 0)),
        ])
        .await
        .expect("write");
    let update = |agent: &str, run_id: &str, status| Write::UpdateChildStatus {
        agent: agent.into(),
        run_id: run_id.into(),
        status,
        duration_ms: Some(812),
        message: "exited with code 1".into(),
    };
    store
        .write(vec![
            update("server-b", "run-2", ChildStatus::Failed),
            update("server-a", "run-1", ChildStatus::Succeeded),
            update("server-c", "run-9", ChildStatus::Failed),
        ])
        .await
        .expect("update, an unknown child is no error");

    let children = store.children("exec-1").await.expect("read");
    assert_eq!(children.iter().map(|c| c.run_id.as_str()).collect::<Vec<_>>(), ["run-1", "run-2"], "by start");
    let failed = store.child("server-b", "run-2").await.expect("read").expect("found");
    assert_eq!(
        failed,
        ChildRunRecord {
            status: ChildStatus::Failed,
            duration_ms: Some(812),
            message: "exited with code 1".into(),
            ..later
        }
    );
    let kept = store.child("server-a", "run-1").await.expect("read").expect("found");
    assert_eq!(kept.status, ChildStatus::Superseded, "a superseded attempt's result never changes its status");
    assert_eq!(kept.duration_ms, Some(812));
    assert_eq!(store.child("server-c", "run-9").await.expect("read"), None);
}

#[tokio::test]
async fn agent_cursors_rise_within_an_incarnation_and_reset_with_a_new_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let cursor = |agent: &str, incarnation: &str, sequence| Write::SetAgentCursor {
        agent: agent.into(),
        incarnation: incarnation.into(),
        sequence,
    };
    store.write(vec![cursor("server-b", "inc-1", 40), cursor("server-a", "inc-7", 3)]).await.expect("write");
    store.write(vec![cursor("server-b", "inc-1", 39)]).await.expect("an older cursor is no error");
    let owned = |list: &[(&str, &str, u64)]| -> Vec<(String, String, u64)> {
        list.iter().map(|(a, i, s)| ((*a).to_owned(), (*i).to_owned(), *s)).collect()
    };
    assert_eq!(
        store.agent_cursors().await.expect("read"),
        owned(&[("server-a", "inc-7", 3), ("server-b", "inc-1", 40)])
    );
    store.write(vec![cursor("server-b", "inc-2", 2)]).await.expect("a new incarnation");
    assert_eq!(
        store.agent_cursors().await.expect("read"),
        owned(&[("server-a", "inc-7", 3), ("server-b", "inc-2", 2)])
    );
}

#[tokio::test]
async fn acknowledged_writes_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let record = execution("exec-1", Some("request-1"), 0);
    store
        .write(vec![
            Write::InsertExecution(record.clone()),
            Write::AppendEvents(vec![event("exec-1", 1, task_finished(1))]),
            Write::PutTasks { execution_id: "exec-1".into(), tasks: vec![task(1), task(2)] },
            Write::UpsertChild(child("exec-1", "server-a", "run-1", 0)),
            Write::SetAgentCursor { agent: "server-a".into(), incarnation: "inc-1".into(), sequence: 12 },
        ])
        .await
        .expect("write");
    let created_at = store.meta("created_at").await.expect("read");
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.execution_by_request("request-1").await.expect("read"), Some(record));
    assert_eq!(store.events_after("exec-1", 0, 10).await.expect("read").len(), 1);
    assert_eq!(store.tasks("exec-1").await.expect("read").len(), 2);
    assert_eq!(store.children("exec-1").await.expect("read").len(), 1);
    assert_eq!(store.agent_cursors().await.expect("read"), [("server-a".to_owned(), "inc-1".to_owned(), 12)]);
    assert_eq!(store.meta("created_at").await.expect("read"), created_at);
    assert!(dir.path().join(DATABASE_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_grouped_into_fewer_commits() {
    const WRITES: usize = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let start = Arc::new(tokio::sync::Barrier::new(WRITES));
    let writers: Vec<_> = (0..WRITES)
        .map(|i| {
            let store = store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let events = vec![event("exec-1", i as u64 + 1, task_finished(i as u64))];
                store.write(vec![Write::AppendEvents(events)]).await
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("the task ends").expect("the write commits");
    }
    let stats = store.stats();
    assert_eq!(stats.requests, WRITES as u64);
    assert!(stats.commits < WRITES as u64, "{} commits for {WRITES} writes", stats.commits);
    let stored = store.events_after("exec-1", 0, 0).await.expect("read");
    assert_eq!(
        stored.iter().map(|stored| stored.sequence).collect::<Vec<_>>(),
        (1..=WRITES as u64).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn reserved_meta_keys_are_refused_and_writes_after_close_report_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let error = store
        .write(vec![Write::SetMeta { key: "schema_version".into(), value: "99".into() }])
        .await
        .expect_err("the schema version is the store's");
    assert!(matches!(error, StoreError::ReservedMetaKey { .. }), "{error}");

    let clone = store.clone();
    store.write(vec![Write::InsertExecution(execution("exec-1", None, 0))]).await.expect("write");
    store.close().await;
    let error = clone.write(vec![Write::InsertExecution(execution("exec-2", None, 0))]).await.expect_err("closed");
    assert!(matches!(error, StoreError::Closed { .. }), "{error}");
    assert_eq!(clone.executions(0).await.expect("reads still work").len(), 1);
}

#[tokio::test]
async fn a_database_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    drop(store);
    let connection = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).expect("open");
    connection.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'", []).expect("update");
    drop(connection);
    let error = Store::open(dir.path()).expect_err("a newer schema");
    assert!(matches!(error, StoreError::Schema { known: 2, .. }), "{error}");
    assert!(error.to_string().contains("schema version 3"), "{error}");
}

/// Issue 14 item 7: `Execution.tasks_total` and `tasks_failed` were always 0, because nothing
/// counted the stored task rows.
#[tokio::test]
async fn task_counts_count_every_task_row_and_the_failed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut tasks: Vec<TaskRecord> = (0..7).map(task).collect();
    tasks[1].result = TaskResult::Failure;
    tasks[4].result = TaskResult::Failure;
    store
        .write(vec![
            Write::InsertExecution(execution("exec-1", None, 0)),
            Write::InsertExecution(execution("exec-2", None, 10)),
            Write::PutTasks { execution_id: "exec-1".into(), tasks },
        ])
        .await
        .expect("write");
    let ids = ["exec-1".to_owned(), "exec-2".to_owned(), "unknown".to_owned()];
    let counts = store.task_counts(&ids).await.expect("read");
    assert_eq!(counts.get("exec-1"), Some(&TaskCounts { total: 7, failed: 2 }));
    assert_eq!(counts.get("exec-2"), None, "an execution without task rows has no counts");
    assert_eq!(counts.len(), 1);
    assert!(store.task_counts(&[]).await.expect("read").is_empty());
}
