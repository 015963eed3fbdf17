//! Store tests on real SQLite files in temporary directories.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::model::{EventKind, HistoryRecord, HistoryStatus, OutboxEvent, RunRecord, RunStatus, StepOutputRecord};

use super::*;

pub(super) fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 123_456_789).expect("a valid test instant")
}

pub(super) fn run_record(run_id: &str, job: &str, key: Option<&str>) -> RunRecord {
    RunRecord {
        run_id: run_id.to_owned(),
        job: job.to_owned(),
        status: RunStatus::Queued,
        idempotency_key: key.map(str::to_owned),
        epoch: 7,
        requested_by: "alice".to_owned(),
        execution_id: "exec-1".to_owned(),
        task_path: "Load files[2]/Copy".to_owned(),
        attempt: 2,
        secrets: Default::default(),
        params: [("region".to_owned(), json!("eu")), ("batch".to_owned(), json!({"size": 3}))].into_iter().collect(),
        accepted_at: at(0),
        started_at: None,
        ended_at: None,
        duration_ms: None,
        message: "accepted".to_owned(),
        current_step: 0,
        job_hash: "d00d".to_owned(),
        package_hashes: vec!["aa".to_owned(), "bb".to_owned()],
        accepted_sequence: 1,
        process_groups: Vec::new(),
    }
}

pub(super) fn event(run_id: &str, at: DateTime<Utc>) -> OutboxEvent {
    OutboxEvent {
        sequence: 999,
        run_id: run_id.to_owned(),
        job: "load".to_owned(),
        idempotency_key: Some(format!("key-{run_id}")),
        kind: EventKind::StepFinished,
        status: RunStatus::Running,
        message: "step 1 \"copy\" ended: exit code 0".to_owned(),
        at,
        step_id: 1,
        step_name: "copy".to_owned(),
        exit_code: Some(0),
        duration_ms: 1234,
        execution_id: "exec-1".to_owned(),
        task_path: "Copy".to_owned(),
        attempt: 1,
    }
}

fn history_row(job: &str, run_id: &str, started_at: DateTime<Utc>) -> HistoryRecord {
    HistoryRecord {
        instance_id: 0,
        job: job.to_owned(),
        step_id: 0,
        step_name: "(Job outcome)".to_owned(),
        run_status: HistoryStatus::Succeeded,
        started_at,
        duration_ms: 42,
        message: "The job succeeded.  The Job was invoked by User alice.".to_owned(),
        run_id: run_id.to_owned(),
        retries_attempted: 1,
    }
}

fn output(run_id: &str, step_id: u32, attempt: u32) -> StepOutputRecord {
    StepOutputRecord {
        run_id: run_id.to_owned(),
        step_id,
        step_name: format!("step {step_id}"),
        attempt,
        stdout: format!("out {step_id}.{attempt}\n"),
        stderr: String::new(),
        truncated: attempt > 0,
    }
}

fn open(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).expect("open the store")
}

async fn append_events(store: &Store, count: usize) -> Vec<u64> {
    let batch = (0..count).map(|i| Write::AppendEvent(event(&format!("run-{i}"), at(0)))).collect();
    store.write(batch).await.expect("append events").sequences
}

