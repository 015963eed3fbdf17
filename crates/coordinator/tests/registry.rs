//! The registry against real `switchyard-agent` processes: liveness (a crash seen at once, a
//! hang after `down_after`), labels and slots from GetLoad, placement over live load, outcomes
//! from the WatchRuns stream, drain.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use switchyard_coordinator::placement::PlacementStrategy;
use switchyard_coordinator::registry::{
    AgentSource, AgentState, PlaceError, Registry, RegistryError, RegistrySettings, Reservation, WaitOutcome,
};
use switchyard_proto::{RunStatus, StartJobRequest};
use tokio_util::sync::CancellationToken;

/// How long a condition that should come true may take on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(5);
const HEARTBEAT: Duration = Duration::from_millis(100);

/// The `switchyard-agent` binary, built once per test process beside this test's executable.
fn agent_bin() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let exe = std::env::current_exe().expect("the test executable has a path");
            // TARGET/PROFILE/deps/registry-HASH: the binary goes to TARGET/PROFILE.
            let profile_dir = exe.parent().and_then(Path::parent).expect("a cargo target folder").to_path_buf();
            let target_dir = profile_dir.parent().expect("a profile folder lives in a target folder");
            let profile = profile_dir.file_name().and_then(OsStr::to_str).expect("a UTF-8 profile name");
            let profile_args: &[&str] = match profile {
                "debug" => &[],
                "release" => &["--release"],
                other => &["--profile", other],
            };
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let output = Command::new(env!("CARGO"))
                .args(["build", "--bin", "switchyard-agent", "--manifest-path"])
                .arg(workspace.join("Cargo.toml"))
                .arg("--target-dir")
                .arg(target_dir)
                .args(profile_args)
                .stdin(Stdio::null())
                .output()
                .expect("cannot run cargo build");
            assert!(
                output.status.success(),
                "building switchyard-agent failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let bin = profile_dir.join("switchyard-agent");
            assert!(bin.is_file(), "{} does not exist after the build", bin.display());
            bin
        })
        .clone()
}

/// A real agent process with its own folder; killed (after a SIGCONT) when dropped.
struct Agent {
    name: String,
    child: Child,
    folder: tempfile::TempDir,
    address: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Agent {
    /// Starts agent `name` with `slots` and `labels`, and jobs `quick` (succeeds at once) and
    /// `gated` (runs until [`Agent::open_gate`]).
    async fn start(name: &str, slots: u32, labels: &[&str]) -> Agent {
        let folder = tempfile::Builder::new().prefix("switchyard-registry-").tempdir().expect("temp dir");
        let jobs = folder.path().join("jobs");
        std::fs::create_dir_all(&jobs).expect("jobs dir");
        std::fs::create_dir_all(folder.path().join("packages")).expect("packages dir");
        let quick = "name = \"quick\"\nconcurrency = \"allow\"\nmax_running = 100\n\n\
                     [[steps]]\nname = \"true\"\ncommand = [\"true\"]\n";
        std::fs::write(jobs.join("quick.toml"), quick).expect("job");
        let gate = folder.path().join("gate");
        let gated = format!(
            "name = \"gated\"\nconcurrency = \"allow\"\nmax_running = 100\n\n[[steps]]\nname = \"wait\"\n\
             command = [\"sh\", \"-c\", \"while [ ! -f '{}' ]; do sleep 0.02; done\"]\n",
            gate.display()
        );
        std::fs::write(jobs.join("gated.toml"), gated).expect("job");
        let labels: Vec<String> = labels.iter().map(|l| format!("\"{l}\"")).collect();
        let config = format!(
            "name = \"{name}\"\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\njobs_dir = \"jobs\"\n\
             packages_dir = \"packages\"\nslots = {slots}\nlabels = [{}]\n\
             shutdown_grace = \"1s\"\nkill_grace = \"1s\"\n",
            labels.join(", ")
        );
        let config_path = folder.path().join("agent.toml");
        std::fs::write(&config_path, config).expect("agent.toml");

        let bin = tokio::task::spawn_blocking(agent_bin).await.expect("build");
        let mut command = Command::new(bin);
        command.arg("--config").arg(&config_path).current_dir(folder.path());
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().to_uppercase().starts_with("SWITCHYARD_AGENT_") {
                command.env_remove(key);
            }
        }
        let mut child = command.spawn().expect("start switchyard-agent");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("stderr buffer").push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        let started = Instant::now();
        let address = loop {
            let text = stderr.lock().expect("stderr buffer").clone();
            let address = text.lines().find_map(|line| {
                let (_, rest) = line.split_once("listening on ")?;
                rest.split_whitespace().next()?.parse::<SocketAddr>().ok()
            });
            if let Some(address) = address {
                break address;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("agent {name} exited ({status}) before listening:\n{text}");
            }
            assert!(started.elapsed() < WAIT, "agent {name} did not listen within {WAIT:?}:\n{text}");
            tokio::time::sleep(POLL).await;
        };
        Agent { name: name.to_string(), child, folder, address, stderr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal the agent");
    }

    fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        self.child.wait().expect("reap the agent");
    }

