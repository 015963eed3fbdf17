//! Closing client connections that send nothing for a while (`[limits] idle_timeout`,
//! DESIGN.md §11), for both services' servers.
//!
//! tonic has no idle timeout, so each accepted connection is wrapped: a read that waits longer
//! than the limit without a byte from the client fails, and the server drops the connection. A
//! live HTTP/2 client answers the server's keepalive pings (the servers send them every half
//! limit), so a gRPC channel waiting on a quiet stream stays open; a socket that never speaks
//! HTTP/2, or stops answering, is closed and its descriptor freed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::Connected;

/// Wraps every connection of `incoming` so that it is closed after `idle` without a byte read.
pub fn close_idle<S, IO, E>(incoming: S, idle: Duration) -> impl Stream<Item = Result<IdleClosing<IO>, E>>
where
    S: Stream<Item = Result<IO, E>>,
{
    incoming.map(move |accepted| accepted.map(|io| IdleClosing::new(io, idle)))
}

/// The keepalive ping interval that keeps live clients under the idle limit.
pub fn keepalive_interval(idle: Duration) -> Duration {
    (idle / 2).max(Duration::from_millis(100))
}

/// A connection closed once its client has sent nothing for the idle limit.
pub struct IdleClosing<IO> {
    inner: IO,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<IO> IdleClosing<IO> {
    /// Wraps `inner`; the clock starts now.
    pub fn new(inner: IO, idle: Duration) -> Self {
        Self { inner, idle, deadline: Box::pin(tokio::time::sleep(idle)) }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for IdleClosing<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let next = Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    tracing::info!(idle = ?self.idle, "closing a client connection that sent nothing within idle_timeout");
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client sent nothing for idle_timeout = {:?}", self.idle),
                    )))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for IdleClosing<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<IO: Connected> Connected for IdleClosing<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}
