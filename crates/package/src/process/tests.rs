//! Unit tests of child processes: exit codes, output capture, timeouts, cancellation and cleanup
//! of the whole process group.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::FutureExt;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

use super::capture::Capture;
use super::{
    ProcessEnd, ProcessError, ProcessOutcome, ProcessSpec, SpawnedProcess, process_group_alive, run_process,
    terminate_process_group,
};

const DEADLINE: Duration = Duration::from_secs(5);

fn spec(script: &str) -> ProcessSpec {
    ProcessSpec {
        program: "sh".into(),
        args: vec!["-c".into(), script.into()],
        env: Vec::new(),
        dir: std::env::temp_dir(),
        timeout: None,
        success_codes: vec![0],
        output_limit: 64 * 1024,
        kill_grace: Duration::from_secs(2),
    }
}

async fn run(spec: &ProcessSpec) -> ProcessOutcome {
    run_process(spec, &CancellationToken::new()).await.expect("spawn sh")
}

/// `state` and `pgrp` of a process from /proc, None when it does not exist.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let pgrp = fields.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// Gone, or a zombie that init has not reaped yet.
fn pid_gone(pid: u32) -> bool {
    let raw = i32::try_from(pid).expect("pid fits i32");
    kill(Pid::from_raw(raw), None) == Err(Errno::ESRCH) || proc_stat(pid).is_none_or(|(state, _)| state == 'Z')
}

