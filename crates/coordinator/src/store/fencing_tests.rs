//! Store tests of the fencing facts (DESIGN.md §4 Fencing): a child's status only moves
//! forward, a late outcome is kept as the agent's result, owed stops and abandoned starts
//! survive a reopen, and a version 1 database is migrated.

use switchyard_package::engine::ChildStatus;

use super::*;
use crate::registry::StopReason;

fn child(agent: &str, run_id: &str, attempt: u32, status: ChildStatus) -> ChildRunRecord {
    ChildRunRecord {
        execution_id: "exec-1".into(),
        task_path: "Work".into(),
        attempt,
        agent: agent.into(),
        job: "work".into(),
        run_id: run_id.into(),
        idempotency_key: format!("exec-1/Work/{attempt}"),
        status,
        started_at: chrono::Utc::now(),
        duration_ms: None,
        message: String::new(),
        package: None,
    }
}

/// (status, agent_status) of every child of exec-1, by run id.
async fn statuses(store: &Store) -> Vec<(String, ChildStatus, Option<ChildStatus>)> {
    let mut children: Vec<_> = store
        .child_records("exec-1")
        .await
        .expect("read")
        .into_iter()
        .map(|c| (c.run_id.unwrap_or_default(), c.status, c.agent_status))
        .collect();
    children.sort_by(|a, b| a.0.cmp(&b.0));
    children
}

#[tokio::test]
async fn lost_superseded_and_final_statuses_are_never_overwritten_by_a_late_outcome() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let put = |agent: &str, run_id: &str, status| Write::UpsertChild(child(agent, run_id, 0, status));
    store
        .write(vec![
            put("a", "lost", ChildStatus::Running),
            put("a", "lost", ChildStatus::Lost),
            put("a", "superseded", ChildStatus::Superseded),
            put("a", "failed", ChildStatus::Running),
            put("a", "failed", ChildStatus::Failed),
            put("a", "running", ChildStatus::Running),
        ])
        .await
        .expect("write");
    store
        .write(vec![
            put("a", "lost", ChildStatus::Succeeded),
            put("a", "superseded", ChildStatus::Succeeded),
            put("a", "failed", ChildStatus::Succeeded),
            put("a", "running", ChildStatus::Succeeded),
            // A start recorded after its outcome never takes the child back to running.
            put("a", "running", ChildStatus::Running),
        ])
        .await
        .expect("late outcomes");

    use ChildStatus::*;
    assert_eq!(
        statuses(&store).await,
        [
            ("failed".into(), Failed, Some(Succeeded)),
            ("lost".into(), Lost, Some(Succeeded)),
            ("running".into(), Succeeded, None),
            ("superseded".into(), Superseded, Some(Succeeded)),
        ]
    );
}

#[tokio::test]
async fn the_late_outcome_of_a_lost_attempt_that_was_superseded_records_it_superseded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    // Attempt 0 was lost on server-b with a stop owed; attempt 1 won on server-a.
    store
        .write(vec![
            Write::AddPendingStop { agent: "b".into(), run_id: "run-0".into(), reason: StopReason::Superseded },
            Write::UpsertChild(child("b", "run-0", 0, ChildStatus::Lost)),
            Write::UpsertChild(child("a", "run-1", 1, ChildStatus::Succeeded)),
        ])
        .await
        .expect("write");
    // Another task: its lost attempt has no stop owed, but another attempt won.
    let mut other = child("c", "run-2", 0, ChildStatus::Lost);
    other.task_path = "Other".into();
    let mut winner = child("a", "run-3", 1, ChildStatus::Succeeded);
    winner.task_path = "Other".into();
    // And a lost attempt that nothing superseded (its task had no retries left).
    let mut alone = child("d", "run-4", 0, ChildStatus::Lost);
    alone.task_path = "Alone".into();
    store
        .write(vec![Write::UpsertChild(other.clone()), Write::UpsertChild(winner), Write::UpsertChild(alone.clone())])
        .await
        .expect("write");

    let late = |record: &ChildRunRecord, status| Write::UpsertChild(ChildRunRecord { status, ..record.clone() });
    store
        .write(vec![
            late(&child("b", "run-0", 0, ChildStatus::Lost), ChildStatus::Succeeded),
            late(&other, ChildStatus::Failed),
            late(&alone, ChildStatus::Succeeded),
        ])
        .await
        .expect("late outcomes");

    use ChildStatus::*;
    assert_eq!(
        statuses(&store).await,
        [
            ("run-0".into(), Superseded, Some(Succeeded)),
            ("run-1".into(), Succeeded, None),
            ("run-2".into(), Superseded, Some(Failed)),
            ("run-3".into(), Succeeded, None),
            ("run-4".into(), Lost, Some(Succeeded)),
        ]
    );
}

