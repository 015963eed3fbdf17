//! Starting and stopping a coordinator: open the store, mark executions a previous process left
//! running as ended_unexpectedly, register the configured agents, and serve gRPC (with health
//! and reflection) on a bound listener until shutdown: with `[tls]`, mutual TLS and the roles of
//! DESIGN.md §11 (`switchyard_tls`).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use switchyard_proto as pb;
use switchyard_tls::{COORDINATOR_ROLES, RoleLayer, Tls, TlsError};

use crate::config::CoordinatorConfig;
use crate::executions::Executions;
use crate::registry::{AgentSource, Registry, RegistrySettings};
use crate::service::CoordinatorService;
use crate::store::{Store, StoreError};

/// Why a coordinator could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A configured agent could not be added.
    #[error("agent {0}")]
    Agent(String),
    /// gRPC serving failed.
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built.
    #[error("building server reflection: {0}")]
    Reflection(String),
    /// The HTTP listener (`http`) could not be bound or failed.
    #[error("serving HTTP on {address}: {error}")]
    Http {
        /// The address.
        address: String,
        /// What failed.
        error: std::io::Error,
    },
    /// `[tls]` files that cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// How long open calls may take to finish once shutdown begins.
const DRAIN_GRACE: Duration = Duration::from_secs(10);

/// What a running coordinator holds, for embedding (the demo, local runs with agents).
#[derive(Clone)]
pub struct Coordinator {
    /// The agents.
    pub registry: Registry,
    /// The executions.
    pub executions: Executions,
}

/// Opens the store and the registry from `config`, reaching agents in plain text.
pub async fn start(config: &CoordinatorConfig, shutdown: CancellationToken) -> Result<Coordinator, ServeError> {
    start_with_tls(config, None, shutdown).await
}

/// Opens the store and the registry from `config`; with `tls`, agents are reached over https.
pub async fn start_with_tls(
    config: &CoordinatorConfig,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) -> Result<Coordinator, ServeError> {
    let store = Store::open(&config.data_dir)?;
    resolve_prepared_transactions(&config.data_dir).await;
    let registry = Registry::new_with_tls(RegistrySettings::from_config(config), tls, shutdown.clone());
    let telemetry = registry.telemetry().clone();
    store.observe_commits(Box::new(move |took| telemetry.store_commit(took)));
    registry.resume_from(store.agent_cursors().await?);
    // Superseded attempts and missed cancels are fenced across a restart: the stops still owed
    // are sent when their agents answer, and abandoned starts are stopped when accepted.
    let fences = store.fences().await?;
    if !fences.stops.is_empty() || !fences.abandoned.is_empty() {
        tracing::info!(
            stops = fences.stops.len(),
            abandoned = fences.abandoned.len(),
            "resuming fencing of superseded attempts"
        );
    }
    registry.resume_fences(fences.stops, fences.abandoned);
    // Executions follow the registry's outcomes from before the first agent is added, so no
    // outcome replayed from an agent's outbox goes unrecorded.
    let executions = Executions::new(store, registry.clone(), config.data_dir.clone(), config.limits.clone());
    for agent in &config.agents {
        registry
            .add_agent(&agent.name, &agent.address, agent.labels.clone(), AgentSource::Config)
            .map_err(|e| ServeError::Agent(format!("\"{}\": {e}", agent.name)))?;
    }
    let (resumed, ended) = executions.resume_interrupted().await.map_err(|e| ServeError::Agent(e.to_string()))?;
    if resumed > 0 {
        tracing::info!(executions = resumed, "resumed the executions the previous process left running");
    }
    if ended > 0 {
        tracing::warn!(executions = ended, "executions of the previous process could not resume: ended_unexpectedly");
    }
    // After resuming, so an execution left running is not taken for a finished one.
    executions.keep_pruned(config.retention(), shutdown);
    Ok(Coordinator { registry, executions })
}

/// Serves a coordinator on `listener` until `shutdown` fires, with the TLS of `config.tls`.
pub async fn serve(
    listener: TcpListener,
    config: CoordinatorConfig,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tls = config.tls.as_ref().map(Tls::load).transpose()?;
    serve_with_tls(listener, config, tls, shutdown).await
}

