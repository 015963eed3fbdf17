//! Detection: an agent fails under load, by `kill -9` (a crash) or by SIGSTOP (a hang: the process
//! stays, its connections stay open, nothing answers); how long until the coordinator declares it
//! down, and until the work it held runs elsewhere.
//!
//! Method: a fresh cluster each run (4 `switchyard-agent` processes with 16 slots each, and a
//! coordinator in this process with the default `heartbeat_interval` and `down_after`). The parent
//! package is a `foreach` of 288 items, 32 iterations at a time, each a `wait = true` `agent_job`
//! task over the pool (`retries = 3`, `retry_backoff = "10ms"`, so a retry waits 5-15 ms); each
//! child job runs a package that sleeps 400 ms, so 32 children run at once, about 8 per agent,
//! and the 3 survivors have a free slot for every one of them (the figures measure failover, not
//! queueing). Once the execution is past its first wave and the victim holds at least 4 running
//! children, the bench notes the time (monotonic and UTC) and signals the victim's pid. Observed,
//! all in this process, in ms from the signal:
//! - *suspect* and *down*: the first time the registry shows the victim suspect, then down
//!   (`Registry::wait_changed` wakes the bench on every change, so this is when the registry
//!   changed it, give or take a wake-up); the victim's `last_error` at that moment says why;
//! - *retry 1st / last*: each child lost on the victim (its row in the coordinator's store of
//!   child runs has status `lost`) must have a next attempt of the same task on another agent that
//!   succeeded; that attempt's row gets its `started_at` (UTC, ns) when the launcher learns the
//!   other agent committed the start: the most precise record of "its work runs elsewhere" (the
//!   engine's events say nothing of attempts). First and last over the lost children;
//! - *held*: tasks whose first child row came over 250 ms after the task started (a start takes a
//!   few ms here): starts sent to the victim while it hung, which waited for an answer; *held
//!   elsew.* is when the last of them ran elsewhere. *all* is the later of the last retry and the
//!   last held start: when everything the victim held runs elsewhere.
//!
//! Below the table: each run's *down* and *all* (a median of 3 hides a spread with two modes),
//! and the victim's last error when it was declared down (which probe decided).
//!
//! Checks: the execution and every task succeed, the victim lost at least one child, only the
//! victim's children are lost, and each lost child's next attempt ran on another agent and
//! succeeded. After a hang the victim gets SIGCONT once the execution ended; it must come back up,
//! each of its lost children must be recorded `superseded` (stopped when it came back), and a
//! start it held and accepted on resuming must be stopped and recorded `superseded` too (fencing
//! by key; any other child row of it after SIGCONT is a duplicate). Targets: down
//! within 50 ms of a crash, within `down_after` + 500 ms of a hang; *all* is judged by the same
//! target.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use switchyard_coordinator::registry::{AgentState, Registry};
use switchyard_coordinator::store::ChildRunRecord;
use switchyard_package::engine::ChildStatus;
use switchyard_package::{ExecutionStatus, TaskResult};

use crate::cluster::{Cluster, JOB_WORK, POOL, WORK_MS, binary};

const AGENTS: usize = 4;
const SLOTS: u32 = 16;
const IN_FLIGHT: usize = 32;
/// Enough tasks that the load goes on past a hang's detection (about 3.6 s of work).
const TASKS: usize = 288;
const RETRIES: u32 = 3;
const RETRY_BACKOFF_MS: u64 = 10;
/// The agent that fails; its process is `cluster.agents[0]`.
const VICTIM: &str = "agent-0";
/// The victim fails once it holds at least this many running children.
const HOLDING: usize = 4;
/// A task whose first child started this long after the task did waited on the hung victim.
const HELD_START: Duration = Duration::from_millis(250);
/// Targets: down after a crash, and the margin over `down_after` after a hang.
const CRASH_TARGET_MS: f64 = 50.0;
const HANG_MARGIN_MS: f64 = 500.0;

/// How the victim fails.
#[derive(Clone, Copy, PartialEq)]
enum Failure {
    /// `kill -9`.
    Crash,
    /// SIGSTOP, then SIGCONT once measured.
    Hang,
}

