//! What one client connection may hold: how long the server waits on it and how many it keeps.
//!
//! A connection that sends its request head slowly (slowloris), stops sending a body, or stops
//! reading a response is closed after a timeout; past a cap on open connections a new one is
//! answered `503` and closed; a kept-alive connection carries a bounded number of requests.

use std::io;
use std::pin::Pin;
use std::task::Context;
use std::task::Poll;
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::io::AsyncWrite;
use tokio::io::ReadBuf;
use tokio::time::Sleep;

/// Timeouts and caps on client connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request head must arrive in full within this time of the connection opening, or of the
    /// previous response on a kept-alive connection (which is therefore also how long an idle
    /// connection stays open).
    pub header_timeout: Duration,
    /// How long the server waits on a client that has stopped sending a request body or
    /// reading a response before it closes the connection.
    pub idle_timeout: Duration,
    /// Most connections open at once; a connection past it is answered `503` and closed.
    pub max_connections: usize,
    /// Requests one connection carries; the last is answered with `Connection: close`.
    pub max_requests_per_connection: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_connections: default_max_connections(),
            max_requests_per_connection: 1000,
        }
    }
}

/// 10,000 connections, or three quarters of the descriptors the process may open when that is
/// fewer (the rest are for the store, logs and outgoing requests).
fn default_max_connections() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    let descriptors = if known {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (descriptors / 4 * 3).clamp(64, 10_000)
}

/// The answer to a connection past [`ConnectionLimits::max_connections`].
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nconnection: close\r\nretry-after: 1\r\n\
x-functions-host-error: too_many_connections\r\ncontent-length: 89\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server has too many connections\"}}";

/// A connection's socket that fails a write the client has left blocked (a full send buffer:
/// the client stopped reading) for longer than `limit`, which closes the connection.
pub(crate) struct StallGuard<T> {
    io: T,
    limit: Duration,
    /// Running while a write waits on the client.
    write_stalled: Option<Pin<Box<Sleep>>>,
}

impl<T> StallGuard<T> {
    pub fn new(io: T, limit: Duration) -> Self {
        Self {
            io,
            limit,
            write_stalled: None,
        }
    }

    /// What a write that returned `poll` means: pending for too long is an error.
    fn check<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.write_stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .write_stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallGuard<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallGuard<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_one_whole_http_response() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        let length = format!("content-length: {}", body.len());
        assert!(head.lines().any(|line| line == length), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "too_many_connections");
    }

    #[test]
    fn the_default_cap_fits_the_descriptors() {
        let limits = ConnectionLimits::default();
        assert!((64..=10_000).contains(&limits.max_connections));
    }
}
