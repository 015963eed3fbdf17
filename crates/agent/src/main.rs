//! `switchyard-agent --config agent.toml`: the worker agent. SIGTERM drains and stops; SIGHUP
//! reads the `[tls]` certificates and key again.

/// mimalloc: the allocator-heavy paths (gRPC, SQLite rows, the engine) spend markedly less time
/// in it than in glibc malloc (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use switchyard_agent::config::{AgentConfig, ConfigOverrides};
use switchyard_settings::Settings;
use switchyard_settings::logging::{self, LogFormat, Verbosity};

/// Switchyard agent: runs jobs whose steps run child packages or commands.
#[derive(Debug, Parser)]
#[command(name = "switchyard-agent", version, about)]
struct Args {
    /// agent.toml; SWITCHYARD_AGENT_* environment variables and these flags override it.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The agent's name.
    #[arg(long)]
    name: Option<String>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Folder of the agent's database and pushed packages.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Jobs run at once.
    #[arg(long)]
    slots: Option<u32>,
    /// Labels (comma-separated) that pools select agents by.
    #[arg(long, value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// A coordinator to register with (host:port), at start and every few seconds.
    #[arg(long)]
    coordinator: Option<String>,
    /// Accept InjectFault (switchyard chaos).
    #[arg(long)]
    allow_fault_injection: bool,
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Log lines on stderr as `text` or `json` (one object per line, with the execution_id,
    /// task, agent and run_id of the run they concern).
    #[arg(long, env = "SWITCHYARD_LOG_FORMAT", default_value = "text", value_name = "FORMAT")]
    log_format: LogFormat,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rust_log = std::env::var("RUST_LOG").ok();
    logging::init(args.log_format, args.verbose, VERBOSITY, rust_log.as_deref());
    let overrides = ConfigOverrides {
        name: args.name,
        listen: args.listen,
        data_dir: args.data_dir,
        slots: args.slots,
        labels: args.labels,
        allow_fault_injection: args.allow_fault_injection.then_some(true),
        coordinator: args.coordinator,
    };
    let config =
        AgentConfig::load(args.config.as_deref(), std::env::vars(), overrides).context("loading agent config")?;
    if config.insecure && config.tls.is_none() && !config.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.listen, "listening on a non-loopback address without TLS (insecure = true)");
    }
    // Refused before binding: nothing may think this agent serves while its jobs are invalid.
    switchyard_agent::jobs::check_job_files(&config).context("checking the agent's job files")?;
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    let http = match config.http {
        Some(address) => {
            let http = TcpListener::bind(address).await.with_context(|| format!("binding http {address}"))?;
            let bound = http.local_addr().context("reading the bound http address")?;
            if !bound.ip().is_loopback() {
                tracing::warn!(http = %bound, "serving /metrics on a non-loopback address (insecure = true)");
            }
            Some((http, bound))
        }
        None => None,
    };
    eprintln!("switchyard-agent \"{}\" listening on {bound}", config.name);
    if let Some((_, bound)) = &http {
        eprintln!("switchyard-agent \"{}\" serving /metrics and /healthz on http://{bound}", config.name);
    }
    let tls = match &config.tls {
        Some(files) => Some(switchyard_tls::Tls::load(files).context("loading the [tls] files")?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    if let Some(tls) = &tls {
        tokio::spawn(switchyard_tls::reload_on_sighup(tls.clone()));
    }
    switchyard_agent::server::serve_with_listeners(listener, http.map(|(http, _)| http), config, tls, shutdown)
        .await
        .context("agent failed")?;
    Ok(())
}

/// SIGTERM or Ctrl-C starts a graceful shutdown.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot listen for SIGTERM and SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

/// Quiet by default: warnings, and the agent's lifecycle and runs at info.
const VERBOSITY: Verbosity =
    Verbosity { quiet: "warn,switchyard_agent=info", verbose: "info,switchyard_agent=debug,switchyard_package=debug" };