impl Failure {
    fn key(self) -> &'static str {
        match self {
            Failure::Crash => "crash",
            Failure::Hang => "hang",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Failure::Crash => "crash (kill -9)",
            Failure::Hang => "hang (SIGSTOP)",
        }
    }

    fn signal(self) -> Signal {
        match self {
            Failure::Crash => Signal::SIGKILL,
            Failure::Hang => Signal::SIGSTOP,
        }
    }

    /// The target in ms, for down and for all the work running elsewhere.
    fn target_ms(self, down_after: Duration) -> f64 {
        match self {
            Failure::Crash => CRASH_TARGET_MS,
            Failure::Hang => down_after.as_secs_f64() * 1e3 + HANG_MARGIN_MS,
        }
    }
}

/// One run's figures, in ms from the signal.
struct Sample {
    down_after: Duration,
    /// The registry showed the victim suspect (none when it went straight to down).
    suspect_ms: Option<f64>,
    down_ms: f64,
    /// The victim's last error when it was declared down.
    down_reason: String,
    /// Children lost with the victim, and the first and last of their retries committed on
    /// another agent.
    lost: usize,
    first_retry_ms: f64,
    last_retry_ms: f64,
    /// Starts that waited on the hung victim, and when the last of them ran elsewhere.
    held: usize,
    held_elsewhere_ms: Option<f64>,
    /// Everything the victim held runs elsewhere.
    all_elsewhere_ms: f64,
    /// The run's whole time, cluster start and checks included.
    wall_ms: f64,
}

/// A `foreach` over [`TASKS`] items, [`IN_FLIGHT`] iterations at a time, of one waited
/// `agent_job` task. The loop bounds the children in flight: an `agent_job` task gives its
/// package slot back once its start is accepted, so `max_concurrent` alone would not.
fn package_text() -> String {
    let items: Vec<String> = (0..TASKS).map(|i| format!("\"{i}\"")).collect();
    format!(
        "[package]\nname = \"detection\"\nmax_errors = 0\n\n\
         [[tasks]]\nname = \"Loads\"\nkind = \"foreach\"\nitems = [{items}]\nvar = \"item\"\nparallel = {IN_FLIGHT}\n\n\
         [[tasks.tasks]]\nname = \"Load\"\nkind = \"agent_job\"\npool = \"{POOL}\"\njob = \"{JOB_WORK}\"\nwait = true\n\
         retries = {RETRIES}\nretry_backoff = \"{RETRY_BACKOFF_MS}ms\"\n",
        items = items.join(", ")
    )
}

