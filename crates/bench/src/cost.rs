//! Cost: the resident memory (VmRSS) of an idle agent process and of an idle coordinator process
//! (`switchyard serve`, with that agent in its coordinator.toml, so it holds the agent's channel,
//! its WatchRuns stream and the heartbeats). Read from /proc/PID/status once it settles (unchanged
//! for a second, at most 10 s); each run starts fresh processes, and figures are medians.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster::{Process, binary, rss_kib, spawn_agent};

/// Targets, in MiB.
const TARGET_AGENT_MIB: f64 = 20.0;
const TARGET_COORDINATOR_MIB: f64 = 40.0;

/// Runs the scenario and prints its figures.
pub fn run(runs: usize) {
    let agent_binary = binary("switchyard-agent");
    let coordinator_binary = binary("switchyard");
    println!(
        "cost: resident memory of idle processes, median of {runs} runs \
         (targets: agent under {TARGET_AGENT_MIB} MiB, coordinator under {TARGET_COORDINATOR_MIB} MiB)"
    );
    let (mut agents, mut coordinators) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let agent = spawn_agent(&agent_binary, &dir.path().join("agent"), "agent", 4);
        let config = dir.path().join("coordinator.toml");
        let text = format!("[[agents]]\nname = \"agent\"\naddress = \"{}\"\n", agent.address);
        std::fs::write(&config, text).expect("write coordinator.toml");
        let mut command = Command::new(&coordinator_binary);
        command.arg("serve").arg("--config").arg(&config).args(["--listen", "127.0.0.1:0", "--data-dir"]);
        command.arg(dir.path().join("coordinator"));
        let coordinator = Process::spawn(command, "coordinator");
        // Both settle together: the coordinator connects to the agent and polls it meanwhile.
        let (agent_kib, coordinator_kib) = settle(&agent, &coordinator);
        agents.push(agent_kib / 1024.0);
        coordinators.push(coordinator_kib / 1024.0);
        drop(coordinator);
        drop(agent);
    }
    let agent = crate::median(&mut agents);
    let coordinator = crate::median(&mut coordinators);
    println!("{:<34} {:>10} {:>10} {:>8}", "process", "RSS MiB", "target", "met");
    for (name, mib, target) in
        [("idle agent", agent, TARGET_AGENT_MIB), ("idle coordinator (serve)", coordinator, TARGET_COORDINATOR_MIB)]
    {
        println!("{name:<34} {mib:>10.1} {target:>10.0} {:>8}", if mib < target { "yes" } else { "no" });
    }
    println!(
        "{}",
        serde_json::json!({
            "agent_rss_mib": agent, "coordinator_rss_mib": coordinator,
            "agent_runs_mib": agents, "coordinator_runs_mib": coordinators,
            "agent_met": agent < TARGET_AGENT_MIB, "coordinator_met": coordinator < TARGET_COORDINATOR_MIB,
        })
    );
}

/// Polls both processes' RSS until neither changed for a second (at most 10 s); returns the last
/// readings in KiB.
fn settle(agent: &Process, coordinator: &Process) -> (f64, f64) {
    let read = || (rss_kib(agent.pid).unwrap_or(0) as f64, rss_kib(coordinator.pid).unwrap_or(0) as f64);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = read();
    let mut stable_since = Instant::now();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        if now != last {
            last = now;
            stable_since = Instant::now();
        } else if stable_since.elapsed() >= Duration::from_secs(1) {
            break;
        }
    }
    last
}
