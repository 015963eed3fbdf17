//! The lifecycle both server processes of the harness share (an agent, a coordinator): SIGTERM,
//! waiting for the exit, kill -9, a restart in place, and a graceful stop when dropped.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::{COMMAND_DEADLINE, CommandOutput, POLL_INTERVAL, RunningProcess};

/// How long a dropped server gets to shut down on SIGTERM (an agent ends its runs' process
/// trees) before it is killed: a failing test should not leave job processes behind.
const DROP_GRACE: Duration = Duration::from_secs(5);

/// A started server process (or none, between an exit and a restart).
#[derive(Debug)]
pub struct ServerProcess {
    /// "agent" or "coordinator", for messages.
    what: &'static str,
    process: Option<RunningProcess>,
}

impl ServerProcess {
    /// Owns a started process.
    pub fn new(what: &'static str, process: RunningProcess) -> Self {
        Self { what, process: Some(process) }
    }

    /// Its process id; panics when it is not running.
    pub fn pid(&self) -> u32 {
        self.running().pid()
    }

    /// What it wrote to stderr so far (empty once it exited and was reaped).
    pub fn stderr_so_far(&self) -> String {
        self.process.as_ref().map(RunningProcess::stderr_so_far).unwrap_or_default()
    }

    /// Sends SIGTERM (a graceful shutdown) without waiting.
    pub fn send_sigterm(&self) {
        self.running().signal(Signal::SIGTERM);
    }

    /// Waits for it to exit, at most `deadline` (then kills it and panics).
    pub async fn wait_for_exit(&mut self, deadline: Duration) -> CommandOutput {
        let process = self.process.take().unwrap_or_else(|| panic!("the {} was started", self.what));
        blocking(move || process.wait(deadline)).await
    }

    /// SIGKILL (a crash), and waits for the process to be gone.
    pub async fn kill9(&mut self) -> CommandOutput {
        self.running().signal(Signal::SIGKILL);
        self.wait_for_exit(COMMAND_DEADLINE).await
    }

    /// Takes the process started in its place (a restart, after [`ServerProcess::assert_stopped`]).
    pub fn replace(&mut self, process: RunningProcess) {
        self.process = Some(process);
    }

    /// Panics unless it was stopped (kill9 or terminate), and forgets the exited process: what a
    /// restart requires first.
    pub fn assert_stopped(&mut self) {
        if let Some(process) = self.process.as_mut() {
            assert!(
                process.exit_status().is_some(),
                "stop the {} (kill9 or terminate) before restarting it",
                self.what
            );
        }
        self.process = None;
    }

    fn running(&self) -> &RunningProcess {
        self.process.as_ref().unwrap_or_else(|| panic!("the {} is not running; restart it first", self.what))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let Some(process) = self.process.as_mut() else { return };
        if process.exit_status().is_some() {
            return;
        }
        process.signal(Signal::SIGTERM);
        let started = Instant::now();
        while process.exit_status().is_none() && started.elapsed() < DROP_GRACE {
            thread::sleep(POLL_INTERVAL);
        }
        // Dropping the RunningProcess kills what is left.
    }
}

/// Runs blocking `work` off the async worker threads; a panic in it continues in the caller.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}
