//! An agent with `coordinator = "ADDR"` registers itself at start, and again every few seconds
//! so a restarted coordinator learns of it without operator action; with `[tls]` over https
//! with the agent's certificate, giving its own address as `https://`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use switchyard_settings::Transport;
use switchyard_tls::Tls;

use tokio_util::sync::CancellationToken;

use switchyard_proto as pb;

/// How often registration is repeated once it succeeded.
const REFRESH: Duration = Duration::from_secs(10);

/// Registers `name` at `address` with the coordinator until `shutdown` fires.
#[allow(clippy::too_many_arguments)]
pub async fn keep_registered(
    tls: Option<Arc<Tls>>,
    coordinator: String,
    name: String,
    address: SocketAddr,
    labels: Vec<String>,
    slots: u32,
    incarnation: String,
    shutdown: CancellationToken,
) {
    // The config checked the address; a caller that did not gets told once, not every retry.
    let url = match switchyard_settings::Address::parse_for(&coordinator, Transport::of(&tls)) {
        Ok(address) => address.uri(),
        Err(e) => {
            tracing::error!(coordinator = %coordinator, error = %e, "cannot register with the coordinator");
            return;
        }
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = register(tls.as_ref(), &url, &name, address, &labels, slots, &incarnation).await;
        let wait = match result {
            Ok(epoch) => {
                tracing::debug!(coordinator = %coordinator, epoch, "registered with the coordinator");
                backoff = Duration::from_millis(200);
                REFRESH
            }
            Err(e) => {
                tracing::warn!(coordinator = %coordinator, error = %e, "cannot register with the coordinator; retrying");
                backoff = (backoff * 2).min(REFRESH);
                backoff
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn register(
    tls: Option<&Arc<Tls>>,
    url: &str,
    name: &str,
    address: SocketAddr,
    labels: &[String],
    slots: u32,
    incarnation: &str,
) -> Result<u64, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| format!("bad coordinator address {url}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5));
    let channel = switchyard_tls::connect(endpoint, tls).await.map_err(|e| e.to_string())?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut client = pb::coordinator_client::CoordinatorClient::new(channel);
    let reply = client
        .register_agent(pb::RegisterAgentRequest {
            name: name.to_string(),
            address: format!("{scheme}://{address}"),
            labels: labels.to_vec(),
            slots,
            incarnation: incarnation.to_string(),
        })
        .await
        .map_err(|e| e.message().to_string())?;
    Ok(reply.into_inner().epoch)
}
