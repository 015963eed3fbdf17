//! `switchyard serve --config coordinator.toml`: run a coordinator until SIGTERM or Ctrl-C;
//! SIGHUP reads the `[tls]` certificates and key again.

use std::net::SocketAddr;
use std::path::PathBuf;

use switchyard_coordinator::config::{CONFIG_FILE_ENV, ConfigOverrides, CoordinatorConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::signals::Signals;
use super::{Failure, exit, finish};
use switchyard_settings::Settings;

/// Arguments of `switchyard serve`.
///
/// Settings come from the built-in defaults, then the config file, then the environment
/// (`SWITCHYARD_COORDINATOR_*`, `__` between nested keys), then these flags. Once it listens it
/// prints `switchyard coordinator listening on ADDR` on stderr, and with `http`
/// `switchyard coordinator dashboard on http://ADDR/`. SIGTERM or Ctrl-C shuts it down
/// gracefully (exit 0); a second one exits at once. With `[tls]`, SIGHUP reloads the certificates
/// and key without dropping running work or open streams.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// The coordinator.toml to read.
    #[arg(long, value_name = "FILE", env = CONFIG_FILE_ENV)]
    pub config: Option<PathBuf>,
    /// Where to listen for gRPC (overrides `listen`); port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Where the coordinator keeps its store (overrides `data_dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where to serve the dashboard, /metrics, /healthz and /readyz over plain HTTP (overrides
    /// `http`); port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
}

/// Runs the command: 0 after a graceful shutdown, 1 when it cannot start or stops on an error.
pub async fn run(args: ServeArgs) -> u8 {
    finish(serve(args).await)
}

async fn serve(args: ServeArgs) -> Result<u8, Failure> {
    let overrides =
        ConfigOverrides { listen: args.listen, data_dir: args.data_dir, http: args.http, ..ConfigOverrides::default() };
    let config = CoordinatorConfig::load(args.config.as_deref(), std::env::vars(), overrides)
        .map_err(|e| Failure::call(e.to_string()))?;
    let wanted = config.listen;
    let listener = TcpListener::bind(wanted).await.map_err(|e| {
        Failure::call(format!(
            "cannot listen on {wanted}: {e}; is another coordinator running there? choose another address with --listen"
        ))
    })?;
    let address = listener.local_addr().map_err(|e| Failure::call(format!("cannot read the bound address: {e}")))?;
    let http = match config.http {
        Some(wanted) => {
            let http = TcpListener::bind(wanted).await.map_err(|e| {
                Failure::call(format!("cannot serve http on {wanted}: {e}; choose another address with --http"))
            })?;
            let bound =
                http.local_addr().map_err(|e| Failure::call(format!("cannot read the bound http address: {e}")))?;
            Some((http, bound))
        }
        None => None,
    };
    let tls = match &config.tls {
        Some(files) => Some(switchyard_tls::Tls::load(files).map_err(|e| Failure::call(e.to_string()))?),
        None => None,
    };
    let shutdown = CancellationToken::new();
    if let Some(tls) = &tls {
        tokio::spawn(switchyard_tls::reload_on_sighup(tls.clone()));
    }
    // Listen before serving, so a signal during startup shuts down instead of killing us.
    match Signals::listen() {
        Ok(signals) => {
            tokio::spawn(shut_down_on_signal(signals, shutdown.clone()));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C and SIGTERM; they will end the coordinator abruptly")
        }
    }
    if !address.ip().is_loopback() && tls.is_none() {
        tracing::warn!(listen = %address, "listening on a non-loopback address without TLS (insecure = true)");
    }
    eprintln!("switchyard coordinator listening on {address}");
    if let Some((_, bound)) = &http {
        if !bound.ip().is_loopback() {
            tracing::warn!(http = %bound, "serving the dashboard on a non-loopback address (insecure = true)");
        }
        eprintln!("switchyard coordinator dashboard on http://{bound}/");
    }
    switchyard_coordinator::server::serve_with_listeners(listener, http.map(|(http, _)| http), config, tls, shutdown)
        .await
        .map_err(|e| Failure::call(format!("the coordinator stopped: {e}")))?;
    Ok(exit::SUCCESS)
}

/// The first signal drains and stops; a second exits at once.
async fn shut_down_on_signal(mut signals: Signals, shutdown: CancellationToken) {
    signals.recv().await;
    eprintln!("shutting down: finishing open calls (press Ctrl-C again to exit now)");
    shutdown.cancel();
    signals.recv().await;
    eprintln!("exiting now");
    std::process::exit(i32::from(exit::FAILURE));
}
