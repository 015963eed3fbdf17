//! Harness for the end-to-end tests: builds and finds the real binaries, runs them as separate
//! processes under a deadline, gives each test a scratch folder, and polls for conditions.
//!
//! Nothing here sleeps to wait for something: [`eventually`] (and [`eventually_async`]) polls
//! under a deadline, and every process is killed when it outlives [`COMMAND_DEADLINE`], so a hung
//! binary fails a test instead of hanging CI. [`AgentProcess`] runs a real `switchyard-agent`
//! and [`CoordinatorProcess`] a real `switchyard serve` for tests that talk to them over gRPC.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

mod agent;
mod coordinator;
mod http;
mod postgres;
mod server;

pub use agent::{AGENT_START_DEADLINE, AgentProcess, AgentSetup};
pub use coordinator::{COORDINATOR_START_DEADLINE, CoordinatorProcess, CoordinatorSetup};
pub use http::{HttpResponse, http_get};
pub use postgres::{PostgresServer, SKIP_POSTGRES_ENV};

/// How long one command may run before it is killed and the test fails.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(60);

/// Interval between two checks of [`eventually`] and of a running process: short enough not to
/// slow the tests down, long enough not to burn a core.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How long output is still read after a process ended: a grandchild that inherited its pipes may
/// keep them open, and the test must not wait for it.
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);

/// A `[tls]` section naming `dir/ca.pem`, `dir/STEM.pem` and `dir/STEM-key.pem` (absolute).
fn tls_section(dir: &Path, stem: &str) -> String {
    let file = |name: String| format!("{:?}", dir.join(name).to_string_lossy());
    format!(
        "\n[tls]\nca = {}\ncert = {}\nkey = {}\n",
        file("ca.pem".into()),
        file(format!("{stem}.pem")),
        file(format!("{stem}-key.pem"))
    )
}

/// The workspace root (the folder holding the root `Cargo.toml`, `examples/` and `crates/`).
pub fn workspace_root() -> PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate.parent().expect("the tests crate lives in a folder of the workspace root").to_path_buf()
}

/// A file under `examples/` of the workspace, as an absolute path.
pub fn example(relative: &str) -> PathBuf {
    workspace_root().join("examples").join(relative)
}

/// The `switchyard` binary, built once per test process with the profile of the running tests.
///
/// Panics when the build fails, with cargo's output.
pub fn switchyard_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_binary("switchyard")).clone()
}

/// The `switchyard-agent` binary, built once per test process with the profile of the running
/// tests.
///
/// Panics when the build fails, with cargo's output.
pub fn agent_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_binary("switchyard-agent")).clone()
}

/// A scratch folder for one test, deleted when dropped.
#[derive(Debug)]
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A new empty folder under the system's temporary folder.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-e2e-")
            .tempdir()
            .expect("cannot create a temporary folder for the test");
        Self { dir }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The absolute path of `relative` inside the folder (which need not exist).
    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes `text` to `relative`, creating parent folders; returns the absolute path.
    pub fn write(&self, relative: impl AsRef<Path>, text: &str) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
        }
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

/// How a finished process ended and what it printed.
#[derive(Debug, Clone)]
pub struct CommandOutput {
    /// The exit status.
    pub status: ExitStatus,
    /// The exit code; `None` when a signal killed the process.
    pub code: Option<i32>,
    /// Everything printed on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything printed on stderr (lossy UTF-8).
    pub stderr: String,
}

impl CommandOutput {
    /// Panics, showing both streams, unless the process exited with `expected`.
    #[track_caller]
    pub fn assert_exit(&self, expected: i32) -> &Self {
        assert_eq!(self.code, Some(expected), "unexpected exit code\n{self}");
        self
    }
}

impl fmt::Display for CommandOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.status)?;
        writeln!(f, "--- stdout ---\n{}", self.stdout)?;
        write!(f, "--- stderr ---\n{}", self.stderr)
    }
}

/// Runs `switchyard ARGS` from the workspace root and waits for it, at most
/// [`COMMAND_DEADLINE`].
pub fn switchyard<I, S>(args: I) -> CommandOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    spawn_switchyard(args).wait(COMMAND_DEADLINE)
}

/// Runs `switchyard ARGS` as [`switchyard`] does, off the async worker threads, for async tests.
pub async fn switchyard_async<I, S>(args: I) -> CommandOutput
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    server::blocking(move || switchyard(args)).await
}

/// A `switchyard ARGS` command run from the workspace root, for callers that change more.
pub fn switchyard_command<I, S>(args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(switchyard_bin());
    command.args(args).current_dir(workspace_root());
    command
}

/// Starts `switchyard ARGS` from the workspace root without waiting for it.
pub fn spawn_switchyard<I, S>(args: I) -> RunningProcess
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    RunningProcess::spawn(&mut switchyard_command(args))
}

/// A process started by a test, its output collected as it comes; killed when dropped while it
/// still runs, so a failing test leaves nothing behind.
#[derive(Debug)]
pub struct RunningProcess {
    description: String,
    child: Child,
    stdout: CapturedStream,
    stderr: CapturedStream,
}

