//! Dialing a TLS server: a connector for tonic's `Endpoint` that opens TCP (TCP_NODELAY),
//! checks the server's certificate against the CA for the URI's host, and presents this
//! process's certificate, with the client config current at that moment (so a reload applies to
//! the next connection).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Tls;

/// A connection the [`Connector`] opened.
pub type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

/// Opens mutual-TLS connections for a tonic `Endpoint` (`connect_with_connector`).
#[derive(Debug, Clone)]
pub struct Connector {
    config: ConfigSource,
}

#[derive(Debug, Clone)]
enum ConfigSource {
    /// The current client config of a reloadable [`Tls`].
    Reloadable(Arc<Tls>),
    /// One config, as given (tests dial with unusual ones: no certificate, another CA's).
    Fixed(Arc<rustls::ClientConfig>),
}

impl Connector {
    /// A connector presenting `tls`'s certificate and trusting its CA.
    pub fn new(tls: Arc<Tls>) -> Self {
        Self { config: ConfigSource::Reloadable(tls) }
    }

    /// A connector with one rustls client config (its ALPN should offer `h2`).
    pub fn with_client_config(config: Arc<rustls::ClientConfig>) -> Self {
        Self { config: ConfigSource::Fixed(config) }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = TlsIo;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = match &self.config {
            ConfigSource::Reloadable(tls) => tls.client_config(),
            ConfigSource::Fixed(config) => config.clone(),
        };
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| invalid(format!("{uri} has no host")))?;
            // The URI keeps the brackets of an IPv6 host; a server name does not.
            let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone()).map_err(|e| invalid(format!("server name {host}: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(stream))
        })
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Connects `endpoint` now: over mutual TLS with `tls`, in plain text without.
pub async fn connect(endpoint: Endpoint, tls: Option<&Arc<Tls>>) -> Result<Channel, tonic::transport::Error> {
    match tls {
        Some(tls) => endpoint.connect_with_connector(Connector::new(tls.clone())).await,
        None => endpoint.connect().await,
    }
}

/// A channel that connects on first use (and again after a failure): over mutual TLS with
/// `tls`, in plain text without.
pub fn connect_lazy(endpoint: Endpoint, tls: Option<&Arc<Tls>>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(Connector::new(tls.clone())),
        None => endpoint.connect_lazy(),
    }
}
