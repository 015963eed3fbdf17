//! The TLS listener: accepts TCP connections, runs each handshake on its own task (so a slow or
//! hostile client cannot hold up the next accept), and hands tonic only the connections whose
//! client certificate the CA signed, each with the [`Peer`] its certificate names.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::Tls;
use crate::roles::{Peer, peer_from_certificate};

/// How long a client may take to finish its handshake before its connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for tonic to take them.
const BACKLOG: usize = 64;

/// One handshaken connection and who is on the other end.
pub struct TlsConnection {
    stream: TlsStream<TcpStream>,
    peer: Peer,
}

impl TlsConnection {
    /// Who is on the other end, by its certificate.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }
}

impl Connected for TlsConnection {
    /// Every request of the connection carries its [`Peer`] in its extensions.
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The handshaken connections of a listener, for `serve_with_incoming_shutdown`. Dropping it
/// stops accepting.
pub struct Incoming {
    connections: mpsc::Receiver<io::Result<TlsConnection>>,
    accept: JoinHandle<()>,
}

impl futures::Stream for Incoming {
    type Item = io::Result<TlsConnection>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Accepts on `listener` (TCP_NODELAY) and handshakes with the server config current at that
/// moment, so [`Tls::reload`] applies to the next connection and never to an open one.
pub fn incoming(listener: TcpListener, tls: Arc<Tls>) -> Incoming {
    let (sender, connections) = mpsc::channel(BACKLOG);
    let accept = tokio::spawn(accept_loop(listener, tls, sender));
    Incoming { connections, accept }
}

async fn accept_loop(listener: TcpListener, tls: Arc<Tls>, sender: mpsc::Sender<io::Result<TlsConnection>>) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
        let handed = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let peer = connection_peer(&stream, remote);
                    tracing::debug!(%remote, subject = %peer.subject, role = ?peer.role, "TLS client connected");
                    let _ = handed.send(Ok(TlsConnection { stream, peer })).await;
                }
                Ok(Err(e)) => tracing::warn!(%remote, error = %e, "TLS handshake refused"),
                Err(_) => tracing::warn!(%remote, "TLS handshake not finished in time; connection closed"),
            }
        });
        if sender.is_closed() {
            return;
        }
    }
}

fn connection_peer(stream: &TlsStream<TcpStream>, remote: SocketAddr) -> Peer {
    let (_, session) = stream.get_ref();
    let mut peer = match session.peer_certificates().and_then(|chain| chain.first()) {
        Some(certificate) => peer_from_certificate(certificate.as_ref()),
        None => Peer::default(),
    };
    peer.remote = Some(remote);
    peer
}
