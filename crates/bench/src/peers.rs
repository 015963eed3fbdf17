//! Peers: the `fanout` and `roundtrip` work run on Celery (Redis broker and backend), Dask
//! distributed and Ray, each with 4 workers on loopback, and ours measured in the same run, so
//! our figures stand as ratios to theirs.
//!
//! Method: `bench/peers/setup.sh` installs the peers once (redis-server from Debian, a venv with
//! pinned versions, cached), then `bench/peers/peers.py` runs in that venv (see its doc): each
//! peer is started once and warmed up, then measured `runs` times: a round-trip series each time,
//! a fan-out only while the fan-outs so far took under 5 s (so at least one; medians). Fan-out:
//! 10,000 no-op tasks submitted from one driver; the peers have no state comparable to our
//! acknowledged start, so their figure is tasks / (first submit to every task completed). Round
//! trip: 100 no-op tasks one at a time, submit and wait for the result; p50 and p99 (nearest rank).
//!
//! Then ours, from this binary's own scenarios run as child processes with `--job noop_package`:
//! `fanout` (one run) and `roundtrip` (`runs` runs). The comparable fan-out figure is completion
//! too: tasks / (StartExecution to every child's outcome recorded), i.e. fanout's `wall_ms +
//! outcomes_ms` (the outcomes are polled every 100 ms, so it is a lower bound); our acknowledged
//! starts/s stand beside it. Round trip: p50 and p99 of each task's start to outcome in the
//! coordinator's engine (the peers' figure runs from their client, which here is the engine).
//! Targets: our fan-out at least 5 times the best peer's, and our round-trip p50 and p99 lower than
//! every peer's.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The peers, in the order peers.py runs them.
const PEERS: [&str; 3] = ["celery", "dask", "ray"];
/// Tasks of a fan-out, and round trips of a series (as in `fanout` and `roundtrip`).
const TASKS: usize = 10_000;
const ROUND_TRIPS: usize = 100;
/// The job of ours: the child package run in process on the agent (the headline rows).
const JOB: &str = "noop_package";
/// Our fan-out must be at least this many times the best peer's.
const TARGET_FANOUT_RATIO: f64 = 5.0;
/// Seconds of fan-outs per peer: once over, peers.py starts no further fan-out (at least one; the
/// round-trip series, which are cheap, run `runs` times).
const PEER_BUDGET_S: u64 = 5;
/// Fan-outs of ours: one 10,000-task fan-out costs about as much as a peer's, and its figure
/// varies little from run to run; the round-trip series run `runs` times.
const OURS_FANOUT_RUNS: usize = 1;
/// A peer's time limit in peers.py (start, warm-up, runs, stop).
const PEER_TIMEOUT_S: u64 = 120;
/// Backstops for the child processes; each ends on its own well before.
const SETUP_LIMIT: Duration = Duration::from_secs(1800);
const OURS_LIMIT: Duration = Duration::from_secs(300);

/// One system's figures.
#[derive(Debug, Clone)]
struct Figures {
    name: String,
    version: String,
    /// Tasks completed per second in the fan-out.
    fanout_per_s: f64,
    /// Tasks submitted (peers, where meaningful) or starts acknowledged (ours) per second.
    submit_per_s: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
    /// Fan-outs and round-trip series measured.
    runs: (u64, u64),
    /// How it ran (workers, broker).
    how: String,
}

impl Figures {
    /// The figures as they compare (the peers' own JSON holds the rest).
    fn to_json(&self) -> Value {
        json!({
            "fanout_completed_per_s": self.fanout_per_s, "submit_per_s": self.submit_per_s,
            "roundtrip_p50_ms": self.p50_ms, "roundtrip_p99_ms": self.p99_ms,
            "fanout_runs": self.runs.0, "roundtrip_runs": self.runs.1,
        })
    }
}

