//! A [`SpawnedProcess`]: the child started as leader of its own process group, then waited for
//! while its output is captured, until it exits, times out or is canceled.

use std::future::Future;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::pin::{Pin, pin};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::Signal;
use tokio::process::{Child, ChildStderr, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use super::capture::Capture;
use super::group::{GroupGuard, terminate_process_group};
use super::spec::{ProcessEnd, ProcessError, ProcessOutcome, ProcessSpec};

/// How long output is still read after the direct child ended, when something else (typically a
/// background grandchild) keeps the pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);

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
            guard: GroupGuard::armed(pid),
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
                    self.guard.disarm();
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
                    self.guard.disarm();
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

/// How the first waiting phase ended.
enum Stop {
    Exited(io::Result<ExitStatus>),
    Ended(ProcessEnd),
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

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