#[tokio::test]
async fn every_record_type_reads_back_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut run = run_record("run-1", "load", Some("exec-1/Copy/1"));
    run.started_at = Some(at(1));
    run.ended_at = Some(at(5));
    run.duration_ms = Some(4000);
    run.status = RunStatus::Succeeded;
    run.process_groups = vec![4242, 4243];
    let receipt = store
        .write(vec![
            Write::InsertRun(run.clone()),
            Write::AppendHistory(history_row("load", "run-1", at(1))),
            Write::AppendEvent(event("run-1", at(2))),
            Write::PutOutput(output("run-1", 2, 0)),
            Write::PutOutput(output("run-1", 1, 1)),
            Write::PutOutput(output("run-1", 1, 0)),
            Write::UpsertJob { name: "load".into(), definition: "[job]".into(), hash: "h1".into() },
            Write::UpsertJob { name: "drop".into(), definition: "[job]".into(), hash: "h2".into() },
            Write::UpsertJob { name: "load".into(), definition: "[job] # v2".into(), hash: "h3".into() },
            Write::DeleteJob { name: "drop".into() },
            Write::PutPackage { name: "copy".into(), content: "[package]".into(), hash: "p1".into() },
            Write::SetMeta { key: "agent_name".into(), value: "server-b".into() },
        ])
        .await
        .expect("write every record type");

    assert_eq!(receipt.sequences, vec![1]);
    assert_eq!(receipt.instance_ids, vec![1]);
    assert_eq!(store.run("run-1").await.expect("read run"), Some(run));
    assert_eq!(store.run("missing").await.expect("read run"), None);
    assert_eq!(
        store.history(HistoryFilter::default()).await.expect("read history"),
        vec![HistoryRecord { instance_id: 1, ..history_row("load", "run-1", at(1)) }]
    );
    let events = store.events_after(0, 10).await.expect("read events");
    assert_eq!(events, vec![OutboxEvent { sequence: 1, ..event("run-1", at(2)) }]);
    assert_eq!(events, receipt.events);
    let outputs = store.outputs("run-1").await.expect("read outputs");
    assert_eq!(outputs, vec![output("run-1", 1, 0), output("run-1", 1, 1), output("run-1", 2, 0)]);
    let jobs = store.jobs().await.expect("read jobs");
    assert_eq!(jobs, vec![StoredJob { name: "load".into(), definition: "[job] # v2".into(), hash: "h3".into() }]);
    let packages = store.packages().await.expect("read packages");
    assert_eq!(packages, vec![StoredPackage { name: "copy".into(), content: "[package]".into(), hash: "p1".into() }]);
    assert_eq!(store.meta("agent_name").await.expect("read meta"), Some("server-b".to_owned()));
    assert_eq!(store.meta("incarnation").await.expect("read meta").as_deref(), Some(store.incarnation()));

    let mut replaced = output("run-1", 1, 0);
    replaced.stdout = "again\n".into();
    store.write(vec![Write::PutOutput(replaced.clone())]).await.expect("replace output");
    assert_eq!(store.outputs("run-1").await.expect("read outputs")[0], replaced);
}

#[tokio::test]
async fn update_run_replaces_the_whole_row() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let run = run_record("run-1", "load", Some("key-1"));
    store.write(vec![Write::InsertRun(run.clone())]).await.expect("insert run");
    let mut running = run.clone();
    running.status = RunStatus::Running;
    running.current_step = 2;
    running.started_at = Some(at(3));
    running.process_groups = vec![77];
    running.message = "step 2 running".into();
    store.write(vec![Write::UpdateRun(running.clone())]).await.expect("update run");
    assert_eq!(store.run("run-1").await.expect("read run"), Some(running));

    let fresh = run_record("run-2", "load", None);
    store.write(vec![Write::UpdateRun(fresh.clone())]).await.expect("update inserts a missing run");
    assert_eq!(store.run("run-2").await.expect("read run"), Some(fresh));
}

#[tokio::test]
async fn runs_are_found_by_idempotency_key_status_and_latest_per_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut older = run_record("run-1", "load", Some("key-1"));
    older.status = RunStatus::Succeeded;
    let mut newer = run_record("run-2", "load", Some("key-2"));
    newer.accepted_at = at(60);
    newer.status = RunStatus::Running;
    let mut other = run_record("run-3", "report", None);
    other.status = RunStatus::BetweenRetries;
    let writes = [&older, &newer, &other].map(|run| Write::InsertRun(run.clone()));
    store.write(writes.to_vec()).await.expect("insert runs");

    assert_eq!(store.run_by_key("key-2").await.expect("by key"), Some(newer.clone()));
    assert_eq!(store.run_by_key("key-9").await.expect("by key"), None);
    let active = store.runs_with_status(&[RunStatus::Running, RunStatus::BetweenRetries]).await.expect("by status");
    assert_eq!(active, vec![other.clone(), newer.clone()]);
    assert!(store.runs_with_status(&[RunStatus::Queued]).await.expect("by status").is_empty());
    assert!(store.runs_with_status(&[]).await.expect("by status").is_empty());
    assert_eq!(store.latest_runs_by_job().await.expect("latest"), vec![newer, other]);
}