/// Runs the scenario and prints its figures.
pub fn run(runs: usize) {
    let runs = runs.max(1);
    let started = Instant::now();
    println!(
        "peers: {TASKS} no-op tasks fanned out and {ROUND_TRIPS} round trips one at a time, 4 workers on loopback, \
         peers and ours in the same run (targets: fan-out at least {TARGET_FANOUT_RATIO} times the best peer's, round-trip \
         p50 and p99 lower than every peer's)"
    );
    let folder = peers_folder();
    let python = setup(&folder);
    let setup_s = started.elapsed().as_secs_f64();
    let at = Instant::now();
    let peers_json = match python {
        Ok(python) => run_peers(&python, &folder, runs),
        Err(e) => every_peer_failed(&format!("setup: {e}")),
    };
    let peers_s = at.elapsed().as_secs_f64();
    let at = Instant::now();
    let ours = run_ours(runs);
    let ours_s = at.elapsed().as_secs_f64();
    let peers: Vec<Result<Figures, String>> = PEERS.iter().map(|p| peer_figures(p, &peers_json[*p])).collect();
    let measured: Vec<Figures> = peers.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let verdict = ours.as_ref().ok().map(|(o, _)| compare(o, &measured));
    print_table(&peers, ours.as_ref().map(|(o, _)| o), verdict.as_ref());
    println!(
        "times: setup {setup_s:.1} s, peers {peers_s:.1} s, ours {ours_s:.1} s, in all {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let ours_json = match &ours {
        Ok((figures, (fanout, roundtrip))) => {
            json!({ "figures": figures.to_json(), "fanout": fanout, "roundtrip": roundtrip })
        }
        Err(e) => json!({ "error": e }),
    };
    let json = json!({
        "peers": peers_json, "ours": ours_json, "verdict": verdict.map(|v| v.to_json()),
        "seconds": { "setup": setup_s, "peers": peers_s, "ours": ours_s },
    });
    println!("{json}");
}

/// `bench/peers` at the workspace root.
fn peers_folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/peers")
}

/// Runs setup.sh (its progress shown); returns the venv's python, the last line it prints.
fn setup(folder: &Path) -> Result<PathBuf, String> {
    eprintln!("peers: bench/peers/setup.sh (installs once; cached after) ...");
    let mut command = Command::new("bash");
    command.arg(folder.join("setup.sh"));
    let out = run_bounded(command, SETUP_LIMIT, "setup.sh")?;
    let python = out.lines().rev().find(|l| !l.trim().is_empty()).ok_or("setup.sh printed no python")?;
    Ok(PathBuf::from(python.trim()))
}

/// Runs peers.py in the venv; returns its JSON object (a peer that failed holds an "error").
fn run_peers(python: &Path, folder: &Path, runs: usize) -> Value {
    eprintln!("peers: peers.py ({runs} runs, fan-outs while under {PEER_BUDGET_S} s per peer) ...");
    let mut command = Command::new(python);
    command.arg(folder.join("peers.py")).args(["--runs", &runs.to_string(), "--tasks", &TASKS.to_string()]);
    command.args(["--roundtrip", &ROUND_TRIPS.to_string(), "--budget", &PEER_BUDGET_S.to_string()]);
    command.args(["--timeout", &PEER_TIMEOUT_S.to_string()]);
    let limit = Duration::from_secs(PEER_TIMEOUT_S * PEERS.len() as u64 + 60);
    run_bounded(command, limit, "peers.py").and_then(|out| last_json(&out)).unwrap_or_else(|e| every_peer_failed(&e))
}

/// peers.py's JSON when no peer could run.
fn every_peer_failed(error: &str) -> Value {
    Value::Object(PEERS.iter().map(|p| (p.to_string(), json!({ "error": error }))).collect())
}

/// Ours: this binary's `fanout` and `roundtrip` scenarios as child processes. Returns our figures
/// and the two JSON rows they came from.
fn run_ours(runs: usize) -> Result<(Figures, (Value, Value)), String> {
    let fanout = our_scenario("fanout", OURS_FANOUT_RUNS)?;
    let roundtrip = our_scenario("roundtrip", runs)?;
    let number = |row: &Value, key: &str| row[key].as_f64().ok_or_else(|| format!("no `{key}` in {row}"));
    let completion_ms = number(&fanout, "wall_ms")? + number(&fanout, "outcomes_ms")?;
    let figures = Figures {
        name: "switchyard".into(),
        version: "this".into(),
        fanout_per_s: number(&fanout, "tasks")? / completion_ms * 1e3,
        submit_per_s: Some(number(&fanout, "starts_per_s")?),
        p50_ms: number(&roundtrip, "p50_ms")?,
        p99_ms: number(&roundtrip, "p99_ms")?,
        runs: (OURS_FANOUT_RUNS as u64, roundtrip["runs_p50_ms"].as_array().map_or(0, |r| r.len() as u64)),
        how: "4 agents, coordinator in the bench; submit/s: acknowledged starts".into(),
    };
    Ok((figures, (fanout, roundtrip)))
}

