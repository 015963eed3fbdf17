//! Retention on a real SQLite file: which executions are due, and that pruning one removes
//! every row stored about it and nothing of the others.

use switchyard_package::engine::{ChildStatus, ExecutionStatus};

use super::tests::{at, child, event, execution, task, task_finished};
use super::*;

fn ended(id: &str, started_ms: i64, status: ExecutionStatus) -> ExecutionRecord {
    ExecutionRecord {
        status,
        ended_at: Some(at(started_ms + 10)),
        duration_ms: Some(10),
        ..execution(id, None, started_ms)
    }
}

async fn count(store: &Store, table: &str, execution_id: &str) -> i64 {
    let path = store.path().to_path_buf();
    let sql = format!("SELECT count(*) FROM {table} WHERE execution_id = ?1");
    let reader = switchyard_sqlite::open_reader(&path).expect("reader");
    reader.query_row(&sql, [execution_id], |row| row.get(0)).expect("count")
}

#[tokio::test]
async fn due_executions_are_finished_and_past_the_age_or_beyond_the_newest_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .write(vec![
            Write::InsertExecution(ended("old-ok", 0, ExecutionStatus::Succeeded)),
            Write::InsertExecution(execution("old-running", None, 1)),
            Write::InsertExecution(ended("old-failed", 2, ExecutionStatus::Failed)),
            Write::InsertExecution(ended("old-with-child", 3, ExecutionStatus::Succeeded)),
            Write::UpsertChild(ChildRunRecord {
                status: ChildStatus::Running,
                ..child("old-with-child", "server-a", "run-1", 3)
            }),
            Write::InsertExecution(ended("new-1", 100, ExecutionStatus::Canceled)),
            Write::InsertExecution(ended("new-2", 101, ExecutionStatus::Succeeded)),
        ])
        .await
        .expect("write");

    // By age: started before 50 and finished, without a child still running.
    let due = store.due_for_pruning(Some(at(50)), None).await.expect("due");
    assert_eq!(due, ["old-ok", "old-failed"]);
    // By count: beyond the newest 3 (of any status), the finished ones.
    let due = store.due_for_pruning(None, Some(3)).await.expect("due");
    assert_eq!(due, ["old-ok", "old-failed"], "old-running and old-with-child are not finished");
    // Both: the union, oldest first, once each.
    let due = store.due_for_pruning(Some(at(50)), Some(3)).await.expect("due");
    assert_eq!(due, ["old-ok", "old-failed"]);
    let due = store.due_for_pruning(None, Some(1)).await.expect("due");
    assert_eq!(due, ["old-ok", "old-failed", "new-1"]);
    assert!(store.due_for_pruning(None, None).await.expect("due").is_empty(), "no bound, nothing due");
}

#[tokio::test]
async fn deleting_an_execution_removes_its_events_tasks_children_and_winners_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    for id in ["gone", "kept"] {
        store
            .write(vec![
                Write::InsertExecution(ended(id, 0, ExecutionStatus::Succeeded)),
                Write::AppendEvents((1..=3).map(|n| event(id, n, task_finished(n))).collect()),
                Write::PutTasks { execution_id: id.into(), tasks: (0..4).map(task).collect() },
                Write::UpsertChild(child(id, "server-a", &format!("run-{id}"), 0)),
            ])
            .await
            .expect("write");
    }
    store.write(vec![Write::DeleteExecutions(vec!["gone".into(), "never-stored".into()])]).await.expect("delete");

    assert!(store.execution("gone").await.expect("read").is_none());
    for table in ["events", "tasks", "children", "task_winners"] {
        assert_eq!(count(&store, table, "gone").await, 0, "{table} rows of the pruned execution");
    }
    assert!(store.report("kept").await.expect("read").is_some());
    assert_eq!(count(&store, "events", "kept").await, 3);
    assert_eq!(count(&store, "tasks", "kept").await, 4);
    assert_eq!(count(&store, "children", "kept").await, 1);
    assert_eq!(store.execution_count().await.expect("count"), 1);
}
