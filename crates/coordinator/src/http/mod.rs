//! The coordinator's HTTP listener (DESIGN.md §12), on the same runtime as gRPC: `/` the
//! dashboard, `/executions/{id}` the Overview report with its timeline (live over server-sent
//! events at `/executions/{id}/events` while the execution runs), `/metrics`, `/healthz` and
//! `/readyz`. Pages are rendered on the server; a little plain JavaScript keeps them current,
//! and without it they refresh themselves.

mod dashboard;
mod live;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::executions::Executions;
use crate::registry::Registry;
use crate::report::{escape, page};

pub use dashboard::dashboard_page;
pub use live::execution_page;

/// How long `/readyz` waits for the store to answer a read.
const READY_DEADLINE: Duration = Duration::from_secs(2);

/// What the handlers reach.
#[derive(Clone)]
pub struct HttpState {
    /// The executions and their store.
    pub executions: Executions,
    /// The agents and the metrics.
    pub registry: Registry,
    /// Ends live event streams when the coordinator shuts down.
    pub shutdown: CancellationToken,
}

/// Every route.
pub fn router(state: HttpState) -> Router {
    let registry = state.registry.clone();
    let metrics = registry.telemetry().metrics().clone();
    let refresh = move || registry.telemetry().refresh_agents(&registry.agents());
    Router::new()
        .route("/", get(dashboard::handle))
        .route("/executions/{id}", get(live::page))
        .route("/executions/{id}/events", get(live::events))
        .route("/readyz", get(ready))
        .with_state(state)
        .merge(switchyard_http::health_router(Arc::clone(&metrics), refresh))
        .fallback(|| async { not_found("There is no page here.") })
}

/// Serves the routes on `listener` until `shutdown` fires.
pub async fn serve(listener: TcpListener, state: HttpState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    switchyard_http::serve(listener, router(state), shutdown).await
}

/// Ready once the store answers a read (and, once coordinators share a store, when leading).
async fn ready(State(state): State<HttpState>) -> Response {
    match tokio::time::timeout(READY_DEADLINE, state.executions.store().meta("created_at")).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(error)) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: the store cannot be read: {error}\n")).into_response()
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: the store did not answer within {READY_DEADLINE:?}\n"),
        )
            .into_response(),
    }
}

/// A page saying what was not found.
fn not_found(message: &str) -> Response {
    let body = format!("<nav><a href=\"/\">Dashboard</a></nav>\n<h1>Not found</h1>\n<p>{}</p>\n", escape(message));
    (StatusCode::NOT_FOUND, Html(page("Not found", "", &body))).into_response()
}

/// A page saying what went wrong on the coordinator's side.
fn failed(message: &str) -> Response {
    let body = format!("<nav><a href=\"/\">Dashboard</a></nav>\n<h1>Error</h1>\n<p>{}</p>\n", escape(message));
    (StatusCode::INTERNAL_SERVER_ERROR, Html(page("Error", "", &body))).into_response()
}