/// Runs one of this binary's scenarios for the noop package job; returns its JSON row for the job.
fn our_scenario(name: &str, runs: usize) -> Result<Value, String> {
    let exe = own_binary()?;
    eprintln!("peers: ours: {name} --job {JOB} --runs {runs} ...");
    let mut command = Command::new(exe);
    command.args([name, "--job", JOB, "--runs", &runs.to_string(), "--tasks"]);
    command.arg(if name == "fanout" { TASKS } else { ROUND_TRIPS }.to_string());
    let out = run_bounded(command, OURS_LIMIT, name)?;
    last_json(&out)?.get(JOB).cloned().ok_or_else(|| format!("{name} printed no `{JOB}` row"))
}

/// This binary's path. When a cargo build replaced it meanwhile, Linux reports the old file as
/// `PATH (deleted)`: then the binary now at PATH (built from the same workspace).
fn own_binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the bench binary's path: {e}"))?;
    if exe.exists() {
        return Ok(exe);
    }
    let replaced = exe.to_str().and_then(|p| p.strip_suffix(" (deleted)")).map(PathBuf::from);
    replaced.filter(|p| p.exists()).ok_or_else(|| format!("{} is gone", exe.display()))
}

/// A peer's figures from peers.py's JSON, or its error.
fn peer_figures(name: &str, value: &Value) -> Result<Figures, String> {
    let number =
        |key: &str| value[key].as_f64().ok_or_else(|| value["error"].as_str().unwrap_or("no figures").to_string());
    Ok(Figures {
        name: name.to_string(),
        version: value["version"].as_str().unwrap_or("?").to_string(),
        fanout_per_s: number("fanout_per_s")?,
        submit_per_s: value["submit_per_s"].as_f64(),
        p50_ms: number("roundtrip_p50_ms")?,
        p99_ms: number("roundtrip_p99_ms")?,
        runs: (value["fanout_runs"].as_u64().unwrap_or(0), value["roundtrip_runs"].as_u64().unwrap_or(0)),
        how: value["workers"].as_str().unwrap_or("").to_string(),
    })
}

/// Ours against the peers that ran.
struct Verdict {
    /// The peer with the highest fan-out, and ours / its figure.
    best_fanout: Option<(String, f64)>,
    /// Per peer: ours / theirs for fan-out, p50 and p99.
    ratios: Vec<(String, f64, f64, f64)>,
    fanout_met: bool,
    p50_met: bool,
    p99_met: bool,
}

impl Verdict {
    /// The ratio to the best peer's fan-out, each target's verdict, and ours / theirs per peer.
    fn to_json(&self) -> Value {
        let ratios: serde_json::Map<String, Value> = self
            .ratios
            .iter()
            .map(|(name, fanout, p50, p99)| {
                let ratios = json!({ "fanout": fanout, "p50": p50, "p99": p99 });
                (name.clone(), ratios)
            })
            .collect();
        json!({
            "best_fanout_peer": self.best_fanout.as_ref().map(|b| b.0.clone()),
            "fanout_ratio_to_best_peer": self.best_fanout.as_ref().map(|b| b.1),
            "fanout_target": TARGET_FANOUT_RATIO, "fanout_met": self.fanout_met,
            "p50_lower_than_every_peer": self.p50_met, "p99_lower_than_every_peer": self.p99_met,
            "ours_over_theirs": ratios,
        })
    }
}