/// No live (non-zombie) process left in group `pgid`.
fn group_gone(pgid: u32) -> bool {
    let entries = std::fs::read_dir("/proc").expect("read /proc");
    !entries.filter_map(Result::ok).any(|entry| {
        let pid = entry.file_name().to_str().and_then(|s| s.parse().ok());
        pid.and_then(proc_stat).is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z')
    })
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Cancels `cancel` once `path` exists (polling with a deadline) and returns its number.
fn cancel_when_written(path: &Path, cancel: &CancellationToken) -> tokio::task::JoinHandle<u32> {
    let (path, cancel) = (path.to_owned(), cancel.clone());
    tokio::spawn(async move {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&path) {
                cancel.cancel();
                return text.trim().parse().expect("pid in file");
            }
            if Instant::now() >= deadline {
                cancel.cancel();
                panic!("{} was never written", path.display());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
}

/// Starts a background `sleep 30`, writes its pid to `$0` atomically, then waits.
const TREE_WRITING_PID: &str = r#"sleep 30 & echo $! > "$0.tmp" && mv "$0.tmp" "$0"; wait"#;

#[tokio::test]
async fn exit_codes_and_success_codes() {
    let ok = run(&spec("exit 0")).await;
    assert_eq!((ok.end, ok.exit_code, ok.signal), (ProcessEnd::Exited, Some(0), None));
    assert!(ok.success);

    let mut three = spec("exit 3");
    let failed = run(&three).await;
    assert_eq!(failed.exit_code, Some(3));
    assert!(!failed.success);

    three.success_codes = vec![0, 3];
    assert!(run(&three).await.success);
}

#[tokio::test]
async fn env_and_dir_are_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = spec(r#"echo "$FOO"; pwd"#);
    spec.env = vec![("FOO".into(), "bar baz".into())];
    spec.dir = dir.path().to_owned();
    let outcome = run(&spec).await;
    let real = dir.path().canonicalize().expect("canonical dir");
    assert_eq!(outcome.stdout, format!("bar baz\n{}\n", real.display()));
    assert!(outcome.success);
}

#[tokio::test]
async fn captures_stdout_and_stderr() {
    let outcome = run(&spec("echo out; echo err >&2")).await;
    assert_eq!(outcome.stdout, "out\n");
    assert_eq!(outcome.stderr, "err\n");
    assert!(!outcome.stdout_truncated && !outcome.stderr_truncated);
}

#[tokio::test]
async fn output_beyond_limit_is_truncated_while_child_completes() {
    let mut spec = spec(r"head -c 1048576 /dev/zero | tr '\0' a; echo done >&2");
    spec.output_limit = 1000;
    let outcome = run(&spec).await;
    assert!(outcome.success, "{outcome:?}");
    assert_eq!(outcome.stdout, "a".repeat(1000));
    assert!(outcome.stdout_truncated);
    assert_eq!(outcome.stderr, "done\n");
    assert!(!outcome.stderr_truncated);
}

#[test]
fn truncation_keeps_utf8_within_limit() {
    let mut capture = Capture::new(4);
    capture.push("aé€".as_bytes()); // 1 + 2 + 3 bytes: the euro sign is cut
    assert_eq!(capture.finish(), ("aé".to_owned(), true));

    let mut capture = Capture::new(4);
    capture.push(b"ab\xffcd"); // the replacement character does not fit
    assert_eq!(capture.finish(), ("ab".to_owned(), true));

    let mut capture = Capture::new(10);
    capture.push(b"a\xffb");
    assert_eq!(capture.finish(), ("a\u{fffd}b".to_owned(), false));
}

#[tokio::test]
async fn timeout_ends_the_process_tree() {
    let mut spec = spec("sleep 30 & echo $!; wait");
    spec.timeout = Some(Duration::from_millis(300));
    let process = SpawnedProcess::spawn(&spec).expect("spawn sh");
    let pgid = process.pid();
    let outcome = process.wait(&CancellationToken::new()).await;
    assert_eq!(outcome.end, ProcessEnd::TimedOut);
    assert!(!outcome.success);
    assert_eq!((outcome.exit_code, outcome.signal), (None, Some(15)));
    assert!(outcome.duration >= Duration::from_millis(300));
    let grandchild: u32 = outcome.stdout.trim().parse().expect("grandchild pid");
    eventually("the grandchild is gone", || pid_gone(grandchild)).await;
    eventually("the group is gone", || group_gone(pgid)).await;
}

#[tokio::test]
async fn child_ignoring_sigterm_is_killed_after_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut spec = spec(&format!(r#"trap "" TERM; {TREE_WRITING_PID}"#));
    spec.args.push(pid_file.display().to_string());
    spec.kill_grace = Duration::from_millis(300);
    let cancel = CancellationToken::new();
    let process = SpawnedProcess::spawn(&spec).expect("spawn sh");
    let pgid = process.pid();
    let canceler = cancel_when_written(&pid_file, &cancel);
    let outcome = process.wait(&cancel).await;
    let grandchild = canceler.await.expect("canceler task");
    assert_eq!(outcome.end, ProcessEnd::Canceled);
    assert_eq!((outcome.exit_code, outcome.signal), (None, Some(9)));
    assert!(outcome.duration >= spec.kill_grace);
    eventually("the grandchild is gone", || pid_gone(grandchild)).await;
    eventually("the group is gone", || group_gone(pgid)).await;
}

#[tokio::test]
async fn cancellation_ends_the_process_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pid_file = dir.path().join("pid");
    let mut spec = spec(TREE_WRITING_PID);
    spec.args.push(pid_file.display().to_string());
    let cancel = CancellationToken::new();
    let process = SpawnedProcess::spawn(&spec).expect("spawn sh");
    let pgid = process.pid();
    let canceler = cancel_when_written(&pid_file, &cancel);
    let outcome = process.wait(&cancel).await;
    let grandchild = canceler.await.expect("canceler task");
    assert_eq!(outcome.end, ProcessEnd::Canceled);
    assert!(!outcome.success);
    assert_eq!(outcome.signal, Some(15));
    eventually("the grandchild is gone", || pid_gone(grandchild)).await;
    eventually("the group is gone", || group_gone(pgid)).await;
}

#[tokio::test]
async fn background_grandchild_holding_pipes_does_not_block_wait() {
    let started = Instant::now();
    let process = SpawnedProcess::spawn(&spec("sleep 30 & echo hi")).expect("spawn sh");
    let pgid = process.pid();
    let outcome = process.wait(&CancellationToken::new()).await;
    assert!(started.elapsed() < Duration::from_secs(3), "{outcome:?}");
    assert_eq!(outcome.end, ProcessEnd::Exited);
    assert!(outcome.success);
    assert_eq!(outcome.stdout, "hi\n");
    // A normal exit leaves the background job alone; clean it up here.
    assert!(process_group_alive(pgid));
    terminate_process_group(pgid, Duration::from_secs(2)).await;
    eventually("the group is gone", || group_gone(pgid)).await;
}

#[tokio::test]
async fn dropping_the_process_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    for drop_wait_future in [false, true] {
        let pid_file = dir.path().join(format!("pid-{drop_wait_future}"));
        let mut spec = spec(TREE_WRITING_PID);
        spec.args.push(pid_file.display().to_string());
        let process = SpawnedProcess::spawn(&spec).expect("spawn sh");
        let pgid = process.pid();
        eventually("the pid file exists", || pid_file.exists()).await;
        if drop_wait_future {
            let cancel = CancellationToken::new();
            assert!(process.wait(&cancel).now_or_never().is_none());
        } else {
            drop(process);
        }
        eventually("the group is gone", || group_gone(pgid)).await;
    }
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let mut spec = spec("");
    spec.program = "switchyard-no-such-program".into();
    let err = run_process(&spec, &CancellationToken::new()).await.expect_err("missing program");
    assert!(err.to_string().contains("switchyard-no-such-program"), "{err}");
    let ProcessError::Spawn { program, source } = err;
    assert_eq!(program, "switchyard-no-such-program");
    assert_eq!(source.kind(), io::ErrorKind::NotFound);
}

#[tokio::test]
async fn group_helpers_refuse_dangerous_ids() {
    assert!(!process_group_alive(0));
    assert!(!process_group_alive(1));
    terminate_process_group(1, Duration::from_secs(1)).await;
}