#[tokio::test]
async fn a_duplicate_idempotency_key_fails_its_request_and_the_store_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store.write(vec![Write::InsertRun(run_record("run-1", "load", Some("key-1")))]).await.expect("first run");
    let error = store
        .write(vec![
            Write::AppendEvent(event("run-2", at(0))),
            Write::InsertRun(run_record("run-2", "load", Some("key-1"))),
        ])
        .await
        .expect_err("a second run with the same key is refused");
    assert!(error.is_constraint_violation(), "{error}");
    assert!(error.to_string().contains("agent.db"), "the error names the database: {error}");
    assert_eq!(store.run("run-2").await.expect("read run"), None);
    assert_eq!(store.last_sequence(), 0, "the failed request's event took no sequence");
    assert_eq!(append_events(&store, 1).await, vec![1]);
}

#[tokio::test]
async fn sequences_are_contiguous_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert!(store.created());
    let incarnation = store.incarnation().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&incarnation).expect("a UUID").get_version_num(), 4);
    assert_eq!(append_events(&store, 3).await, vec![1, 2, 3]);
    assert_eq!(append_events(&store, 2).await, vec![4, 5]);
    assert_eq!(store.last_sequence(), 5);
    drop(store);

    let store = open(dir.path());
    assert!(!store.created());
    assert_eq!(store.incarnation(), incarnation);
    assert_eq!(store.last_sequence(), 5);
    assert_eq!(append_events(&store, 1).await, vec![6]);

    let elsewhere = tempfile::tempdir().expect("tempdir");
    let other = open(&elsewhere.path().join("nested/data"));
    assert!(other.created());
    assert_ne!(other.incarnation(), incarnation);
    assert_eq!(other.last_sequence(), 0);
}

#[tokio::test]
async fn subscribers_receive_committed_events_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut events = store.subscribe();
    append_events(&store, 2).await;
    append_events(&store, 3).await;
    for expected in 1..=5 {
        let received = events.recv().await.expect("an event");
        assert_eq!(received.sequence, expected);
        let stored = store.events_after(expected - 1, 1).await.expect("read events");
        assert_eq!(stored, vec![received], "an event is published only once it is stored");
    }
    assert!(events.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_are_grouped_into_few_commits() {
    const WRITES: u64 = 2000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let start = Arc::new(tokio::sync::Barrier::new(WRITES as usize));
    let tasks: Vec<_> = (0..WRITES)
        .map(|i| {
            let store = store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let receipt = store.write(vec![Write::AppendEvent(event(&format!("run-{i}"), at(0)))]).await;
                receipt.expect("write an event").sequences
            })
        })
        .collect();
    let mut sequences = BTreeSet::new();
    for task in tasks {
        let assigned = task.await.expect("the task ends");
        assert_eq!(assigned.len(), 1);
        assert!(sequences.insert(assigned[0]), "sequence {} assigned twice", assigned[0]);
    }
    assert_eq!(sequences, (1..=WRITES).collect::<BTreeSet<_>>());
    assert_eq!(store.last_sequence(), WRITES);
    let stats = store.stats();
    assert_eq!(stats.requests, WRITES);
    assert!(stats.commits < WRITES, "{} commits for {WRITES} writes", stats.commits);
    let stored: Vec<u64> = store.events_after(0, 5000).await.expect("read").iter().map(|e| e.sequence).collect();
    assert_eq!(stored, (1..=WRITES).collect::<Vec<_>>());
}

#[tokio::test]
async fn history_keeps_the_newest_rows_per_job_and_overall() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions { history_max_rows: 5, history_max_rows_per_job: 3, ..StoreOptions::default() };
    let store = Store::open(dir.path(), options.clone()).expect("open");
    let ids = |rows: Vec<HistoryRecord>| rows.iter().map(|row| row.instance_id).collect::<Vec<_>>();
    for i in 0..5 {
        store.write(vec![Write::AppendHistory(history_row("a", "run-a", at(i)))]).await.expect("append");
    }
    let only_a = HistoryFilter { job: Some("a".into()), ..HistoryFilter::default() };
    assert_eq!(ids(store.history(only_a.clone()).await.expect("history")), vec![5, 4, 3]);

    let batch = ["b", "b", "c", "c"].map(|job| Write::AppendHistory(history_row(job, "run", at(9))));
    let receipt = store.write(batch.to_vec()).await.expect("append");
    assert_eq!(receipt.instance_ids, vec![6, 7, 8, 9]);
    assert_eq!(ids(store.history(HistoryFilter::default()).await.expect("history")), vec![9, 8, 7, 6, 5]);

    let batch = (0..4).map(|_| Write::AppendHistory(history_row("d", "run-d", at(10)))).collect();
    store.write(batch).await.expect("append");
    let only_d = HistoryFilter { job: Some("d".into()), ..HistoryFilter::default() };
    assert_eq!(ids(store.history(only_d).await.expect("history")), vec![13, 12, 11]);
    drop(store);

    let store = Store::open(dir.path(), options).expect("reopen");
    let receipt = store.write(vec![Write::AppendHistory(history_row("a", "run-a", at(11)))]).await.expect("append");
    assert_eq!(receipt.instance_ids, vec![14], "instance ids are never reused");
    assert_eq!(ids(store.history(only_a).await.expect("history")), vec![14]);
}