/// Compares ours with the peers; with no peer measured, no target counts as met.
fn compare(ours: &Figures, peers: &[Figures]) -> Verdict {
    let best = peers.iter().max_by(|a, b| a.fanout_per_s.total_cmp(&b.fanout_per_s));
    let best_fanout = best.map(|b| (b.name.clone(), ours.fanout_per_s / b.fanout_per_s));
    let ratios = peers
        .iter()
        .map(|p| (p.name.clone(), ours.fanout_per_s / p.fanout_per_s, ours.p50_ms / p.p50_ms, ours.p99_ms / p.p99_ms))
        .collect();
    let any = !peers.is_empty();
    Verdict {
        fanout_met: best_fanout.as_ref().is_some_and(|b| b.1 >= TARGET_FANOUT_RATIO),
        p50_met: any && peers.iter().all(|p| ours.p50_ms < p.p50_ms),
        p99_met: any && peers.iter().all(|p| ours.p99_ms < p.p99_ms),
        best_fanout,
        ratios,
    }
}

/// One table: a row per peer (with ours / theirs), ours, then the verdict on each target.
fn print_table(peers: &[Result<Figures, String>], ours: Result<&Figures, &String>, verdict: Option<&Verdict>) {
    println!(
        "{:<11} {:<9} {:>10} {:>9} {:>8} {:>8} {:>5} {:>11} {:>8} {:>8}  how",
        "system", "version", "fan-out/s", "submit/s", "p50 ms", "p99 ms", "runs", "ours: fan-x", "p50 x", "p99 x"
    );
    for (name, peer) in PEERS.iter().zip(peers) {
        match peer {
            Ok(f) => {
                let ratios = verdict.and_then(|v| v.ratios.iter().find(|r| r.0 == *name));
                let shown = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
                println!(
                    "{} {:>11} {:>8} {:>8}  {}",
                    row(f),
                    shown(ratios.map(|r| r.1)),
                    shown(ratios.map(|r| r.2)),
                    shown(ratios.map(|r| r.3)),
                    f.how
                );
            }
            Err(e) => println!("{name:<11} error: {e}"),
        }
    }
    match ours {
        Ok(f) => println!("{} {:>11} {:>8} {:>8}  {}", row(f), "", "", "", f.how),
        Err(e) => println!("{:<11} error: {e}", "switchyard"),
    }
    let Some(verdict) = verdict else { return };
    let met = |m: bool| if m { "met" } else { "missed" };
    match &verdict.best_fanout {
        Some((best, ratio)) => println!(
            "fan-out (completed/s): ours {ratio:.2} times the best peer's ({best}); target at least \
             {TARGET_FANOUT_RATIO}: {}",
            met(verdict.fanout_met)
        ),
        None => println!("fan-out: no peer measured, so no target met"),
    }
    println!(
        "round trip: p50 lower than every peer's: {}; p99 lower than every peer's: {}",
        met(verdict.p50_met),
        met(verdict.p99_met)
    );
}

/// The columns a peer and ours share.
fn row(f: &Figures) -> String {
    format!(
        "{:<11} {:<9} {:>10.0} {:>9} {:>8.3} {:>8.3} {:>5}",
        f.name,
        f.version,
        f.fanout_per_s,
        f.submit_per_s.map_or("-".to_string(), |s| format!("{s:.0}")),
        f.p50_ms,
        f.p99_ms,
        format!("{}/{}", f.runs.0, f.runs.1)
    )
}

/// The last line of `out` that is a JSON object.
fn last_json(out: &str) -> Result<Value, String> {
    let line = out.lines().rev().find(|l| l.starts_with('{')).ok_or("no JSON line on stdout")?;
    serde_json::from_str(line).map_err(|e| format!("bad JSON line: {e}"))
}

/// Runs `command` with its stderr shown as it comes and its stdout collected, at most `limit`
/// (then SIGTERM, and SIGKILL 15 s later); returns its stdout if it exits successfully.
fn run_bounded(mut command: Command, limit: Duration, what: &str) -> Result<String, String> {
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
    let mut child = command.spawn().map_err(|e| format!("starting {what}: {e}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                stop(&mut child);
                return Err(format!("{what} did not finish within {} s", limit.as_secs()));
            }
        }
    };
    let out = reader.join().unwrap_or_default();
    if status.success() { Ok(out) } else { Err(format!("{what} exited with {status}")) }
}

/// SIGTERM (so the child stops what it started), SIGKILL if it is still there 15 s later.
fn stop(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}
