//! `nemesis [--duration 120] [--seed N] [--agents 4] [--slots 4] [--settle 60]`: a coordinator
//! (`switchyard serve`) and agent processes under a stream of parent packages while a seeded
//! schedule kill -9s and SIGSTOPs agents and kill -9s the coordinator, each restarted on its own
//! config and data dir; then every invariant is checked from both sides' own records.
//!
//! Method: the processes listen on loopback ports chosen once, so a restarted one is found where
//! it was; the coordinator names the agents in its coordinator.toml. The submitter starts a parent
//! every 0.2-0.8 s with StartExecution and a request id (`nemesis-SEED-N`), retrying a failed
//! call with the same id. Each parent (`workload::PACKAGE`) has waited-for `agent_job` tasks with
//! `retries = 3`, a fire-and-forget one, a foreach of three, and a process task; jobs sleep
//! 0.1-0.5 s. Faults (`schedule`) come every 0.8-3 s after a 2 s warm-up, at most half the agents
//! at once: an agent killed and started again after 0.2-2 s, an agent stopped for 0.5-4 s, or the
//! coordinator killed and started again after 0-1 s. Then: faults stop, everything is continued
//! and started, the submitter's last submission is acknowledged, and the bench waits (at most
//! `--settle` s) until every execution is final and no child runs. Checks (`check`): acknowledged
//! executions all listed; none stuck, none `ended_unexpectedly`; no child still running; no task
//! with two succeeded children; every succeeded child succeeded in an agent's history; every run
//! of the workload's jobs in an agent's history named by some report. `agent_job` tasks that
//! failed anyway are listed as notes. Exits 1 when there are violations, after printing them;
//! the processes' folders (logs, stores) are then kept and named.

mod check;
mod records;
mod schedule;
mod servers;
mod workload;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cluster::binary;
use check::{Findings, NOTES, Records, VIOLATIONS};
use schedule::{Fault, FaultKind};
use servers::Node;

/// Lines of examples printed per kind of finding.
const EXAMPLES: usize = 3;

/// The scenario's options.
#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    seed: u64,
    agents: usize,
    slots: u32,
    settle: Duration,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self, String> {
        let value = |flag: &str| -> Result<Option<u64>, String> {
            match args.iter().position(|a| a == flag) {
                None => Ok(None),
                Some(i) => args
                    .get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .map(Some)
                    .ok_or_else(|| format!("{flag} takes a whole number")),
            }
        };
        let clock_seed = || {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64 % 1_000_000
        };
        Ok(Self {
            duration: Duration::from_secs(value("--duration")?.unwrap_or(120)),
            seed: value("--seed")?.unwrap_or_else(clock_seed),
            agents: value("--agents")?.unwrap_or(4).max(2) as usize,
            slots: value("--slots")?.unwrap_or(4).max(1) as u32,
            settle: Duration::from_secs(value("--settle")?.unwrap_or(60)),
        })
    }
}

/// Runs the scenario with the command line's arguments (after `nemesis`).
pub fn run(args: &[String]) -> ExitCode {
    let options = match Options::parse(args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("nemesis: {e}");
            return ExitCode::from(2);
        }
    };
    let programs = (binary("switchyard"), binary("switchyard-agent"));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    // The future runs on this (the main) thread, which starts every process: they die with it.
    runtime.block_on(scenario(options, programs))
}

