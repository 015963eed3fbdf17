//! Serving an axum router until shutdown, and the routes both services share.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Metrics;

/// How long open HTTP requests may take to finish once shutdown begins (a live page's event
/// stream ends with the shutdown token, so this bounds only slow readers).
pub const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown` fires, then lets open requests finish for at
/// most [`DRAIN_GRACE`].
pub async fn serve(listener: TcpListener, router: Router, shutdown: CancellationToken) -> std::io::Result<()> {
    let address = listener.local_addr().ok();
    let server = axum::serve(listener, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    tokio::select! {
        served = server.into_future() => served?,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(DRAIN_GRACE).await } => {
            tracing::warn!(?address, grace = ?DRAIN_GRACE, "open HTTP requests did not finish within the grace period");
        }
    }
    Ok(())
}

/// `/healthz` (the process answers) and `/metrics` (`refresh` runs first, to set the gauges
/// read from the service's state at scrape time).
pub fn health_router<F>(metrics: Arc<Metrics>, refresh: F) -> Router
where
    F: Fn() + Clone + Send + Sync + 'static,
{
    Router::new().route("/healthz", get(|| async { "ok\n" })).route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            let refresh = refresh.clone();
            async move {
                refresh();
                metrics_text(metrics.render())
            }
        }),
    )
}

/// A response carrying the Prometheus text format.
pub fn metrics_text(text: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Binds the optional `http` address of a service's config: `Ok(None)` without one; the error
/// names the address.
pub async fn bind(address: Option<std::net::SocketAddr>) -> Result<Option<TcpListener>, (String, std::io::Error)> {
    match address {
        Some(address) => TcpListener::bind(address).await.map(Some).map_err(|error| (address.to_string(), error)),
        None => Ok(None),
    }
}
