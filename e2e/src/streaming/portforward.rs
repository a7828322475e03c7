//! Port-forward connections: `portforward.k8s.io` over SPDY (a data and an error stream per
//! connection, many connections on one session) and a byte stream tests read and write.

use std::any::Any;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};

use super::spdy::{self, SessionGuard};

/// One forwarded connection to a port in the pod. Reads and writes go to the pod's socket; shutting
/// down the write side half-closes it (SPDY; WebSocket has no half-close). Whatever the server sent
/// on the connection's error stream is in [`Self::error`].
pub struct PortForwardStream {
    io: DuplexStream,
    error: Arc<Mutex<Option<String>>>,
    _keep: Arc<dyn Any + Send + Sync>,
}

impl PortForwardStream {
    pub(crate) fn new(
        io: DuplexStream,
        error: Arc<Mutex<Option<String>>>,
        keep: Arc<dyn Any + Send + Sync>,
    ) -> Self {
        PortForwardStream {
            io,
            error,
            _keep: keep,
        }
    }

    /// The error the server reported for this connection, if any yet.
    pub fn error(&self) -> Option<String> {
        self.error.lock().unwrap().clone()
    }
}

impl AsyncRead for PortForwardStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for PortForwardStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A `portforward.k8s.io` SPDY session; [`Self::open`] makes connections, in parallel if wanted.
/// The session lives as long as this or any of its connections.
pub struct SpdyPortForwarder {
    session: spdy::Session,
    guard: Arc<SessionGuard>,
    next_request: AtomicU32,
}

impl SpdyPortForwarder {
    pub async fn connect(url: &str) -> anyhow::Result<SpdyPortForwarder> {
        let up = spdy::connect(url, &["portforward.k8s.io"]).await?;
        if up.protocol != "portforward.k8s.io" {
            bail!(
                "offered portforward.k8s.io, the server chose {:?}",
                up.protocol
            );
        }
        Ok(SpdyPortForwarder {
            session: up.session,
            guard: Arc::new(up.guard),
            next_request: AtomicU32::new(0),
        })
    }

    /// A new connection to `port`: an error stream (half-closed at once: we never write to it),
    /// then a data stream, both with the same `port` and `requestID` headers.
    pub async fn open(&self, port: u16) -> anyhow::Result<PortForwardStream> {
        let request = self
            .next_request
            .fetch_add(1, Ordering::Relaxed)
            .to_string();
        let port_text = port.to_string();
        let headers = |kind| {
            [
                ("streamType", kind),
                ("port", port_text.as_str()),
                ("requestID", request.as_str()),
            ]
        };
        let (error_tx, mut error_rx) = self
            .session
            .open(&headers("error"))
            .await
            .context("creating the port-forward error stream")?;
        error_tx.finish().await?;
        let (data_tx, mut data_rx) = self
            .session
            .open(&headers("data"))
            .await
            .context("creating the port-forward data stream")?;
        let (user, ours) = tokio::io::duplex(256 * 1024);
        let (mut from_user, mut to_user) = tokio::io::split(ours);
        let error = Arc::new(Mutex::new(None::<String>));
        tokio::spawn({
            let error = error.clone();
            async move {
                let text = error_rx.read_all().await;
                if !text.is_empty() {
                    *error.lock().unwrap() = Some(String::from_utf8_lossy(&text).into_owned());
                }
            }
        });
        tokio::spawn(async move {
            while let Some(data) = data_rx.recv().await {
                if to_user.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = to_user.shutdown().await;
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_user.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if data_tx.send(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = data_tx.finish().await;
        });
        Ok(PortForwardStream::new(user, error, self.guard.clone()))
    }
}

/// One connection on a session of its own.
pub async fn port_forward_spdy(url: &str, port: u16) -> anyhow::Result<PortForwardStream> {
    SpdyPortForwarder::connect(url).await?.open(port).await
}

/// A `GET path` with `Connection: close` over a forwarded connection; returns (status, body).
pub async fn http_get<S>(
    stream: &mut S,
    path: &str,
    timeout: Duration,
) -> anyhow::Result<(u16, Vec<u8>)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tokio::time::timeout(timeout, async {
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut head_end = None;
        let mut want = None;
        loop {
            if let (Some(end), Some(len)) = (head_end, want)
                && response.len() >= end + len
            {
                break;
            }
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buf[..n]);
            if head_end.is_none()
                && let Some(i) = response.windows(4).position(|w| w == b"\r\n\r\n")
            {
                head_end = Some(i + 4);
                let head = String::from_utf8_lossy(&response[..i]).to_ascii_lowercase();
                want = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok());
            }
        }
        let Some(end) = head_end else {
            bail!(
                "no HTTP response head in {:?}",
                String::from_utf8_lossy(&response)
            );
        };
        let status = String::from_utf8_lossy(&response[..end])
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("no HTTP status")?;
        Ok((status, response[end..].to_vec()))
    })
    .await
    .with_context(|| format!("GET {path} did not finish within {timeout:?}"))?
}
