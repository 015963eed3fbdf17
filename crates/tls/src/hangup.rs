//! SIGHUP reloads the certificates, for the binaries that serve (`switchyard-agent`,
//! `switchyard serve`): libraries never listen for signals themselves.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::Tls;

/// Reads the certificates and key again on every SIGHUP: new connections get them, open ones
/// (running work, streams) keep theirs. Files that cannot be used leave the previous ones in
/// force. Runs until the process ends; spawn it.
pub async fn reload_on_sighup(tls: Arc<Tls>) {
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; certificates reload only at a restart");
        return;
    };
    while hangup.recv().await.is_some() {
        match tls.reload() {
            Ok(()) => tracing::info!("certificates reloaded (SIGHUP)"),
            Err(e) => tracing::error!(error = %e, "certificates not reloaded; the previous ones stay in force"),
        }
    }
}