/// Serves a coordinator on `listener` until `shutdown` fires: with `tls`, only clients the CA
/// signed, each call decided by [`COORDINATOR_ROLES`], and agents reached over https; the caller
/// keeps `tls` to [`Tls::reload`] it (SIGHUP). With `http` in `config`, binds it and serves the
/// dashboard there too ([`serve_with_listeners`] takes a bound one).
pub async fn serve_with_tls(
    listener: TcpListener,
    config: CoordinatorConfig,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let http =
        switchyard_http::bind(config.http).await.map_err(|(address, error)| ServeError::Http { address, error })?;
    serve_with_listeners(listener, http, config, tls, shutdown).await
}

/// Serves a coordinator as [`serve_with_tls`] does, gRPC on `listener` and, when given, the
/// dashboard, `/metrics`, `/healthz` and `/readyz` on `http` (plain HTTP, DESIGN.md §12).
pub async fn serve_with_listeners(
    listener: TcpListener,
    http: Option<TcpListener>,
    config: CoordinatorConfig,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let coordinator = start_with_tls(&config, tls.clone(), shutdown.clone()).await?;
    let http = http.map(|listener| {
        let address = listener.local_addr().map_or_else(|_| "the http listener".to_owned(), |a| a.to_string());
        let state = crate::http::HttpState {
            executions: coordinator.executions.clone(),
            registry: coordinator.registry.clone(),
            shutdown: shutdown.clone(),
        };
        tokio::spawn(async move {
            crate::http::serve(listener, state).await.map_err(|error| ServeError::Http { address, error })
        })
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<pb::coordinator_server::CoordinatorServer<CoordinatorService>>().await;
    let reflection_v1 = pb::reflection::builder("switchyard.v1.Coordinator")
        .build_v1()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = pb::reflection::builder("switchyard.v1.Coordinator")
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let service = CoordinatorService::new(
        coordinator.executions.clone(),
        coordinator.registry.clone(),
        Duration::from_secs(30),
        shutdown.clone(),
    );
    let message_limit = config.limits.grpc_message_or(switchyard_settings::limits::COORDINATOR_GRPC_MESSAGE);
    let service = pb::coordinator_server::CoordinatorServer::new(service).max_decoding_message_size(message_limit);
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(pb::idle::keepalive_interval(config.limits.idle_timeout)))
        .layer(RoleLayer::new(&COORDINATOR_ROLES))
        .layer(pb::message_limit::NameMessageLimit::new(message_limit))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service);
    let stopped = shutdown.clone().cancelled_owned();
    let idle = config.limits.idle_timeout;
    let server = async move {
        match tls {
            Some(tls) => {
                let incoming = pb::idle::close_idle(switchyard_tls::incoming(listener, tls), idle);
                router.serve_with_incoming_shutdown(incoming, stopped).await
            }
            None => router.serve_with_incoming_shutdown(pb::idle::close_idle(incoming(listener), idle), stopped).await,
        }
    };
    // Streams end when `shutdown` fires; unary calls get DRAIN_GRACE to finish.
    tokio::select! {
        served = server => served?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN_GRACE).await } => {
            tracing::warn!(grace = ?DRAIN_GRACE, "open calls did not finish within the grace period; stopping anyway");
        }
    }
    if let Some(http) = http {
        match http.await {
            Ok(served) => served?,
            Err(error) => tracing::warn!(%error, "the HTTP listener's task ended abnormally"),
        }
    }
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Accepted connections with TCP_NODELAY: small request/response frames must not wait for
/// Nagle's algorithm and a delayed ACK (a 40 ms stall per round trip otherwise).
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Finishes the two-phase commits a previous process left between its phases (DESIGN.md §3),
/// before any execution runs again.
async fn resolve_prepared_transactions(data_dir: &std::path::Path) {
    match switchyard_sql::recover(data_dir).await {
        Ok(resolved) => {
            for r in resolved {
                tracing::warn!(gid = %r.gid, url = %r.url, committed = r.committed, "{}", r.message);
            }
        }
        Err(e) => tracing::error!(error = %e, "prepared transactions left by the previous process are not resolved"),
    }
}