    fn open_gate(&self) {
        std::fs::write(self.folder.path().join("gate"), "").expect("open the gate");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGCONT);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "--- agent {} stderr ---\n{}",
                self.name,
                self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
            );
        }
    }
}

fn settings(down_after: Duration, strategy: PlacementStrategy) -> RegistrySettings {
    RegistrySettings { heartbeat_interval: HEARTBEAT, down_after, strategy, start_timeout: Duration::from_secs(5) }
}

/// A registry whose monitors end with the test.
struct Fixture {
    registry: Registry,
    shutdown: CancellationToken,
}

impl Fixture {
    fn new(settings: RegistrySettings) -> Self {
        let shutdown = CancellationToken::new();
        Self { registry: Registry::new(settings, shutdown.clone()), shutdown }
    }

    fn add(&self, agent: &Agent) {
        self.registry.add_agent(&agent.name, &agent.url(), None, AgentSource::Config).expect("add agent");
    }

    /// Waits until `agent` is in `state`; returns how long that took.
    async fn wait_for_state(&self, agent: &str, state: AgentState, deadline: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let snapshot = self.registry.agent(agent).expect("a known agent");
            if snapshot.state == state {
                return started.elapsed();
            }
            assert!(started.elapsed() < deadline, "agent {agent} is not {state} after {deadline:?}: {snapshot:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts `job` on the reservation's agent and confirms the reservation; returns the run id.
    async fn start(&self, reservation: Reservation, job: &str) -> String {
        let mut client = self.registry.client(reservation.agent()).expect("a client");
        let request = StartJobRequest {
            job: job.to_string(),
            epoch: reservation.epoch(),
            requested_by: "registry-test".into(),
            ..StartJobRequest::default()
        };
        let run_id = client.start_job(request).await.expect("the start is accepted").into_inner().run_id;
        reservation.confirm(&run_id);
        run_id
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn nothing_excluded() -> HashSet<String> {
    HashSet::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_becomes_up_with_the_labels_and_slots_it_reports_unless_overridden() {
    let (a, b) = tokio::join!(Agent::start("a", 3, &["etl", "gpu"]), Agent::start("b", 2, &["etl"]));
    let fixture = Fixture::new(settings(Duration::from_secs(2), PlacementStrategy::LeastLoaded));
    let changed = fixture.registry.wait_changed();
    fixture.add(&a);
    fixture
        .registry
        .add_agent("b", &b.address.to_string(), Some(vec!["special".into()]), AgentSource::Config)
        .expect("add");
    tokio::time::timeout(WAIT, changed).await.expect("adding an agent wakes waiters");
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    fixture.wait_for_state("b", AgentState::Up, WAIT).await;

    let snapshot = fixture.registry.agent("a").expect("a");
    assert_eq!(snapshot.labels, ["etl", "gpu"]);
    assert_eq!(snapshot.slots, 3);
    assert_eq!((snapshot.running, snapshot.queued, snapshot.inflight), (0, 0, 0));
    assert_eq!(snapshot.epoch, 1);
    assert_eq!(snapshot.source, AgentSource::Config);
    assert!(!snapshot.version.is_empty() && !snapshot.incarnation.is_empty(), "{snapshot:?}");
    assert!(snapshot.last_seen.is_some() && snapshot.last_error.is_none(), "{snapshot:?}");
    assert_eq!(fixture.registry.agent("b").expect("b").labels, ["special"], "the configured labels win");
    let names: Vec<String> = fixture.registry.agents().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);

    assert!(fixture.registry.place("gpu", &nothing_excluded()).is_some_and(|(name, _)| name == "a"));
    assert!(fixture.registry.place("special", &nothing_excluded()).is_some_and(|(name, _)| name == "b"));
    assert!(fixture.registry.place("etl", &HashSet::from(["a".to_string()])).is_none(), "b is not etl here");
    assert!(fixture.registry.agent("nobody").is_none() && fixture.registry.client("nobody").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_placement_spreads_over_agents_and_stops_at_their_slots() {
    let (a, b, c) =
        tokio::join!(Agent::start("a", 2, &["etl"]), Agent::start("b", 2, &["etl"]), Agent::start("c", 2, &["etl"]));
    let fixture = Fixture::new(settings(Duration::from_secs(2), PlacementStrategy::LeastLoaded));
    for agent in [&a, &b, &c] {
        fixture.add(agent);
    }
    for name in ["a", "b", "c"] {
        fixture.wait_for_state(name, AgentState::Up, WAIT).await;
    }
    let mut reservations = Vec::new();
    while let Some((name, reservation)) = fixture.registry.place("etl", &nothing_excluded()) {
        assert_eq!(name, reservation.agent());
        reservations.push(reservation);
        assert!(reservations.len() <= 6, "placed beyond the 6 slots of the pool");
    }
    let placed: Vec<&str> = reservations.iter().map(Reservation::agent).collect();
    assert_eq!(placed, ["a", "b", "c", "a", "b", "c"]);
    assert_eq!(fixture.registry.agent("b").expect("b").inflight, 2);
    assert!(matches!(fixture.registry.reserve("b"), Err(PlaceError::Full { .. })));
    assert!(fixture.registry.place("gpu", &nothing_excluded()).is_none(), "no agent has that label");

    let changed = fixture.registry.wait_changed();
    let freed = reservations.remove(1);
    drop(freed);
    tokio::time::timeout(WAIT, changed).await.expect("a dropped reservation wakes waiters");
    assert!(fixture.registry.place("etl", &HashSet::from(["b".to_string()])).is_none(), "b is excluded");
    let (name, _again) = fixture.registry.place("etl", &nothing_excluded()).expect("the freed slot");
    assert_eq!(name, "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_placement_rotates_over_the_pool() {
    let (a, b, c) =
        tokio::join!(Agent::start("a", 4, &["etl"]), Agent::start("b", 4, &["etl"]), Agent::start("c", 4, &["etl"]));
    let fixture = Fixture::new(settings(Duration::from_secs(2), PlacementStrategy::RoundRobin));
    for agent in [&a, &b, &c] {
        fixture.add(agent);
    }
    for name in ["a", "b", "c"] {
        fixture.wait_for_state(name, AgentState::Up, WAIT).await;
    }
    let mut placed = Vec::new();
    let mut held = Vec::new();
    for _ in 0..7 {
        let (name, reservation) = fixture.registry.place("etl", &nothing_excluded()).expect("a free slot");
        placed.push(name);
        held.push(reservation);
    }
    assert_eq!(placed, ["a", "b", "c", "a", "b", "c", "a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmed_start_resolves_with_the_outcome_of_its_run() {
    let a = Agent::start("a", 4, &["etl"]).await;
    let fixture = Fixture::new(settings(Duration::from_secs(2), PlacementStrategy::LeastLoaded));
    fixture.add(&a);
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    let never = CancellationToken::new();

    let reservation = fixture.registry.reserve("a").expect("a free slot");
    assert_eq!(reservation.epoch(), fixture.registry.epoch("a"));
    let run_id = fixture.start(reservation, "quick").await;
    let outcome = tokio::time::timeout(WAIT, fixture.registry.wait_for_outcome("a", &run_id, &never)).await;
    let Ok(WaitOutcome::Finished(outcome)) = outcome else { panic!("expected the run to finish: {outcome:?}") };
    assert_eq!(
        (outcome.agent.as_str(), outcome.run_id.as_str(), outcome.job.as_str()),
        ("a", run_id.as_str(), "quick")
    );
    assert_eq!(outcome.status, RunStatus::Succeeded, "{outcome:?}");

    // The FINISHED event arrives before anyone waits: the outcome is still there.
    let mut finished = fixture.registry.outcomes();
    let (_, reservation) = fixture.registry.place("etl", &nothing_excluded()).expect("a free slot");
    let run_id = fixture.start(reservation, "quick").await;
    let seen = tokio::time::timeout(WAIT, async {
        loop {
            let outcome = finished.recv().await.expect("the outcome broadcast");
            if outcome.run_id == run_id {
                return outcome;
            }
        }
    })
    .await
    .expect("the FINISHED event is broadcast");
    assert_eq!(seen.status, RunStatus::Succeeded);
    let outcome = fixture.registry.wait_for_outcome("a", &run_id, &never).await;
    assert_eq!(outcome, WaitOutcome::Finished(seen));
    let (incarnation, sequence) = fixture.registry.consumed("a");
    assert!(!incarnation.is_empty() && sequence > 0, "{incarnation} {sequence}");

    // A waiter whose token fires gives up; the run itself goes on and is counted until it ends.
    let (_, reservation) = fixture.registry.place("etl", &nothing_excluded()).expect("a free slot");
    let run_id = fixture.start(reservation, "gated").await;
    assert_eq!(fixture.registry.agent("a").expect("a").inflight, 0, "confirmed, no longer in flight");
    let cancel = CancellationToken::new();
    let waiter = {
        let registry = fixture.registry.clone();
        let (run_id, cancel) = (run_id.clone(), cancel.clone());
        tokio::spawn(async move { registry.wait_for_outcome("a", &run_id, &cancel).await })
    };
    cancel.cancel();
    assert_eq!(tokio::time::timeout(WAIT, waiter).await.expect("in time").expect("joined"), WaitOutcome::Canceled);
    let held: Vec<Reservation> =
        (0..3).map(|_| fixture.registry.reserve("a").expect("slots 2 to 4 are free")).collect();
    assert!(matches!(fixture.registry.reserve("a"), Err(PlaceError::Full { load: 4, slots: 4, .. })));
    a.open_gate();
    let outcome = tokio::time::timeout(WAIT, fixture.registry.wait_for_outcome("a", &run_id, &never)).await;
    assert!(matches!(&outcome, Ok(WaitOutcome::Finished(o)) if o.status == RunStatus::Succeeded), "{outcome:?}");
    fixture.registry.reserve("a").expect("the finished run freed its slot");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_is_down_at_once_and_its_waiters_lose_their_runs() {
    let mut a = Agent::start("a", 2, &["etl"]).await;
    let down_after = Duration::from_secs(5);
    let fixture = Fixture::new(settings(down_after, PlacementStrategy::LeastLoaded));
    fixture.add(&a);
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    let reservation = fixture.registry.reserve("a").expect("a free slot");
    let run_id = fixture.start(reservation, "gated").await;
    let waiter = {
        let registry = fixture.registry.clone();
        tokio::spawn(async move { registry.wait_for_outcome("a", &run_id, &CancellationToken::new()).await })
    };

    a.kill9();
    let took = fixture.wait_for_state("a", AgentState::Down, WAIT).await;
    eprintln!("the killed agent was down after {took:?}");
    assert!(took < down_after, "a crash is seen from the broken stream and a refused probe, not after {down_after:?}");
    let outcome = tokio::time::timeout(WAIT, waiter).await.expect("in time").expect("joined");
    let WaitOutcome::Lost { agent, reason } = &outcome else { panic!("expected Lost: {outcome:?}") };
    assert_eq!(agent, "a");
    assert!(reason.contains("agent \"a\" is down"), "{reason}");
    let snapshot = fixture.registry.agent("a").expect("a");
    assert!(snapshot.last_error.is_some_and(|e| e.to_lowercase().contains("refused")), "refused probe");
    let refused = fixture.registry.reserve("a").expect_err("down");
    assert!(matches!(refused, PlaceError::Down { state: AgentState::Down, .. }), "{refused}");
    assert!(refused.to_string().contains("agent \"a\" is down"), "{refused}");
    assert!(fixture.registry.place("etl", &nothing_excluded()).is_none());
    let late = fixture.registry.wait_for_outcome("a", "any-run", &CancellationToken::new()).await;
    assert!(matches!(late, WaitOutcome::Lost { .. }), "a down agent's runs are lost at once: {late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_agent_is_down_after_down_after_and_comes_back_with_a_new_epoch() {
    let a = Agent::start("a", 2, &["etl"]).await;
    let down_after = Duration::from_secs(1);
    let fixture = Fixture::new(settings(down_after, PlacementStrategy::LeastLoaded));
    fixture.add(&a);
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    assert_eq!(fixture.registry.epoch("a"), 1);

    a.signal(Signal::SIGSTOP);
    let took = fixture.wait_for_state("a", AgentState::Down, WAIT).await;
    eprintln!("the stopped agent was down after {took:?}");
    // It was last heard at most one heartbeat before it stopped.
    assert!(took + HEARTBEAT >= down_after, "declared down after {took:?}, before down_after ({down_after:?})");
    assert_eq!(fixture.registry.epoch("a"), 1);

    let changed = fixture.registry.wait_changed();
    a.signal(Signal::SIGCONT);
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    tokio::time::timeout(WAIT, changed).await.expect("coming back wakes waiters");
    assert_eq!(fixture.registry.epoch("a"), 2, "the fencing epoch moves on after a down");
    let (_, reservation) = fixture.registry.place("etl", &nothing_excluded()).expect("up again");
    assert_eq!(reservation.epoch(), 2);
    let run_id = fixture.start(reservation, "quick").await;
    let never = CancellationToken::new();
    let outcome = tokio::time::timeout(WAIT, fixture.registry.wait_for_outcome("a", &run_id, &never)).await;
    assert!(matches!(outcome, Ok(WaitOutcome::Finished(_))), "the stream resumed after the hang: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_agent_gets_no_placements() {
    let (a, b) = tokio::join!(Agent::start("a", 2, &["etl"]), Agent::start("b", 2, &["etl"]));
    let fixture = Fixture::new(settings(Duration::from_secs(2), PlacementStrategy::LeastLoaded));
    fixture.add(&a);
    fixture.add(&b);
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    fixture.wait_for_state("b", AgentState::Up, WAIT).await;

    assert_eq!(fixture.registry.set_draining("a", true), Ok(AgentState::Draining));
    assert_eq!(fixture.registry.agent("a").expect("a").state, AgentState::Draining);
    let mut held = Vec::new();
    while let Some((name, reservation)) = fixture.registry.place("etl", &nothing_excluded()) {
        assert_eq!(name, "b", "a drains");
        held.push(reservation);
    }
    assert_eq!(held.len(), 2);
    assert!(matches!(fixture.registry.reserve("a"), Err(PlaceError::Draining { .. })));

    assert_eq!(fixture.registry.set_draining("a", false), Ok(AgentState::Up));
    let (name, _) = fixture.registry.place("etl", &nothing_excluded()).expect("a takes work again");
    assert_eq!(name, "a");
    assert_eq!(fixture.registry.set_draining("nobody", true), Err(RegistryError::UnknownAgent("nobody".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_where_nothing_listens_is_down_at_once_and_an_agent_may_move() {
    let vacant = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address");
    let a = Agent::start("a", 2, &["etl"]).await;
    let fixture = Fixture::new(settings(Duration::from_secs(5), PlacementStrategy::LeastLoaded));
    fixture.registry.add_agent("a", &vacant.to_string(), None, AgentSource::Registered).expect("add");
    let took = fixture.wait_for_state("a", AgentState::Down, WAIT).await;
    assert!(took < Duration::from_secs(5), "refused means down at once, not after down_after");

    // It registers again from where it really listens.
    fixture.registry.add_agent("a", &a.url(), None, AgentSource::Registered).expect("re-register");
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    assert_eq!(fixture.registry.agent("a").expect("a").address, a.url());
    assert_eq!(fixture.registry.epoch("a"), 1, "it was never up before");

    // A configured agent keeps its address.
    fixture.registry.add_agent("c", &a.url(), None, AgentSource::Config).expect("configured");
    let conflict = fixture.registry.add_agent("c", &vacant.to_string(), None, AgentSource::Registered);
    assert!(matches!(conflict, Err(RegistryError::Conflict { .. })), "{conflict:?}");
    fixture.registry.add_agent("c", &a.url(), None, AgentSource::Registered).expect("the same address is fine");
    assert!(matches!(
        fixture.registry.add_agent("d", "https://127.0.0.1:1", None, AgentSource::Registered),
        Err(RegistryError::InvalidAddress { .. })
    ));
    // c's address answers as agent "a": never up.
    let started = Instant::now();
    loop {
        let c = fixture.registry.agent("c").expect("c");
        assert_ne!(c.state, AgentState::Up, "{c:?}");
        if c.last_error.is_some_and(|e| e.contains("answers as agent \"a\"")) {
            break;
        }
        assert!(started.elapsed() < WAIT, "no error for c's wrong agent");
        tokio::time::sleep(POLL).await;
    }

    fixture.registry.report_unreachable("a", "connect failed in a test");
    fixture.wait_for_state("a", AgentState::Up, WAIT).await;
    fixture.registry.remove_agent("a").expect("remove");
    assert!(fixture.registry.agent("a").is_none());
}
