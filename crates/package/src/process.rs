//! Child processes in their own process group: spawn, capture output, time out, cancel.
//!
//! This is the runner behind command-execution steps. Every child leads a new process group
//! (its pgid equals its pid), so a timeout or a cancellation ends the whole tree the job started,
//! not just the direct child. The child also gets `PR_SET_PDEATHSIG(SIGKILL)`, so it dies with the
//! process that spawned it. Linux delivers that signal when the spawning *thread* exits, so spawn
//! from a long-lived thread (an async worker), never from inside `spawn_blocking`.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::pin::{Pin, pin};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

/// How long output is still read after the direct child ended, when something else (typically a
/// background grandchild) keeps the pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);
/// Interval between checks whether a terminated process group is gone.
const GROUP_POLL: Duration = Duration::from_millis(10);
/// Size of one read from a child's pipe.
const READ_CHUNK: usize = 8192;

/// What to run and under which limits.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The program (argv\[0\]); a bare name is looked up in `PATH` like [`std::process::Command`].
    pub program: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Variables added to (or overriding) the inherited environment.
    pub env: Vec<(String, String)>,
    /// Working directory of the child.
    pub dir: PathBuf,
    /// Wall-clock limit counted from spawn; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Exit codes that count as success (callers usually pass `[0]`).
    pub success_codes: Vec<i32>,
    /// Maximum number of bytes kept of stdout and, separately, of stderr.
    pub output_limit: usize,
    /// Time between SIGTERM and SIGKILL when the process group is ended.
    pub kill_grace: Duration,
}

/// Why the process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessEnd {
    /// The direct child exited (or died of a signal) on its own.
    Exited,
    /// The timeout elapsed and the process group was ended.
    TimedOut,
    /// The cancellation token fired and the process group was ended.
    Canceled,
}

/// The result of a finished process.
#[derive(Debug, Clone)]
pub struct ProcessOutcome {
    /// Why the process ended.
    pub end: ProcessEnd,
    /// The exit code; `None` when the child was killed by a signal.
    pub exit_code: Option<i32>,
    /// The signal that killed the child, if any.
    pub signal: Option<i32>,
    /// `end == Exited` and the exit code is one of the success codes.
    pub success: bool,
    /// Captured stdout, lossy UTF-8, at most `output_limit` bytes (the first ones).
    pub stdout: String,
    /// Captured stderr, lossy UTF-8, at most `output_limit` bytes (the first ones).
    pub stderr: String,
    /// Stdout produced more than was kept.
    pub stdout_truncated: bool,
    /// Stderr produced more than was kept.
    pub stderr_truncated: bool,
    /// Monotonic time from spawn until the child was reaped.
    pub duration: Duration,
}

/// Errors starting a process.
#[derive(thiserror::Error, Debug)]
pub enum ProcessError {
    /// The program could not be started (not found, not executable, bad directory...).
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program as given in the spec.
        program: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// A running child process, leader of its own process group.
///
/// Dropping it (or the future returned by [`SpawnedProcess::wait`]) before the child ended sends
/// SIGKILL to the whole process group.
#[derive(Debug)]
pub struct SpawnedProcess {
    child: Child,
    pid: u32,
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    started: Instant,
    deadline: Option<tokio::time::Instant>,
    success_codes: Vec<i32>,
    output_limit: usize,
    kill_grace: Duration,
    guard: GroupGuard,
}

impl SpawnedProcess {
    /// Starts the process described by `spec` in a new process group, stdin from `/dev/null`,
    /// stdout and stderr piped. The timeout starts counting now.
    pub fn spawn(spec: &ProcessSpec) -> Result<SpawnedProcess, ProcessError> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let parent = std::process::id();
        // SAFETY: runs in the forked child before exec; it only makes async-signal-safe system
        // calls (prctl, getppid) and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
                // The parent may have died between fork and prctl; then nobody would kill us.
                if std::os::unix::process::parent_id() != parent {
                    return Err(io::Error::from_raw_os_error(Errno::ESRCH as i32));
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn { program: spec.program.clone(), source })?;
        let started = Instant::now();
        let pid = child.id().expect("a freshly spawned child has not been reaped");
        let deadline = spec.timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        Ok(SpawnedProcess {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
            child,
            pid,
            started,
            deadline,
            success_codes: spec.success_codes.clone(),
            output_limit: spec.output_limit,
            kill_grace: spec.kill_grace,
            guard: GroupGuard { pgid: pid, armed: true },
        })
    }

