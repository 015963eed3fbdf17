//! What the network scenarios share: the product's binaries (built when run through cargo),
//! child processes that print the address they listen on, and a cluster of agent processes
//! driven by a coordinator hosted in this process.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use switchyard_coordinator::config::{CoordinatorConfig, StaticAgent};
use switchyard_coordinator::executions::StartExecution;
use switchyard_coordinator::registry::AgentState;
use switchyard_coordinator::report::Report;
use switchyard_coordinator::server::{Coordinator, start};
use switchyard_package::engine::ChildStatus;

/// The label of the bench agents, and so the `pool` of the bench packages.
pub const POOL: &str = "bench";

/// A job that runs a child package of one zero-length `sleep` task: in process on the agent.
pub const JOB_PACKAGE: &str = "noop_package";

/// A job that runs `true`: one process per run.
pub const JOB_COMMAND: &str = "noop_command";

/// A job whose child package sleeps for 400 ms ([`WORK_MS`]): its runs are still running for a
/// while after they start, so an agent holds some when it fails.
pub const JOB_WORK: &str = "work_package";

/// How long a run of [`JOB_WORK`] sleeps, in ms.
pub const WORK_MS: u64 = 400;

/// A job whose child package sleeps for an hour: its runs hold their slots, so only the start
/// path is measured.
pub const JOB_HOLD: &str = "hold_package";

const JOBS: [(&str, &str); 4] = [
    (
        "noop_package.toml",
        "name = \"noop_package\"\nconcurrency = \"allow\"\nmax_running = 1000000\n\n[[steps]]\nname = \"noop\"\npackage = \"noop.toml\"\n",
    ),
    (
        "noop_command.toml",
        "name = \"noop_command\"\nconcurrency = \"allow\"\nmax_running = 1000000\n\n[[steps]]\nname = \"noop\"\ncommand = [\"true\"]\n",
    ),
    (
        "hold_package.toml",
        "name = \"hold_package\"\nconcurrency = \"allow\"\nmax_running = 1000000\n\n[[steps]]\nname = \"hold\"\npackage = \"hold.toml\"\n",
    ),
    (
        "work_package.toml",
        "name = \"work_package\"\nconcurrency = \"allow\"\nmax_running = 1000000\n\n[[steps]]\nname = \"work\"\npackage = \"work.toml\"\n",
    ),
];

const PACKAGES: [(&str, &str); 3] = [
    ("noop.toml", "[package]\nname = \"noop\"\n\n[[tasks]]\nname = \"nothing\"\nkind = \"sleep\"\nduration = \"0s\"\n"),
    ("hold.toml", "[package]\nname = \"hold\"\n\n[[tasks]]\nname = \"hold\"\nkind = \"sleep\"\nduration = \"1h\"\n"),
    ("work.toml", "[package]\nname = \"work\"\n\n[[tasks]]\nname = \"work\"\nkind = \"sleep\"\nduration = \"400ms\"\n"),
];

/// How long a child process may take to print its address.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The path of one of the workspace's binaries in this binary's target dir. Run through cargo
/// (`CARGO` is set), it is built first, so it is never older than the sources; otherwise it must
/// already be there.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the bench binary's path");
    let dir = exe.parent().expect("the bench binary's folder").to_path_buf();
    let path = dir.join(name);
    if let Ok(cargo) = std::env::var("CARGO") {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut build = Command::new(cargo);
        build.current_dir(&workspace).args(["build", "--quiet", "--bin", name]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        eprintln!("building {name} (cargo build --bin {name}) ...");
        let status = build.status().expect("running cargo build");
        assert!(status.success(), "cargo build --bin {name} failed");
    }
    assert!(path.exists(), "{} is missing: run `cargo build --release --bin {name}`", path.display());
    path
}

/// A child process that printed `... listening on ADDR` on stderr; killed when dropped, and
/// killed by the kernel if this process dies first.
pub struct Process {
    child: Child,
    pub address: SocketAddr,
    pub pid: u32,
}

impl Process {
    /// Starts `command` and waits (bounded) for its `listening on ADDR` line. The rest of its
    /// stderr is drained, and lines holding WARN or ERROR are shown with `label`.
    pub fn spawn(mut command: Command, label: &str) -> Self {
        command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        // SAFETY: the hook only calls prctl, which is async-signal-safe. The parent-death signal
        // fires when the spawning thread ends: the scenarios spawn from the main thread.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {label}: {e}"));
        let pid = child.id();
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        let label = label.to_string();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
                } else if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("  [{label}] {line}");
                }
            }
        });
        let address = rx.recv_timeout(START_DEADLINE).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("a child process did not print its address within {} s", START_DEADLINE.as_secs())
        });
        let address = address.parse().unwrap_or_else(|e| panic!("bad address {address:?}: {e}"));
        Self { child, address, pid }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The resident memory of a process, from /proc/PID/status, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts an agent process named `name` in `home` (its jobs and packages beside its data).
