//! `switchyard agents`: the agents a coordinator knows, their state and load.

use serde_json::json;
use switchyard_proto::{AgentInfo, ListAgentsRequest};

use super::connect::{Coordinator, CoordinatorArg, request};
use super::format::table;
use super::{Failure, exit, finish, print_json};
use crate::cli::progress::format_ms;

/// Arguments of `switchyard agents`.
#[derive(Debug, clap::Args)]
pub struct AgentsArgs {
    /// Print one JSON object on stdout: {"agents": [...]}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 listed, 1 the call failed, 6 bad command line.
pub async fn run(args: AgentsArgs) -> u8 {
    finish(list_agents(args).await)
}

/// Every agent the coordinator knows.
pub async fn agents(coordinator: &Coordinator) -> Result<Vec<AgentInfo>, Failure> {
    let response = coordinator
        .call(coordinator.client().list_agents(request(ListAgentsRequest {})))
        .await
        .map_err(|s| coordinator.explain(&s))?;
    Ok(response.agents)
}

async fn list_agents(args: AgentsArgs) -> Result<u8, Failure> {
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let agents = agents(&coordinator).await?;
    if args.json {
        let agents: Vec<serde_json::Value> = agents.iter().map(agent_json).collect();
        print_json(&json!({ "agents": agents }))?;
    } else if agents.is_empty() {
        eprintln!(
            "the coordinator at {} knows no agents: name them in its coordinator.toml, or set `coordinator` in an \
             agent's agent.toml",
            coordinator.address()
        );
    } else {
        for line in agents_table(&agents) {
            println!("{line}");
        }
    }
    Ok(exit::SUCCESS)
}

fn agents_table(agents: &[AgentInfo]) -> Vec<String> {
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|a| {
            vec![
                a.name.clone(),
                a.address.clone(),
                a.state.clone(),
                if a.labels.is_empty() { "-".to_string() } else { a.labels.join(",") },
                format!("{}/{}", a.running, a.slots),
                a.queued.to_string(),
                format!("{} ago", format_ms(a.last_seen_ms_ago)),
            ]
        })
        .collect();
    table(&["NAME", "ADDRESS", "STATE", "LABELS", "RUNNING/SLOTS", "QUEUED", "LAST SEEN"], &rows)
}

fn agent_json(a: &AgentInfo) -> serde_json::Value {
    json!({
        "name": a.name,
        "address": a.address,
        "state": a.state,
        "labels": a.labels,
        "running": a.running,
        "slots": a.slots,
        "queued": a.queued,
        "incarnation": a.incarnation,
        "epoch": a.epoch,
        "source": a.source,
        "version": a.version,
        "last_seen_ms_ago": a.last_seen_ms_ago,
        "last_error": a.last_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_load_as_running_over_slots() {
        let agent = AgentInfo {
            name: "server-a".into(),
            address: "http://127.0.0.1:7601".into(),
            state: "up".into(),
            labels: vec!["etl".into(), "eu".into()],
            running: 1,
            slots: 4,
            queued: 0,
            last_seen_ms_ago: 120,
            ..Default::default()
        };
        let lines = agents_table(&[agent]);
        assert_eq!(lines[0], "NAME      ADDRESS                STATE  LABELS  RUNNING/SLOTS  QUEUED  LAST SEEN");
        assert_eq!(lines[1], "server-a  http://127.0.0.1:7601  up     etl,eu  1/4            0       120 ms ago");
    }
}
