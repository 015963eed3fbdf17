//! The nemesis's processes: a `switchyard serve` and `switchyard-agent`s, each on a port chosen
//! once and kept, so a restarted process is found where it was; kill -9, SIGSTOP, SIGCONT and a
//! restart on the same config and data dir. Their stderr goes to a log file beside their data.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::workload::{JOBS, POOL};

/// How long a process may take to print its address after it is started.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// How many times a start is tried before the scenario gives up (a port freed by kill -9 can
/// still be held for a moment by a dying process).
const START_TRIES: usize = 5;

/// A server process of the nemesis: how to start it, and the running child if any.
pub struct Node {
    /// `coordinator` or `agent-N`.
    pub name: String,
    /// Where it listens, across restarts.
    pub address: SocketAddr,
    program: PathBuf,
    args: Vec<String>,
    folder: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// The `switchyard serve` of the nemesis: its coordinator.toml names the agents (static).
    pub fn coordinator(program: &Path, root: &Path, address: SocketAddr, agents: &[(String, SocketAddr)]) -> Self {
        let folder = root.join("coordinator");
        std::fs::create_dir_all(folder.join("data")).expect("the coordinator's folder");
        let mut config = format!("listen = \"{address}\"\ndata_dir = \"{}\"\n", folder.join("data").display());
        for (name, agent) in agents {
            config.push_str(&format!("\n[[agents]]\nname = \"{name}\"\naddress = \"{agent}\"\n"));
        }
        let file = folder.join("coordinator.toml");
        std::fs::write(&file, config).expect("write coordinator.toml");
        let args = vec!["serve".into(), "--config".into(), file.display().to_string()];
        Self { name: "coordinator".into(), address, program: program.into(), args, folder, child: None }
    }

    /// An agent of the pool with `slots` slots, its jobs, and history kept whole (the checks
    /// read every run back from it).
    pub fn agent(program: &Path, root: &Path, name: &str, address: SocketAddr, slots: u32) -> Self {
        let folder = root.join(name);
        for sub in ["jobs", "packages", "data"] {
            std::fs::create_dir_all(folder.join(sub)).expect("the agent's folders");
        }
        for (file, text) in JOBS {
            std::fs::write(folder.join("jobs").join(file), text).expect("write a job");
        }
        let config = format!(
            "name = \"{name}\"\nlisten = \"{address}\"\ndata_dir = \"data\"\njobs_dir = \"jobs\"\n\
             packages_dir = \"packages\"\nlabels = [\"{POOL}\"]\nslots = {slots}\n\
             history_max_rows = 1000000\nhistory_max_rows_per_job = 1000000\n\
             shutdown_grace = \"2s\"\nkill_grace = \"1s\"\n"
        );
        let file = folder.join("agent.toml");
        std::fs::write(&file, config).expect("write agent.toml");
        let args = vec!["--config".into(), file.display().to_string()];
        Self { name: name.into(), address, program: program.into(), args, folder, child: None }
    }

    /// `http://ADDRESS`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Starts the process and waits (bounded) until it listens, trying again a few times.
    /// Call it from the main thread: children die with the thread that spawned them.
    pub fn start(&mut self) {
        let mut last = String::new();
        for _ in 0..START_TRIES {
            match self.try_start() {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) => last = e,
            }
        }
        panic!("{} did not start after {START_TRIES} tries: {last} (log: {})", self.name, self.log().display());
    }

    /// kill -9, and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGSTOP or SIGCONT.
    pub fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
        }
    }

    fn log(&self) -> PathBuf {
        self.folder.join("stderr.log")
    }

    fn try_start(&self) -> Result<Child, String> {
        let mut command = Command::new(&self.program);
        command.args(&self.args).current_dir(&self.folder);
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        // The bench's own environment (SWITCHYARD_NEMESIS, SWITCHYARD_ADDR, ...) must not
        // reconfigure the processes under test.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SWITCHYARD_") {
                command.env_remove(key);
            }
        }
        // SAFETY: the hook only calls prctl, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
        }
        let mut child = command.spawn().map_err(|e| format!("spawning {}: {e}", self.program.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let mut log = File::options().create(true).append(true).open(self.log()).map_err(|e| e.to_string())?;
        let _ = writeln!(log, "--- started (pid {}) ---", child.id());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if line.contains("listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        match rx.recv_timeout(START_DEADLINE) {
            Ok(()) => Ok(child),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                Err(format!("no `listening on` line ({e}; {status})"))
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.signal(Signal::SIGCONT);
        self.kill9();
    }
}

/// `count` loopback addresses whose ports were free a moment ago (all held at once, so they
/// differ; servers bind with SO_REUSEADDR, so a port is usable again right after a kill -9).
pub fn free_addresses(count: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> =
        (0..count).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("a bound address")).collect()
}