async fn scenario(
    options: Options,
    (coordinator_program, agent_program): (std::path::PathBuf, std::path::PathBuf),
) -> ExitCode {
    let dir = tempfile::Builder::new().prefix("switchyard-nemesis-").tempdir().expect("a temp dir");
    let faults = schedule::schedule(options.seed, options.duration, options.agents);
    println!(
        "nemesis: seed {} (replay with --seed {}), {} s of workload and faults, {} agents of {} slots, {} faults scheduled",
        options.seed,
        options.seed,
        options.duration.as_secs(),
        options.agents,
        options.slots,
        faults.len()
    );
    let addresses = servers::free_addresses(options.agents + 1);
    let mut agents: Vec<Node> = (0..options.agents)
        .map(|i| Node::agent(&agent_program, dir.path(), &format!("agent-{i}"), addresses[i + 1], options.slots))
        .collect();
    let named: Vec<(String, std::net::SocketAddr)> = agents.iter().map(|a| (a.name.clone(), a.address)).collect();
    let mut coordinator = Node::coordinator(&coordinator_program, dir.path(), addresses[0], &named);
    agents.iter_mut().for_each(Node::start);
    coordinator.start();

    let stop = CancellationToken::new();
    let submissions = Arc::new(Mutex::new(workload::Submissions::default()));
    let submitter = tokio::spawn(workload::submit(coordinator.url(), options.seed, stop.clone(), submissions.clone()));
    let began = Instant::now();
    let applied = inject(&faults, began, options.duration, &mut coordinator, &mut agents).await;
    stop.cancel();
    let _ = submitter.await;
    let submitted = submissions.lock().expect("submissions lock").clone();
    eprintln!(
        "  faults stopped after {:.1} s; settling (at most {} s)",
        began.elapsed().as_secs_f64(),
        options.settle.as_secs()
    );

    let mut client = workload::coordinator_client(&coordinator.url());
    let executions = records::settle(&mut client, Instant::now() + options.settle).await;
    let mut runs = Vec::new();
    for agent in &agents {
        runs.extend(records::runs(&agent.name, &agent.url()).await);
    }
    let records = Records { acknowledged: submitted.acknowledged.clone(), executions, runs };
    let findings = check::check(&records);
    print(&options, began.elapsed(), &submitted, &applied, &records, &findings);
    if findings.violation_count() == 0 {
        return ExitCode::SUCCESS;
    }
    drop(coordinator);
    drop(agents);
    println!("processes' folders (logs, stores) kept in {}", dir.keep().display());
    ExitCode::FAILURE
}

/// What brings a faulted process back.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Recovery {
    RestartAgent(usize),
    ContinueAgent(usize),
    RestartCoordinator,
}

/// Applies `faults` at their times (each once its target is back from an earlier one) until
/// `duration` has passed, then brings everything back; returns how many of each kind it applied.
async fn inject(
    faults: &[Fault],
    began: Instant,
    duration: Duration,
    coordinator: &mut Node,
    agents: &mut [Node],
) -> BTreeMap<FaultKind, u64> {
    let mut applied: BTreeMap<FaultKind, u64> = FaultKind::ALL.iter().map(|k| (*k, 0)).collect();
    let mut pending: Vec<(Instant, Recovery)> = Vec::new();
    let end = began + duration;
    let mut next = 0;
    loop {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _)| *at <= now || now >= end);
        pending = later;
        for (_, recovery) in due {
            recover(recovery, coordinator, agents, began);
        }
        if now >= end {
            return applied;
        }
        if let Some(fault) = faults.get(next).filter(|f| began + f.at <= now) {
            let target = match fault.kind {
                FaultKind::CoordinatorKill => Recovery::RestartCoordinator,
                FaultKind::AgentKill => Recovery::RestartAgent(fault.agent),
                FaultKind::AgentStop => Recovery::ContinueAgent(fault.agent),
            };
            let busy = pending.iter().any(|(_, r)| same_process(*r, target));
            if !busy {
                eprintln!("  {:>6.1} s  {} {}", began.elapsed().as_secs_f64(), fault.kind.name(), name(target, agents));
                match target {
                    Recovery::RestartCoordinator => coordinator.kill9(),
                    Recovery::RestartAgent(i) => agents[i].kill9(),
                    Recovery::ContinueAgent(i) => agents[i].signal(Signal::SIGSTOP),
                }
                *applied.entry(fault.kind).or_default() += 1;
                pending.push((Instant::now() + fault.down, target));
                next += 1;
                continue;
            }
        }
        let mut wake = end;
        if let Some(fault) = faults.get(next) {
            wake = wake.min(began + fault.at);
        }
        if let Some(at) = pending.iter().map(|(at, _)| *at).min() {
            wake = wake.min(at);
        }
        tokio::time::sleep_until(wake.max(Instant::now()).into()).await;
    }
}