impl RunningProcess {
    /// Starts `command` with stdin closed and stdout and stderr captured.
    pub fn spawn(command: &mut Command) -> Self {
        let description = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {description}: {e}"));
        let stdout = CapturedStream::start(child.stdout.take().expect("stdout is piped"));
        let stderr = CapturedStream::start(child.stderr.take().expect("stderr is piped"));
        Self { description, child, stdout, stderr }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` to the process (not to its group).
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).expect("process ids fit in i32");
        kill(Pid::from_raw(pid), signal)
            .unwrap_or_else(|e| panic!("cannot send {signal} to {}: {e}", self.description));
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does to the foreground process.
    pub fn interrupt(&self) {
        self.signal(Signal::SIGINT);
    }

    /// What the process printed on stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.snapshot()
    }

    /// How the process ended, or `None` while it still runs; never waits.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap_or_else(|e| panic!("cannot check on {}: {e}", self.description))
    }

    /// Waits for the process to end, at most `deadline`; past it, kills the process and panics
    /// with what it printed.
    pub fn wait(mut self, deadline: Duration) -> CommandOutput {
        let started = Instant::now();
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() < deadline => thread::sleep(POLL_INTERVAL),
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "{} did not finish within {deadline:?}; killed it\n--- stdout ---\n{}\n--- stderr ---\n{}",
                        self.description,
                        self.stdout.snapshot(),
                        self.stderr.snapshot()
                    );
                }
                Err(e) => panic!("cannot wait for {}: {e}", self.description),
            }
        };
        let drain_until = Instant::now() + OUTPUT_DRAIN;
        CommandOutput {
            status,
            code: status.code(),
            stdout: self.stdout.finish(drain_until),
            stderr: self.stderr.finish(drain_until),
        }
    }
}

impl Drop for RunningProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `probe` every few milliseconds until it returns `Some`, and returns that; panics naming
/// `what` when `deadline` passes first.
#[track_caller]
pub fn eventually<T>(deadline: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if started.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Polls the async `probe` every few milliseconds until it returns `Some`, and returns that;
/// panics naming `what` when `deadline` passes first. A probe that hangs is cut off at the
/// deadline too.
#[track_caller]
pub fn eventually_async<T, F, Fut>(deadline: Duration, what: &str, mut probe: F) -> impl Future<Output = T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let caller = std::panic::Location::caller();
    let what = what.to_string();
    async move {
        let polling = async {
            loop {
                if let Some(value) = probe().await {
                    return value;
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        };
        match tokio::time::timeout(deadline, polling).await {
            Ok(value) => value,
            Err(_) => panic!("timed out after {deadline:?} waiting for {what} (at {caller})"),
        }
    }
}

/// Awaits `future`, at most `deadline`; past it, panics naming `what`.
#[track_caller]
pub fn within<T>(deadline: Duration, what: &str, future: impl Future<Output = T>) -> impl Future<Output = T> {
    let caller = std::panic::Location::caller();
    let what = what.to_string();
    async move {
        match tokio::time::timeout(deadline, future).await {
            Ok(value) => value,
            Err(_) => panic!("timed out after {deadline:?} waiting for {what} (at {caller})"),
        }
    }
}

/// Whether process `pid` has ended: it no longer exists, or it is a zombie nobody reaped yet
/// (an orphan in a container whose init does not reap still has a process table entry).
pub fn process_is_gone(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else { return true };
    if kill(Pid::from_raw(raw), None) == Err(Errno::ESRCH) {
        return true;
    }
    process_state(pid) == Some('Z')
}

/// The state letter of `/proc/PID/stat` (R, S, D, Z, ...), or `None` when it cannot be read.
fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself hold spaces or parentheses.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.trim_start().chars().next()
}

/// Builds `bin` with the profile of the running test executable into the target folder it lives
/// in, and returns the binary's path.
fn build_binary(bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    // The test executable is TARGET/PROFILE/deps/e2e-HASH; binaries are TARGET/PROFILE/NAME.
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in a cargo target folder", exe.display()))
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("a profile folder lives in a target folder");
    let profile = profile_dir.file_name().and_then(OsStr::to_str).expect("the profile folder name is UTF-8");
    let profile_args: &[&str] = match profile {
        "debug" => &[],
        "release" => &["--release"],
        other => &["--profile", other],
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = workspace_root();
    let output = Command::new(&cargo)
        .args(["build", "--bin", bin, "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .args(profile_args)
        .current_dir(&root)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{} build --bin {bin}`: {e}", cargo.to_string_lossy()));
    assert!(
        output.status.success(),
        "`{} build --bin {bin}` failed ({}):\n{}",
        cargo.to_string_lossy(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir.join(format!("{bin}{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "`cargo build --bin {bin}` succeeded but {} does not exist", path.display());
    path
}

/// One output pipe read on its own thread into a buffer that can be looked at any time.
#[derive(Debug)]
struct CapturedStream {
    buffer: Arc<Mutex<Vec<u8>>>,
    done: Receiver<()>,
}

impl CapturedStream {
    fn start(mut pipe: impl Read + Send + 'static) -> Self {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, done) = mpsc::channel();
        let sink = Arc::clone(&buffer);
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(&chunk[..n]);
            }
            let _ = done_tx.send(());
        });
        Self { buffer, done }
    }

    fn snapshot(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
    }

    /// Waits until the pipe is closed or `until` passes, then returns everything read.
    fn finish(&self, until: Instant) -> String {
        let _ = self.done.recv_timeout(until.saturating_duration_since(Instant::now()));
        self.snapshot()
    }
}