#[tokio::test]
async fn history_filter_selects_by_job_run_and_time_newest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let rows = [("a", "run-1", 0), ("a", "run-1", 10), ("b", "run-2", 20), ("a", "run-3", 30)]
        .map(|(job, run, second)| Write::AppendHistory(history_row(job, run, at(second))));
    store.write(rows.to_vec()).await.expect("append");
    let ids = |rows: Vec<HistoryRecord>| rows.iter().map(|row| row.instance_id).collect::<Vec<_>>();
    let filter = |job: Option<&str>, run: Option<&str>, since, until, limit| HistoryFilter {
        job: job.map(str::to_owned),
        run_id: run.map(str::to_owned),
        since,
        until,
        limit,
    };
    assert_eq!(ids(store.history(filter(None, None, None, None, 0)).await.expect("all")), vec![4, 3, 2, 1]);
    assert_eq!(ids(store.history(filter(None, None, None, None, 2)).await.expect("limit")), vec![4, 3]);
    assert_eq!(ids(store.history(filter(Some("a"), None, None, None, 0)).await.expect("job")), vec![4, 2, 1]);
    assert_eq!(ids(store.history(filter(None, Some("run-1"), None, None, 0)).await.expect("run")), vec![2, 1]);
    let window = filter(Some("a"), None, Some(at(10)), Some(at(30)), 0);
    assert_eq!(ids(store.history(window).await.expect("window")), vec![2], "since inclusive, until exclusive");
}

#[tokio::test]
async fn events_after_pages_in_sequence_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append_events(&store, 7).await;
    let page = |events: Vec<OutboxEvent>| events.iter().map(|event| event.sequence).collect::<Vec<_>>();
    assert_eq!(page(store.events_after(0, 3).await.expect("page")), vec![1, 2, 3]);
    assert_eq!(page(store.events_after(3, 3).await.expect("page")), vec![4, 5, 6]);
    assert_eq!(page(store.events_after(6, 3).await.expect("page")), vec![7]);
    assert!(store.events_after(7, 3).await.expect("page").is_empty());
}

#[tokio::test]
async fn outbox_pruning_deletes_only_consumed_and_old_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let seconds = [0, 10, 1000, 10, 10];
    let batch = seconds.iter().map(|second| Write::AppendEvent(event("run", at(*second)))).collect();
    store.write(batch).await.expect("append");

    // 1, 2 and 4 are consumed and old; 3 is consumed but recent; 5 is old but not consumed.
    assert_eq!(store.prune_outbox(4, at(100)).await.expect("prune"), 3);
    let left: Vec<u64> = store.events_after(0, 10).await.expect("read").iter().map(|e| e.sequence).collect();
    assert_eq!(left, vec![3, 5]);
    assert_eq!(store.prune_outbox(5, at(10_000)).await.expect("prune"), 2);
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.last_sequence(), 5, "pruning every event does not rewind the sequence");
    assert_eq!(append_events(&store, 1).await, vec![6]);
}

#[tokio::test]
async fn consumed_sequence_only_rises_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    assert_eq!(store.consumed().await.expect("consumed"), 0);
    store.write(vec![Write::SetConsumed(40)]).await.expect("set");
    store.write(vec![Write::SetConsumed(12)]).await.expect("set");
    assert_eq!(store.consumed().await.expect("consumed"), 40);
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.consumed().await.expect("consumed"), 40);
    assert_eq!(store.meta("consumed_sequence").await.expect("meta").as_deref(), Some("40"));
}

