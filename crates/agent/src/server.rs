//! Starting and stopping an agent: open the store, close runs a crash interrupted, load jobs,
//! serve gRPC (with health and reflection) on a bound listener, and drain on shutdown. With
//! `[tls]`: mutual TLS and the roles of DESIGN.md §11 (`switchyard_tls`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use switchyard_proto as pb;
use switchyard_tls::{AGENT_ROLES, RoleLayer, Tls, TlsError};

use crate::config::AgentConfig;
use crate::jobs::{JobFilesRefused, check_job_files, parse_job};
use crate::recovery::close_interrupted_runs;
use crate::runtime::{AgentRuntime, JobSource};
use crate::service::AgentService;
use crate::store::{Store, StoreError, StoreOptions};

/// Why an agent could not start or serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// gRPC serving failed.
    #[error("serving gRPC: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptor set.
    #[error("building server reflection: {0}")]
    Reflection(String),
    /// Another agent process holds the data dir.
    #[error("{0}")]
    DataDirInUse(String),
    /// A job file of jobs_dir (or a package one of its steps runs) is invalid.
    #[error(transparent)]
    JobFiles(#[from] JobFilesRefused),
    /// `[tls]` files that cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The HTTP listener (`http`) could not be bound or failed.
    #[error("serving HTTP on {address}: {error}")]
    Http {
        /// The address.
        address: String,
        /// What failed.
        error: std::io::Error,
    },
}

/// Holds an exclusive lock on the data dir for as long as the agent runs: two agents writing
/// one outbox would break its sequence numbers.
fn lock_data_dir(dir: &std::path::Path) -> Result<nix::fcntl::Flock<std::fs::File>, ServeError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ServeError::DataDirInUse(format!("cannot create data dir {}: {e}", dir.display())))?;
    let path = dir.join("agent.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| ServeError::DataDirInUse(format!("cannot open {}: {e}", path.display())))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        ServeError::DataDirInUse(format!(
            "data dir {} is in use by another agent ({e}); give each agent its own data_dir",
            dir.display()
        ))
    })
}

/// Serves an agent on `listener` until `shutdown` fires, with the TLS of `config.tls`, then
/// drains: new starts are refused, running runs get `shutdown_grace` to end before they are
/// canceled and recorded.
pub async fn serve(listener: TcpListener, config: AgentConfig, shutdown: CancellationToken) -> Result<(), ServeError> {
    let tls = config.tls.as_ref().map(Tls::load).transpose()?;
    serve_with_tls(listener, config, tls, shutdown).await
}

/// Serves an agent as [`serve`] does: with `tls`, only clients the CA signed, each call decided
/// by [`AGENT_ROLES`], and registration over https; the caller keeps `tls` to [`Tls::reload`]
/// it (SIGHUP). With `http` in `config`, binds it and serves `/metrics` and `/healthz` there
/// ([`serve_with_listeners`] takes a bound one).
pub async fn serve_with_tls(
    listener: TcpListener,
    config: AgentConfig,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let http =
        switchyard_http::bind(config.http).await.map_err(|(address, error)| ServeError::Http { address, error })?;
    serve_with_listeners(listener, http, config, tls, shutdown).await
}

/// Serves an agent as [`serve_with_tls`] does, gRPC on `listener` and, when given, `/metrics`
/// and `/healthz` on `http` (plain HTTP, DESIGN.md §12).
pub async fn serve_with_listeners(
    listener: TcpListener,
    http: Option<TcpListener>,
    config: AgentConfig,
    tls: Option<Arc<Tls>>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let bound = listener.local_addr().ok();
    let runtime = start(config).await?;
    if let (Some(coordinator), Some(address)) = (runtime.config.coordinator.clone(), bound) {
        tokio::spawn(crate::registration::keep_registered(
            tls.clone(),
            coordinator,
            runtime.name().to_string(),
            address,
            runtime.config.labels.clone(),
            runtime.config.slots,
            runtime.store.incarnation().to_string(),
            shutdown.clone(),
        ));
    }
    let consumed = Arc::new(AtomicU64::new(
        runtime.store.meta("consumed").await?.and_then(|v| v.parse().ok()).unwrap_or_default(),
    ));
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<pb::agent_server::AgentServer<AgentService>>().await;
    let reflection_v1 =
        pb::reflection::builder("switchyard.v1.Agent").build_v1().map_err(|e| ServeError::Reflection(e.to_string()))?;
    let reflection_v1alpha = pb::reflection::builder("switchyard.v1.Agent")
        .build_v1alpha()
        .map_err(|e| ServeError::Reflection(e.to_string()))?;
    let message_limit = runtime.config.limits.grpc_message_or(switchyard_settings::limits::AGENT_GRPC_MESSAGE);
    let service = pb::agent_server::AgentServer::new(AgentService::new(runtime.clone(), consumed.clone()))
        .max_decoding_message_size(message_limit);
    let http = http.map(|listener| {
        let address = listener.local_addr().map_or_else(|_| "the http listener".to_owned(), |a| a.to_string());
        let served = crate::http::serve(listener, runtime.clone(), consumed.clone(), runtime.shutdown.clone());
        tokio::spawn(async move { served.await.map_err(|error| ServeError::Http { address, error }) })
    });
    let maintenance = tokio::spawn(prune_outbox(runtime.clone(), consumed));

    let drain_runtime = runtime.clone();
    let drained = async move {
        shutdown.cancelled().await;
        health.set_not_serving::<pb::agent_server::AgentServer<AgentService>>().await;
        drain(&drain_runtime).await;
        drain_runtime.shutdown.cancel();
    };
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(pb::idle::keepalive_interval(runtime.config.limits.idle_timeout)))
        .layer(RoleLayer::new(&AGENT_ROLES))
        .layer(pb::message_limit::NameMessageLimit::new(message_limit))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service);
    let idle = runtime.config.limits.idle_timeout;
    match tls {
        Some(tls) => {
            let incoming = pb::idle::close_idle(switchyard_tls::incoming(listener, tls), idle);
            router.serve_with_incoming_shutdown(incoming, drained).await?
        }
        None => router.serve_with_incoming_shutdown(pb::idle::close_idle(incoming(listener), idle), drained).await?,
    }
    maintenance.abort();
    if let Some(http) = http {
        match http.await {
            Ok(served) => served?,
            Err(error) => tracing::warn!(%error, "the HTTP listener's task ended abnormally"),
        }
    }
    tracing::info!(agent = %runtime.name(), "agent stopped");
    Ok(())
}

