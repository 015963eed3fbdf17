//! What to run and under which limits ([`ProcessSpec`]), how it ended ([`ProcessOutcome`]), and
//! why it could not start ([`ProcessError`]).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

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
