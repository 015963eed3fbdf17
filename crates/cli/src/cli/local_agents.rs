//! `switchyard run PKG --config coordinator.toml`: a local run (dtexec) whose `agent_job` tasks
//! reach the agents that coordinator.toml lists, through an in-process registry (over mutual
//! TLS with the file's `[tls]`, as the coordinator it stands in for).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use switchyard_coordinator::config::{ConfigOverrides, CoordinatorConfig};
use switchyard_coordinator::launcher::AgentJobs;
use switchyard_coordinator::registry::{AgentSource, AgentState, Registry, RegistrySettings};
use switchyard_package::engine::AgentJobLauncher;
use switchyard_settings::Settings;

/// Builds a launcher over the agents of `config_file`, waiting (bounded) until each answered or
/// was found down, so the first placements see real loads.
pub async fn launcher(
    config_file: &Path,
    caller: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<Arc<dyn AgentJobLauncher>> {
    let config = CoordinatorConfig::load(Some(config_file), std::env::vars(), ConfigOverrides::default())
        .with_context(|| format!("loading {}", config_file.display()))?;
    if config.agents.is_empty() {
        anyhow::bail!("{} lists no [[agents]]; add the agents agent_job tasks should reach", config_file.display());
    }
    let tls = match &config.tls {
        Some(files) => Some(switchyard_tls::Tls::load(files).context("loading the [tls] files")?),
        None => None,
    };
    let registry = Registry::new_with_tls(RegistrySettings::from_config(&config), tls, shutdown);
    for agent in &config.agents {
        registry
            .add_agent(&agent.name, &agent.address, agent.labels.clone(), AgentSource::Config)
            .with_context(|| format!("agent \"{}\" in {}", agent.name, config_file.display()))?;
    }
    let deadline = Instant::now() + config.down_after + Duration::from_secs(1);
    loop {
        let changed = registry.wait_changed();
        if registry.agents().iter().all(|a| a.state != AgentState::Suspect) || Instant::now() > deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), changed).await;
    }
    for agent in registry.agents() {
        if agent.state != AgentState::Up {
            tracing::warn!(agent = %agent.name, state = agent.state.as_str(), "agent is not up; tasks placed on it fail or wait");
        }
    }
    Ok(Arc::new(AgentJobs::new(registry, caller.to_string(), None)))
}