#[tokio::test]
async fn owed_stops_and_abandoned_starts_survive_a_reopen_until_settled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .write(vec![
            Write::AddPendingStop { agent: "b".into(), run_id: "run-0".into(), reason: StopReason::Superseded },
            Write::AddPendingStop { agent: "b".into(), run_id: "run-0".into(), reason: StopReason::Canceled },
            Write::AddPendingStop { agent: "c".into(), run_id: "run-9".into(), reason: StopReason::Canceled },
            Write::AddPendingStop { agent: "c".into(), run_id: "run-8".into(), reason: StopReason::Canceled },
            Write::AddAbandonedStart { agent: "b".into(), idempotency_key: "exec-1/Work/0".into() },
            Write::AddAbandonedStart { agent: "b".into(), idempotency_key: "exec-1/Work/1".into() },
            Write::AddAbandonedStart { agent: "c".into(), idempotency_key: "exec-2/Work/0".into() },
        ])
        .await
        .expect("write");
    store
        .write(vec![
            Write::RemovePendingStop { agent: "c".into(), run_id: "run-8".into() },
            Write::RemoveAbandonedStarts { agent: "b".into(), idempotency_key: Some("exec-1/Work/1".into()) },
        ])
        .await
        .expect("settle");
    store.close().await;

    let store = Store::open(dir.path()).expect("reopen");
    let fences = store.fences().await.expect("read");
    assert_eq!(
        fences.stops,
        [("b".into(), "run-0".into(), StopReason::Superseded), ("c".into(), "run-9".into(), StopReason::Canceled)],
        "the first reason stays"
    );
    assert_eq!(fences.abandoned, [("b".into(), "exec-1/Work/0".into()), ("c".into(), "exec-2/Work/0".into())]);
    store.write(vec![Write::RemoveAbandonedStarts { agent: "b".into(), idempotency_key: None }]).await.expect("write");
    assert_eq!(store.fences().await.expect("read").abandoned, [("c".into(), "exec-2/Work/0".into())]);
}

#[tokio::test]
async fn a_version_1_database_is_migrated_and_keeps_its_children() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.write(vec![Write::UpsertChild(child("b", "run-0", 0, ChildStatus::Lost))]).await.expect("write");
    store.close().await;
    // What version 1 had: no fencing tables, no agent_status.
    let connection = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).expect("open");
    connection
        .execute_batch(
            "DROP TABLE pending_stops; DROP TABLE abandoned_starts; DROP TABLE task_winners; \
             ALTER TABLE children DROP COLUMN agent_status; \
             UPDATE meta SET value = '1' WHERE key = 'schema_version';",
        )
        .expect("make it version 1");
    drop(connection);

    let store = Store::open(dir.path()).expect("a version 1 database opens");
    assert_eq!(store.meta("schema_version").await.expect("read").as_deref(), Some("2"));
    assert_eq!(store.fences().await.expect("read"), Fences::default());
    store
        .write(vec![Write::UpsertChild(child("b", "run-0", 0, ChildStatus::Succeeded))])
        .await
        .expect("write after the migration");
    assert_eq!(statuses(&store).await, [("run-0".into(), ChildStatus::Lost, Some(ChildStatus::Succeeded))]);
}