/// Opens the store, closes interrupted runs, and loads jobs from jobs_dir and the store.
pub async fn start(config: AgentConfig) -> Result<Arc<AgentRuntime>, ServeError> {
    // Before anything else: an agent serving only some of its jobs fails parents later.
    let files = check_job_files(&config)?;
    let lock = lock_data_dir(&config.data_dir)?;
    let options = StoreOptions {
        synchronous_full: config.synchronous == crate::config::Synchronous::Full,
        history_max_rows: config.history_max_rows as usize,
        history_max_rows_per_job: config.history_max_rows_per_job as usize,
    };
    let store = Store::open(&config.data_dir, options)?;
    // Two-phase commits a previous process left between their phases, finished before any run.
    match switchyard_sql::recover(&config.data_dir).await {
        Ok(resolved) => {
            for r in resolved {
                tracing::warn!(gid = %r.gid, url = %r.url, committed = r.committed, "{}", r.message);
            }
        }
        Err(e) => tracing::error!(error = %e, "prepared transactions left by the previous process are not resolved"),
    }
    let closed = close_interrupted_runs(&store, config.kill_grace).await?;
    if closed > 0 {
        tracing::warn!(runs = closed, "closed runs interrupted by the last stop");
    }
    let mut jobs: Vec<_> = files.into_iter().map(|j| (Arc::new(j), JobSource::File)).collect();
    for stored in store.jobs().await? {
        match parse_job(&stored.definition, &format!("stored job {}", stored.name)) {
            Ok(def) => {
                jobs.retain(|(j, _)| j.name != def.name);
                jobs.push((Arc::new(def), JobSource::Pushed));
            }
            Err(errors) => {
                for error in errors {
                    tracing::error!(%error, "stored job skipped");
                }
            }
        }
    }
    let epoch = store.meta("epoch").await?.and_then(|v| v.parse().ok()).unwrap_or_default();
    tracing::info!(
        agent = %config.name,
        jobs = jobs.len(),
        incarnation = %store.incarnation(),
        last_sequence = store.last_sequence(),
        "agent started"
    );
    let runtime = AgentRuntime::new(config, store, jobs, epoch, lock);
    let telemetry = runtime.telemetry.clone();
    runtime.store.observe_commits(Box::new(move |took| telemetry.store_commit(took)));
    Ok(runtime)
}

/// Refuses new starts, waits up to shutdown_grace for running runs, then cancels the rest and
/// waits (bounded) for them to record their end.
async fn drain(runtime: &AgentRuntime) {
    runtime.start_draining();
    let grace = runtime.config.shutdown_grace;
    tracing::info!(active = runtime.active_runs().len(), grace = ?grace, "draining");
    if !wait_for_no_runs(runtime, grace).await {
        for run in runtime.lock_active().values_mut() {
            run.stopped_by.get_or_insert_with(|| "the agent shutting down".to_string());
            run.cancel.cancel();
        }
        let bound = runtime.config.kill_grace + Duration::from_secs(5);
        if !wait_for_no_runs(runtime, bound).await {
            tracing::error!("runs did not record their end in time; they are closed at the next start");
        }
    }
}

/// True when no run is active, waiting at most `limit`.
async fn wait_for_no_runs(runtime: &AgentRuntime, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let ended = runtime.run_ended.notified();
        if runtime.active_runs().is_empty() {
            return true;
        }
        tokio::select! {
            _ = ended => {}
            _ = tokio::time::sleep_until(deadline) => return runtime.active_runs().is_empty(),
        }
    }
}

/// Prunes consumed outbox events older than outbox_retention, every minute.
async fn prune_outbox(runtime: Arc<AgentRuntime>, consumed: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let retention =
            chrono::Duration::from_std(runtime.config.outbox_retention).unwrap_or(chrono::Duration::days(7));
        let upto = consumed.load(Ordering::SeqCst);
        if upto == 0 {
            continue;
        }
        let _ = runtime.store.write(vec![crate::store::Write::SetConsumed(upto)]).await;
        match runtime.store.prune_outbox(upto, Utc::now() - retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "outbox pruned"),
            Err(e) => tracing::warn!(error = %e, "cannot prune the outbox"),
        }
    }
}

/// Accepted connections with TCP_NODELAY: small request/response frames must not wait for
/// Nagle's algorithm and a delayed ACK (a 40 ms stall per round trip otherwise).
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
