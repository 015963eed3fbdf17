//! The HTTP side of both services (DESIGN.md §12): a Prometheus recorder of their own
//! ([`Metrics`], no global recorder, so a process hosting a coordinator and agents keeps their
//! series apart), the `/metrics` and `/healthz` routes, and serving an axum router on a bound
//! listener until a shutdown token fires.
//!
//! The listener is plain HTTP: it serves read-only pages and figures, and follows the
//! loopback-unless-`insecure` rule of the services' configuration; put a TLS-terminating proxy in
//! front of it to reach it across a network.

mod metrics;
mod serve;

pub use metrics::{LATENCY_BUCKETS, Metrics};
pub use serve::{DRAIN_GRACE, bind, health_router, metrics_text, serve};