/// Runs the scenario and prints its figures.
pub fn run(runs: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let agent_binary = binary("switchyard-agent");
    let began = Instant::now();
    println!(
        "detection: an agent holding running children is killed (kill -9) or hung (SIGSTOP) under load: a foreach \
         of {TASKS} wait = true agent_job tasks, {IN_FLIGHT} in flight over {AGENTS} agent processes ({SLOTS} slots \
         each), children of {WORK_MS} ms, retries = {RETRIES}, retry_backoff = {RETRY_BACKOFF_MS}ms; ms from the \
         signal, median of {runs} runs, a fresh cluster each run (targets: crash under {CRASH_TARGET_MS} ms, hang \
         under down_after + {HANG_MARGIN_MS} ms)"
    );
    println!(
        "{:<16} {:>10} {:>7} {:>8} {:>8} {:>5} {:>9} {:>10} {:>5} {:>11} {:>8} {:>9} {:>8}",
        "failure",
        "down_after",
        "target",
        "suspect",
        "down",
        "lost",
        "retry 1st",
        "retry last",
        "held",
        "held elsew.",
        "all",
        "down met",
        "all met"
    );
    let mut json = serde_json::Map::new();
    let mut notes = Vec::new();
    for failure in [Failure::Crash, Failure::Hang] {
        let samples: Vec<Sample> = (0..runs).map(|_| runtime.block_on(one_run(&agent_binary, failure))).collect();
        let median = |f: &dyn Fn(&Sample) -> f64| crate::median(&mut samples.iter().map(f).collect::<Vec<f64>>());
        // Figures only some runs have: the median of those that have it.
        let median_of_some = |f: &dyn Fn(&Sample) -> Option<f64>| {
            let mut some: Vec<f64> = samples.iter().filter_map(f).collect();
            (!some.is_empty()).then(|| crate::median(&mut some))
        };
        let down_after = samples.first().map_or(Duration::ZERO, |s| s.down_after);
        let target = failure.target_ms(down_after);
        let suspect = median_of_some(&|s| s.suspect_ms);
        let down = median(&|s| s.down_ms);
        let (lost, held) = (median(&|s| s.lost as f64), median(&|s| s.held as f64));
        let (first, last) = (median(&|s| s.first_retry_ms), median(&|s| s.last_retry_ms));
        let held_elsewhere = median_of_some(&|s| s.held_elsewhere_ms);
        let all = median(&|s| s.all_elsewhere_ms);
        let shown = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
        let verdict = |ms: f64| if ms < target { "met" } else { "missed" };
        println!(
            "{:<16} {:>10} {target:>7.0} {:>8} {down:>8.1} {lost:>5.0} {first:>9.1} {last:>10.1} {held:>5.0} {:>11} \
             {all:>8.1} {:>9} {:>8}",
            failure.label(),
            format!("{} ms", down_after.as_millis()),
            shown(suspect),
            shown(held_elsewhere),
            verdict(down),
            verdict(all),
        );
        let runs_down: Vec<String> = samples.iter().map(|s| format!("{:.1}", s.down_ms)).collect();
        let runs_all: Vec<String> = samples.iter().map(|s| format!("{:.1}", s.all_elsewhere_ms)).collect();
        notes.push(format!(
            "{}: each run's down {} ms, all {} ms",
            failure.key(),
            runs_down.join(", "),
            runs_all.join(", ")
        ));
        if let Some(sample) = samples.last() {
            notes.push(format!("{}: down because {} (last run)", failure.key(), sample.down_reason));
        }
        json.insert(
            failure.key().to_string(),
            serde_json::json!({
                "down_after_ms": down_after.as_millis() as u64, "target_ms": target, "suspect_ms": suspect,
                "down_ms": down, "lost": lost, "first_retry_ms": first, "last_retry_ms": last, "held": held,
                "held_elsewhere_ms": held_elsewhere, "all_elsewhere_ms": all, "down_met": down < target,
                "all_met": all < target,
                "runs_down_ms": samples.iter().map(|s| s.down_ms).collect::<Vec<_>>(),
                "runs_all_elsewhere_ms": samples.iter().map(|s| s.all_elsewhere_ms).collect::<Vec<_>>(),
                "runs_wall_ms": samples.iter().map(|s| s.wall_ms).collect::<Vec<_>>(),
                "down_reason": samples.last().map(|s| s.down_reason.clone()),
            }),
        );
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    println!(
        "suspect, down: the registry's state of the victim; lost: its children lost with it; retry 1st / last: \
         their retries committed on another agent; held: starts sent to the hung victim that waited for an answer; \
         held elsew.: the last of them committed elsewhere; all: everything the victim held runs elsewhere; met: \
         under the target"
    );
    for note in notes {
        println!("{note}");
    }
    println!("{:.1} s in all", began.elapsed().as_secs_f64());
    println!("{}", serde_json::Value::Object(json));
}

/// One run on a fresh cluster: fail the victim under load, measure, check.
async fn one_run(agent_binary: &Path, failure: Failure) -> Sample {
    let began = Instant::now();
    let cluster = Cluster::start_with_binary(agent_binary, AGENTS, SLOTS).await;
    let registry = cluster.coordinator.registry.clone();
    let down_after = registry.settings().down_after;
    let pid = Pid::from_raw(i32::try_from(cluster.agents[0].pid).expect("process ids fit in i32"));
    let id = cluster.start_package(package_text(), IN_FLIGHT as i64).await;
    wait_until_holding(&cluster, &id).await;

    let failed_utc = Utc::now();
    let failed_at = Instant::now();
    kill(pid, failure.signal()).unwrap_or_else(|e| panic!("cannot send {} to {VICTIM}: {e}", failure.signal()));
    let (suspect, down, down_reason) =
        watch_until_down(&registry, failed_at, down_after + Duration::from_secs(5)).await;

    cluster.coordinator.executions.wait_finished(&id).await;
    let children = settled_children(&cluster, &id).await;
    let report = cluster.coordinator.executions.report(&id).await.expect("the report");
    assert_eq!(report.execution.status, ExecutionStatus::Succeeded, "the detection package must succeed");
    assert!(report.tasks.iter().all(|t| t.result == TaskResult::Success), "every task must succeed");
    let task_starts: HashMap<&str, DateTime<Utc>> =
        report.tasks.iter().filter_map(|t| Some((t.path.as_str(), t.started_at?))).collect();
    let moved = moved_elsewhere(&children, &task_starts);
    let since = |at: DateTime<Utc>| (at - failed_utc).num_nanoseconds().unwrap_or(0) as f64 / 1e6;
    let retries: Vec<f64> = moved.iter().filter(|m| !m.held).map(|m| since(m.at)).collect();
    let held: Vec<f64> = moved.iter().filter(|m| m.held).map(|m| since(m.at)).collect();
    assert!(!retries.is_empty(), "{VICTIM} held running children when it failed, but none was lost");
    let latest = |v: &[f64]| v.iter().copied().reduce(f64::max);

    if failure == Failure::Hang {
        let known: HashSet<&str> = children.iter().filter(|c| c.agent == VICTIM).map(|c| c.run_id.as_str()).collect();
        kill(pid, Signal::SIGCONT).unwrap_or_else(|e| panic!("cannot send SIGCONT to {VICTIM}: {e}"));
        check_after_sigcont(&cluster, &id, &known).await;
    }
    drop(cluster);
    Sample {
        down_after,
        suspect_ms: suspect.map(|d| d.as_secs_f64() * 1e3),
        down_ms: down.as_secs_f64() * 1e3,
        down_reason,
        lost: retries.len(),
        first_retry_ms: retries.iter().copied().reduce(f64::min).unwrap_or(0.0),
        last_retry_ms: latest(&retries).unwrap_or(0.0),
        held: held.len(),
        held_elsewhere_ms: latest(&held),
        all_elsewhere_ms: latest(&[retries, held].concat()).unwrap_or(0.0),
        wall_ms: began.elapsed().as_secs_f64() * 1e3,
    }
}

/// Waits (bounded) until the execution is past its first wave and the victim holds at least
/// [`HOLDING`] running children, by the coordinator's store of child runs.
async fn wait_until_holding(cluster: &Cluster, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = cluster.coordinator.executions.store().children(id).await.expect("the child runs");
        let running_there = children.iter().filter(|c| c.agent == VICTIM && c.status == ChildStatus::Running).count();
        if children.len() > IN_FLIGHT + IN_FLIGHT / 2 && running_there >= HOLDING {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{VICTIM} did not hold {HOLDING} running children within 10 s ({running_there} of {} children)",
            children.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Follows the registry's view of the victim from `since` until it is down: (first suspect,
/// down) as durations from `since`, and its last error then.
async fn watch_until_down(
    registry: &Registry,
    since: Instant,
    deadline: Duration,
) -> (Option<Duration>, Duration, String) {
    let mut suspect = None;
    loop {
        let changed = registry.wait_changed();
        let snapshot = registry.agent(VICTIM).unwrap_or_else(|| panic!("the registry lost {VICTIM}"));
        let now = since.elapsed();
        match snapshot.state {
            AgentState::Down => return (suspect, now, snapshot.last_error.unwrap_or_default()),
            AgentState::Suspect if suspect.is_none() => suspect = Some(now),
            _ => {}
        }
        assert!(now < deadline, "{VICTIM} was not declared down within {deadline:?} of its failure ({snapshot:?})");
        let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
    }
}

/// Every child row of the ended execution once none shows `running` (rows are written behind).
async fn settled_children(cluster: &Cluster, id: &str) -> Vec<ChildRunRecord> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let children = cluster.coordinator.executions.store().children(id).await.expect("the child runs");
        if children.iter().all(|c| c.status != ChildStatus::Running) {
            return children;
        }
        assert!(Instant::now() < deadline, "child rows still show `running` 10 s after the execution ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Work of the victim that ran elsewhere: when it was committed on another agent, and whether it
/// was a start held by the hung victim rather than a lost child.
struct Moved {
    at: DateTime<Utc>,
    held: bool,
}

/// The next attempt of each child lost on the victim (checked: on another agent, succeeded), and
/// the first attempt of each task whose start waited over [`HELD_START`].
fn moved_elsewhere(children: &[ChildRunRecord], task_starts: &HashMap<&str, DateTime<Utc>>) -> Vec<Moved> {
    let mut by_task: HashMap<&str, Vec<&ChildRunRecord>> = HashMap::new();
    for child in children {
        by_task.entry(child.task_path.as_str()).or_default().push(child);
    }
    let mut moved = Vec::new();
    for (task, mut attempts) in by_task {
        attempts.sort_by_key(|c| c.attempt);
        for (i, child) in attempts.iter().enumerate() {
            if child.status != ChildStatus::Lost {
                continue;
            }
            assert_eq!(child.agent, VICTIM, "{task}: only {VICTIM}'s children may be lost ({child:?})");
            let retry = attempts.get(i + 1).unwrap_or_else(|| panic!("{task}: its lost child was never retried"));
            assert_ne!(retry.agent, VICTIM, "{task}: its lost child was retried on {VICTIM} again ({retry:?})");
            assert_eq!(retry.status, ChildStatus::Succeeded, "{task}: its retry must succeed ({retry:?})");
            moved.push(Moved { at: retry.started_at, held: false });
        }
        let first = attempts[0];
        let started = task_starts.get(task).copied().unwrap_or(first.started_at);
        if (first.started_at - started).to_std().is_ok_and(|waited| waited > HELD_START) {
            assert_ne!(first.agent, VICTIM, "{task}: a start held by {VICTIM} must run elsewhere ({first:?})");
            moved.push(Moved { at: first.started_at, held: true });
        }
    }
    moved
}

/// After SIGCONT (bounded waits): the victim comes back up, each of its lost children is recorded
/// `superseded`, and, a child's run time later, no child row of it appeared that was not `known`
/// before SIGCONT (a start it held must not run once it resumes).
async fn check_after_sigcont(cluster: &Cluster, id: &str, known: &HashSet<&str>) {
    let registry = &cluster.coordinator.registry;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let changed = registry.wait_changed();
        if registry.agent(VICTIM).is_some_and(|a| a.state == AgentState::Up) {
            break;
        }
        assert!(Instant::now() < deadline, "{VICTIM} did not come back up within 10 s of SIGCONT");
        let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
    }
    loop {
        let children = cluster.coordinator.executions.store().children(id).await.expect("the child runs");
        let lost: Vec<&ChildRunRecord> = children.iter().filter(|c| c.status == ChildStatus::Lost).collect();
        if lost.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} lost children of {VICTIM} were not recorded superseded within 10 s of SIGCONT: {lost:?}",
            lost.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(WORK_MS + 200)).await;
    let children = cluster.coordinator.executions.store().children(id).await.expect("the child runs");
    // A start the victim held while hung may be accepted when it resumes: fencing by key must
    // stop it at once and record it superseded; one that ran otherwise is a duplicate.
    let unfenced: Vec<&ChildRunRecord> = children
        .iter()
        .filter(|c| c.agent == VICTIM && !known.contains(c.run_id.as_str()) && c.status != ChildStatus::Superseded)
        .collect();
    assert!(unfenced.is_empty(), "{VICTIM} ran starts it held while hung once it resumed (duplicates): {unfenced:?}");
}