    /// The child's pid, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the child while capturing its output; ends the process group on timeout or
    /// when `cancel` fires.
    ///
    /// After a normal exit of the direct child, output is read for at most ~100 ms more (until
    /// EOF otherwise), and remaining group members (background grandchildren) are left alone;
    /// the pipes are closed, so they get SIGPIPE if they write to them later.
    pub async fn wait(mut self, cancel: &CancellationToken) -> ProcessOutcome {
        let mut out = Capture::new(self.output_limit);
        let mut err = Capture::new(self.output_limit);
        let (stdout, stderr) = (self.stdout.take(), self.stderr.take());
        let (pid, grace, deadline) = (self.pid, self.kill_grace, self.deadline);
        let (end, status, duration) = {
            let mut drain = pin!(async {
                tokio::join!(out.read_from(stdout), err.read_from(stderr));
            });
            let mut drained = false;
            let child = &mut self.child;
            let first = drive(
                async {
                    tokio::select! {
                        biased;
                        status = child.wait() => Stop::Exited(status),
                        () = cancel.cancelled() => Stop::Ended(ProcessEnd::Canceled),
                        () = sleep_until_opt(deadline) => Stop::Ended(ProcessEnd::TimedOut),
                    }
                },
                drain.as_mut(),
                &mut drained,
            )
            .await;
            let (end, status) = match first {
                Stop::Exited(Ok(status)) => {
                    // A normal exit: leave any remaining group members alone.
                    self.guard.armed = false;
                    (ProcessEnd::Exited, Some(status))
                }
                Stop::Exited(Err(e)) => {
                    tracing::warn!(pid, error = %e, "waiting for child process failed");
                    (ProcessEnd::Exited, None)
                }
                Stop::Ended(end) => {
                    tracing::debug!(pid, ?end, "ending process group");
                    // Reap the leader concurrently, or its zombie would keep the group alive.
                    let both = async { tokio::join!(child.wait(), terminate_process_group(pid, grace)) };
                    let (status, ()) = drive(both, drain.as_mut(), &mut drained).await;
                    self.guard.armed = false;
                    let status = status.map_err(|e| tracing::warn!(pid, error = %e, "reaping child failed")).ok();
                    (end, status)
                }
            };
            let duration = self.started.elapsed();
            if !drained {
                // Ignoring the timeout is the point: stop reading after a bounded drain.
                let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, drain.as_mut()).await;
            }
            (end, status, duration)
        };
        let exit_code = status.and_then(|s| s.code());
        let signal = status.and_then(|s| s.signal());
        let success = end == ProcessEnd::Exited && exit_code.is_some_and(|c| self.success_codes.contains(&c));
        let (stdout, stdout_truncated) = out.finish();
        let (stderr, stderr_truncated) = err.finish();
        ProcessOutcome { end, exit_code, signal, success, stdout, stderr, stdout_truncated, stderr_truncated, duration }
    }
}

/// Spawns the process and waits for it (see [`SpawnedProcess::wait`]).
pub async fn run_process(spec: &ProcessSpec, cancel: &CancellationToken) -> Result<ProcessOutcome, ProcessError> {
    Ok(SpawnedProcess::spawn(spec)?.wait(cancel).await)
}

/// Sends SIGTERM to process group `pgid`, waits up to `grace` for it to be gone (polling every
/// 10 ms), then sends SIGKILL if any member remains.
///
/// An unreaped zombie member counts as alive, so the caller should reap its own child
/// concurrently; orphans left to an init that reaps lazily can make this wait until SIGKILL. Group ids 0 and 1 (own group / every process) are refused and do nothing.
pub async fn terminate_process_group(pgid: u32, grace: Duration) {
    match signal_group(pgid, Signal::SIGTERM) {
        Ok(()) => {}
        Err(Errno::ESRCH | Errno::EINVAL) => return,
        Err(e) => tracing::warn!(pgid, error = %e, "cannot send SIGTERM to process group"),
    }
    let start = tokio::time::Instant::now();
    let deadline = start.checked_add(grace).unwrap_or(start + Duration::from_secs(86400));
    loop {
        if !process_group_alive(pgid) {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep(GROUP_POLL.min(deadline - now)).await;
    }
    tracing::debug!(pgid, "process group outlived SIGTERM, sending SIGKILL");
    if let Err(e) = signal_group(pgid, Signal::SIGKILL)
        && e != Errno::ESRCH
    {
        tracing::warn!(pgid, error = %e, "cannot send SIGKILL to process group");
    }
}

/// Whether process group `pgid` still has a running member. `kill(-pgid, 0)` answers first;
/// when it says members exist, /proc decides whether any is more than a zombie waiting for
/// init to reap it (some container inits reap late, and a zombie runs nothing). Always false
/// for group ids 0 and 1.
pub fn process_group_alive(pgid: u32) -> bool {
    matches!(signal_group(pgid, None), Ok(()) | Err(Errno::EPERM)) && group_has_running_member(pgid)
}

/// Scans /proc for a process of group `pgid` that is not a zombie; true when /proc is unreadable.
fn group_has_running_member(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return true };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let group = fields.nth(1).and_then(|g| g.parse::<u32>().ok());
        if group == Some(pgid) && state != Some("Z") {
            return true;
        }
    }
    false
}

