//! `switchyard prune [--older-than D]`: retention on demand (DESIGN.md §12). The coordinator
//! removes finished executions started longer ago than D (default: its `execution_retention`)
//! or beyond its `executions_max`, with their events, task rows, children and files.

use std::time::Duration;

use serde_json::json;
use switchyard_proto::PruneExecutionsRequest;

use super::connect::{Coordinator, CoordinatorArg, request};
use super::{Failure, exit, finish, print_json};

/// Arguments of `switchyard prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Prune finished executions started longer ago than this (`30d`, `12h`, `0s` for every
    /// finished one); default: the coordinator's `execution_retention`. `executions_max` applies
    /// either way.
    #[arg(long, value_name = "DURATION", value_parser = parse_age)]
    pub older_than: Option<Duration>,
    /// Print one JSON object on stdout: {"pruned": [ids], "remaining": N}.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub coordinator: CoordinatorArg,
}

/// Runs the command: 0 pruned (perhaps nothing), 1 the call failed, 6 bad command line.
pub async fn run(args: PruneArgs) -> u8 {
    finish(prune(args).await)
}

async fn prune(args: PruneArgs) -> Result<u8, Failure> {
    let coordinator = Coordinator::connect(&args.coordinator.coordinator).await?;
    let asked = PruneExecutionsRequest { older_than_ms: args.older_than.map(|age| age.as_millis() as u64) };
    let answer = coordinator
        .call(coordinator.client().prune_executions(request(asked)))
        .await
        .map_err(|status| coordinator.explain(&status))?;
    if args.json {
        print_json(&json!({ "pruned": answer.execution_ids, "remaining": answer.remaining }))?;
    } else {
        for id in &answer.execution_ids {
            println!("{id}");
        }
        eprintln!("pruned {} execution(s); {} remain", answer.execution_ids.len(), answer.remaining);
    }
    Ok(exit::SUCCESS)
}

/// An age such as `30d`, `12h` or `0s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let age = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); write it like 30d, 12h or 0s"))?;
    if u64::try_from(age.as_millis()).is_err() {
        return Err(format!("`{text}` is too long"));
    }
    Ok(age)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_durations_and_zero_is_allowed() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 24 * 3600)));
        assert_eq!(parse_age("0s"), Ok(Duration::ZERO));
        let error = parse_age("soon").expect_err("refused");
        assert!(error.contains("`soon`") && error.contains("30d"), "{error}");
    }
}