pub fn spawn_agent(agent_binary: &Path, home: &Path, name: &str, slots: u32) -> Process {
    for dir in ["jobs", "packages", "data"] {
        std::fs::create_dir_all(home.join(dir)).expect("agent folders");
    }
    for (file, text) in JOBS {
        std::fs::write(home.join("jobs").join(file), text).expect("write a job");
    }
    for (file, text) in PACKAGES {
        std::fs::write(home.join("packages").join(file), text).expect("write a package");
    }
    let mut command = Command::new(agent_binary);
    command
        .current_dir(home)
        .args(["--name", name, "--listen", "127.0.0.1:0", "--data-dir", "data", "--labels", POOL])
        .args(["--slots", &slots.to_string()]);
    Process::spawn(command, name)
}

/// Agent processes and a coordinator in this process that knows them.
pub struct Cluster {
    pub coordinator: Coordinator,
    pub agents: Vec<Process>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `agents` agent processes with `slots` slots each, and the coordinator; waits until
    /// it sees them all up. Must be called within a tokio runtime.
    pub async fn start(agents: usize, slots: u32) -> Self {
        Self::start_with_binary(&binary("switchyard-agent"), agents, slots).await
    }

    /// [`Cluster::start`] with an agent binary found (and built) beforehand: scenarios that start
    /// a cluster per run call [`binary`] once, so cargo runs once.
    pub async fn start_with_binary(agent_binary: &Path, agents: usize, slots: u32) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut processes = Vec::new();
        let mut statics = Vec::new();
        for i in 0..agents {
            let name = format!("agent-{i}");
            let process = spawn_agent(agent_binary, &dir.path().join(&name), &name, slots);
            statics.push(StaticAgent { name, address: process.address.to_string(), labels: None });
            processes.push(process);
        }
        let config = CoordinatorConfig {
            data_dir: dir.path().join("coordinator"),
            agents: statics,
            ..CoordinatorConfig::default()
        };
        let shutdown = CancellationToken::new();
        let coordinator = start(&config, shutdown.clone()).await.expect("the coordinator starts");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let changed = coordinator.registry.wait_changed();
            let all = coordinator.registry.agents();
            if all.iter().all(|a| a.state == AgentState::Up && a.slots == slots) {
                break;
            }
            assert!(Instant::now() < deadline, "the agents did not come up within 15 s");
            let _ = tokio::time::timeout(Duration::from_millis(50), changed).await;
        }
        Self { coordinator, agents: processes, shutdown, _dir: dir }
    }

    /// Starts `package` (its TOML text) with `max_concurrent`; returns the execution id.
    pub async fn start_package(&self, package: String, max_concurrent: i64) -> String {
        let request = StartExecution {
            package: "bench.toml".into(),
            files: vec![("bench.toml".into(), package)],
            caller: "bench".into(),
            max_concurrent: Some(max_concurrent),
            ..StartExecution::default()
        };
        self.coordinator.executions.start(request).await.expect("the execution starts").execution_id
    }

    /// Waits (bounded) until the report holds `children` child runs, and with `ended` until none
    /// still runs.
    pub async fn wait_for_children(&self, id: &str, children: usize, ended: bool, deadline: Duration) -> Report {
        let deadline = Instant::now() + deadline;
        loop {
            let report = self.coordinator.executions.report(id).await.expect("the report");
            let done = report.children.len() >= children
                && (!ended || report.children.iter().all(|c| c.status != ChildStatus::Running));
            if done || Instant::now() > deadline {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// CPU seconds a process used so far, its reaped children included (`/proc/PID/stat`; `self` for
/// this process).
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17: indexes 11-14 here. USER_HZ is 100 on Linux.
    fields.get(11..15).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum::<f64>() / 100.0)
}

/// Write system calls and bytes written so far by a process (`/proc/PID/io`: syscw, wchar).
pub fn writes(pid: &str) -> (f64, f64) {
    let Ok(io) = std::fs::read_to_string(format!("/proc/{pid}/io")) else { return (0.0, 0.0) };
    let field = |name: &str| {
        io.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse::<f64>().ok()).unwrap_or(0.0)
    };
    (field("syscw:"), field("wchar:"))
}

/// Seconds from the first task's start to the last task's end (ms precision).
pub fn start_window_s(report: &switchyard_coordinator::report::Report) -> f64 {
    let first = report.tasks.iter().filter_map(|t| t.started_at).min().expect("tasks started");
    let last = report
        .tasks
        .iter()
        .filter_map(|t| Some(t.started_at? + chrono::TimeDelta::milliseconds(t.duration_ms? as i64)))
        .max()
        .expect("tasks ended");
    ((last - first).num_microseconds().unwrap_or(0) as f64 / 1e6).max(1e-3)
}