/// Sends `signal` to the group, refusing the dangerous ids 0 (own group) and 1 (everything).
fn signal_group(pgid: u32, signal: impl Into<Option<Signal>>) -> Result<(), Errno> {
    match i32::try_from(pgid) {
        Ok(raw) if raw > 1 => killpg(Pid::from_raw(raw), signal),
        _ => Err(Errno::EINVAL),
    }
}

/// How the first waiting phase ended.
enum Stop {
    Exited(io::Result<ExitStatus>),
    Ended(ProcessEnd),
}

/// SIGKILLs the process group on drop while armed.
#[derive(Debug)]
struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = signal_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Polls `fut` to completion while also driving the output `drain` (until it completes).
async fn drive<F: Future, D: Future<Output = ()>>(fut: F, mut drain: Pin<&mut D>, drained: &mut bool) -> F::Output {
    let mut fut = pin!(fut);
    loop {
        tokio::select! {
            biased;
            output = &mut fut => return output,
            () = drain.as_mut(), if !*drained => *drained = true,
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Output of one stream: the first `limit` bytes, the rest read and discarded.
struct Capture {
    buf: Vec<u8>,
    limit: usize,
    truncated: bool,
}

impl Capture {
    fn new(limit: usize) -> Capture {
        Capture { buf: Vec::new(), limit, truncated: false }
    }

    async fn read_from<R: AsyncRead + Unpin>(&mut self, reader: Option<R>) {
        let Some(mut reader) = reader else { return };
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => return,
                Ok(n) => self.push(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(error = %e, "reading child output failed");
                    return;
                }
            }
        }
    }

    fn push(&mut self, data: &[u8]) {
        let take = self.limit.saturating_sub(self.buf.len()).min(data.len());
        self.buf.extend_from_slice(&data[..take]);
        self.truncated |= take < data.len();
    }

    /// Lossy UTF-8 of at most `limit` bytes, and whether anything was dropped.
    fn finish(mut self) -> (String, bool) {
        if self.truncated {
            // Do not turn a character cut in half by the limit into a replacement character.
            let cut = incomplete_tail(&self.buf);
            self.buf.truncate(self.buf.len() - cut);
        }
        let mut text = String::with_capacity(self.buf.len());
        for chunk in self.buf.utf8_chunks() {
            let valid = chunk.valid();
            if text.len() + valid.len() > self.limit {
                let mut end = self.limit - text.len();
                while !valid.is_char_boundary(end) {
                    end -= 1;
                }
                text.push_str(&valid[..end]);
                return (text, true);
            }
            text.push_str(valid);
            if !chunk.invalid().is_empty() {
                if text.len() + char::REPLACEMENT_CHARACTER.len_utf8() > self.limit {
                    return (text, true);
                }
                text.push(char::REPLACEMENT_CHARACTER);
            }
        }
        (text, self.truncated)
    }
}

/// Length of an incomplete UTF-8 sequence at the end of `buf` (0 if none).
fn incomplete_tail(buf: &[u8]) -> usize {
    for back in 1..=buf.len().min(4) {
        let byte = buf[buf.len() - back];
        if byte & 0xC0 != 0x80 {
            let needed = match byte {
                0xF0.. => 4,
                0xE0.. => 3,
                0xC0.. => 2,
                _ => 1,
            };
            return if needed > back { back } else { 0 };
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use nix::sys::signal::kill;
    use std::path::Path;

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
}