fn recover(recovery: Recovery, coordinator: &mut Node, agents: &mut [Node], began: Instant) {
    match recovery {
        Recovery::RestartCoordinator => coordinator.start(),
        Recovery::RestartAgent(i) => agents[i].start(),
        Recovery::ContinueAgent(i) => agents[i].signal(Signal::SIGCONT),
    }
    eprintln!("  {:>6.1} s  {} back", began.elapsed().as_secs_f64(), name(recovery, agents));
}

fn same_process(a: Recovery, b: Recovery) -> bool {
    let process = |r: Recovery| match r {
        Recovery::RestartCoordinator => None,
        Recovery::RestartAgent(i) | Recovery::ContinueAgent(i) => Some(i),
    };
    process(a) == process(b)
}

fn name(recovery: Recovery, agents: &[Node]) -> String {
    match recovery {
        Recovery::RestartCoordinator => "coordinator".into(),
        Recovery::RestartAgent(i) | Recovery::ContinueAgent(i) => agents[i].name.clone(),
    }
}

/// The table, the examples and the JSON line.
fn print(
    options: &Options,
    elapsed: Duration,
    submitted: &workload::Submissions,
    applied: &BTreeMap<FaultKind, u64>,
    records: &Records,
    findings: &Findings,
) {
    let mut statuses: BTreeMap<&str, usize> =
        ["succeeded", "failed", "ended_unexpectedly", "canceled"].iter().map(|s| (*s, 0)).collect();
    for execution in &records.executions {
        *statuses
            .entry(if check::is_final(&execution.status) { &execution.status } else { "not_final" })
            .or_default() += 1;
    }
    let children = records.executions.iter().map(|e| e.children.len()).sum::<usize>();
    println!();
    println!(
        "executions  submitted {} (retried calls {}, given up {}), listed {}",
        submitted.acknowledged.len(),
        submitted.retries,
        submitted.given_up,
        records.executions.len()
    );
    for (status, count) in &statuses {
        println!("            {status:<22} {count:>6}");
    }
    println!("child runs  in reports {children}, in agents' histories {}", records.runs.len());
    println!("faults");
    for (kind, count) in applied {
        println!("            {:<22} {count:>6}", kind.name());
    }
    println!("violations  {}", findings.violation_count());
    for (kind, lines) in findings.violations.iter().chain(&findings.notes) {
        let note = if NOTES.contains(kind) { " (note)" } else { "" };
        println!("            {:<31} {:>6}", format!("{kind}{note}"), lines.len());
    }
    for (kind, lines) in findings.violations.iter().chain(&findings.notes).filter(|(_, l)| !l.is_empty()) {
        println!("{kind}, first {} of {}:", EXAMPLES.min(lines.len()), lines.len());
        lines.iter().take(EXAMPLES).for_each(|line| println!("  {line}"));
    }
    println!("{:.1} s in all", elapsed.as_secs_f64());
    let counts = |map: &BTreeMap<&'static str, Vec<String>>| -> serde_json::Map<String, serde_json::Value> {
        map.iter().map(|(k, v)| (k.to_string(), json!(v.len()))).collect()
    };
    let examples: serde_json::Map<String, serde_json::Value> = findings
        .violations
        .iter()
        .chain(&findings.notes)
        .filter(|(_, l)| !l.is_empty())
        .map(|(k, l)| (k.to_string(), json!(l.iter().take(EXAMPLES).collect::<Vec<_>>())))
        .collect();
    debug_assert!(VIOLATIONS.iter().all(|k| findings.violations.contains_key(k)));
    let line = json!({
        "scenario": "nemesis",
        "seed": options.seed,
        "duration_s": options.duration.as_secs(),
        "agents": options.agents,
        "executions": {
            "submitted": submitted.acknowledged.len(),
            "listed": records.executions.len(),
            "submission_retries": submitted.retries,
            "given_up": submitted.given_up,
            "by_status": statuses,
        },
        "child_runs": {"reported": children, "in_history": records.runs.len()},
        "faults": applied.iter().map(|(k, v)| (k.name().to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "violations": counts(&findings.violations),
        "violation_count": findings.violation_count(),
        "notes": counts(&findings.notes),
        "examples": examples,
    });
    println!("{line}");
}