#[tokio::test]
async fn acknowledged_writes_survive_drop_and_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let incarnation = store.incarnation().to_owned();
    let run = run_record("run-1", "load", Some("key-1"));
    store
        .write(vec![
            Write::InsertRun(run.clone()),
            Write::AppendEvent(event("run-1", at(0))),
            Write::AppendHistory(history_row("load", "run-1", at(0))),
            Write::PutOutput(output("run-1", 1, 0)),
        ])
        .await
        .expect("write");
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.incarnation(), incarnation);
    assert_eq!(store.run_by_key("key-1").await.expect("read"), Some(run));
    assert_eq!(store.events_after(0, 10).await.expect("read").len(), 1);
    assert_eq!(store.history(HistoryFilter::default()).await.expect("read").len(), 1);
    assert_eq!(store.outputs("run-1").await.expect("read"), vec![output("run-1", 1, 0)]);
}

#[tokio::test]
async fn reserved_meta_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let error = store
        .write(vec![Write::SetMeta { key: "incarnation".into(), value: "mine".into() }])
        .await
        .expect_err("the incarnation is the store's");
    assert!(matches!(error, StoreError::ReservedMetaKey { .. }), "{error}");
    assert_eq!(store.meta("incarnation").await.expect("meta").as_deref(), Some(store.incarnation()));
}

#[tokio::test]
async fn writes_after_close_report_closed_while_reads_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let clone = store.clone();
    append_events(&store, 2).await;
    store.close().await;
    let error = clone.write(vec![Write::SetConsumed(1)]).await.expect_err("the writer has stopped");
    assert!(matches!(error, StoreError::Closed { .. }), "{error}");
    assert_eq!(clone.events_after(0, 10).await.expect("reads still work").len(), 2);
}

/// The `runs` table goes with the history (issue 14 item 8): an ended run whose last history
/// row retention removed is deleted with its captured output; a run still going, or one with
/// rows left, stays.
#[tokio::test]
async fn an_ended_run_is_pruned_with_its_last_history_row_and_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions { history_max_rows: 3, history_max_rows_per_job: 0, ..StoreOptions::default() };
    let store = Store::open(dir.path(), options.clone()).expect("open");
    let ended = |run_id: &str| RunRecord { status: RunStatus::Succeeded, ..run_record(run_id, "load", None) };
    let running = RunRecord { status: RunStatus::Running, ..run_record("run-2", "load", None) };
    store
        .write(vec![
            Write::InsertRun(ended("run-1")),
            Write::InsertRun(running),
            Write::InsertRun(ended("run-3")),
            Write::PutOutput(output("run-1", 1, 0)),
            Write::PutOutput(output("run-2", 1, 0)),
            // run-1 has two rows, run-2 (still running) one so far, run-3 one.
            Write::AppendHistory(history_row("load", "run-1", at(0))),
            Write::AppendHistory(history_row("load", "run-1", at(1))),
            Write::AppendHistory(history_row("load", "run-2", at(2))),
        ])
        .await
        .expect("write");
    assert!(store.run("run-1").await.expect("read").is_some());

    // One more row pushes run-1's first row out: run-1 keeps a row, so it stays.
    store.write(vec![Write::AppendHistory(history_row("load", "run-3", at(3)))]).await.expect("append");
    assert!(store.run("run-1").await.expect("read").is_some(), "run-1 still has a history row");

    // Two more push out run-1's last row and run-2's only one.
    let rows = (4..6).map(|i| Write::AppendHistory(history_row("load", "run-3", at(i)))).collect();
    store.write(rows).await.expect("append");
    assert!(store.run("run-1").await.expect("read").is_none(), "run-1 went with its last history row");
    assert!(store.outputs("run-1").await.expect("read").is_empty(), "and its captured output with it");
    assert!(store.run("run-2").await.expect("read").is_some(), "a run still going is never pruned");
    assert_eq!(store.outputs("run-2").await.expect("read").len(), 1);
    assert!(store.run("run-3").await.expect("read").is_some(), "run-3 keeps its rows");
    drop(store);

    // Pruned rows stay pruned across a restart.
    let store = Store::open(dir.path(), options).expect("reopen");
    assert!(store.run("run-1").await.expect("read").is_none());
}
