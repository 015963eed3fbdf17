//! The agent's HTTP listener (DESIGN.md §12): `/metrics` and `/healthz`, on the same runtime as
//! its gRPC service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::runtime::AgentRuntime;
use crate::telemetry::Load;

/// Serves `/metrics` (gauges read from `runtime` at each scrape; `consumed` is the last outbox
/// sequence a coordinator confirmed) and `/healthz` until `shutdown` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    runtime: Arc<AgentRuntime>,
    consumed: Arc<AtomicU64>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let metrics = runtime.telemetry.metrics().clone();
    let refresh = move || {
        let (running, queued) = runtime.load();
        runtime.telemetry.refresh(Load {
            running,
            queued,
            slots: runtime.config.slots,
            outbox_unconsumed: runtime.store.last_sequence().saturating_sub(consumed.load(Ordering::Relaxed)),
            draining: runtime.draining(),
        });
    };
    switchyard_http::serve(listener, switchyard_http::health_router(metrics, refresh), shutdown).await
}
