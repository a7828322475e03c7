//! Session lifetime: the idle timeout and a kill switch on the upgraded connection.
//!
//! Every upgraded connection is wrapped in [`Watched`], which records the time of the last byte in
//! either direction and fails all i/o once the session's cancellation token fires. The token
//! fires on the idle timeout, at server shutdown, or when the session's handler ends; failing the
//! i/o is what makes every task that still holds the connection (the SPDY session's own reader
//! and writer, a WebSocket pump) stop promptly, so no task or fd outlives its session.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Time of the last traffic, as milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// One session's kill switch and idle clock.
#[derive(Clone)]
pub(crate) struct SessionGuard {
    token: CancellationToken,
    activity: Arc<Activity>,
    idle_timeout: Duration,
}

impl SessionGuard {
    /// A guard cancelled with `parent` (server shutdown) or on its own.
    pub(crate) fn new(parent: &CancellationToken, idle_timeout: Duration) -> SessionGuard {
        SessionGuard {
            token: parent.child_token(),
            activity: Arc::new(Activity {
                start: Instant::now(),
                last_ms: AtomicU64::new(0),
            }),
            idle_timeout,
        }
    }

    pub(crate) fn wrap<T>(&self, io: T) -> Watched<T> {
        Watched {
            io,
            token: self.token.clone(),
            cancelled: Box::pin(self.token.clone().cancelled_owned()),
            activity: self.activity.clone(),
        }
    }

    pub(crate) fn cancel(&self) {
        self.token.cancel();
    }

    /// Resolves when the session must end: cancelled, or idle for `idle_timeout` (which cancels;
    /// a zero timeout never fires).
    pub(crate) async fn done(&self) {
        if self.idle_timeout.is_zero() {
            // Zero disables the idle timeout (as in kubelet).
            return self.token.cancelled().await;
        }
        loop {
            let deadline = self.activity.last() + self.idle_timeout;
            tokio::select! {
                _ = self.token.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => {}
            }
            if self.activity.last() + self.idle_timeout <= Instant::now() {
                tracing::debug!(
                    idle_timeout_s = self.idle_timeout.as_secs(),
                    "streaming session idle, closing"
                );
                self.token.cancel();
                return;
            }
        }
    }

    /// Runs `work` until it finishes or the session must end; then cancels, so the connection
    /// wrapped by this guard fails for everyone still using it.
    pub(crate) async fn run<F: Future<Output = ()>>(&self, work: F) {
        tokio::select! {
            _ = work => {}
            _ = self.done() => {}
        }
        self.cancel();
    }
}

/// An i/o object that records traffic and fails once its session is cancelled.
pub(crate) struct Watched<T> {
    io: T,
    token: CancellationToken,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    fn killed(&mut self, cx: &mut Context<'_>) -> bool {
        self.token.is_cancelled() || self.cancelled.as_mut().poll(cx).is_ready()
    }
}

fn aborted() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "streaming session closed")
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        let result = Pin::new(&mut this.io).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.killed(cx) {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn idle_session_is_cancelled_and_io_fails() {
        let root = CancellationToken::new();
        let guard = SessionGuard::new(&root, Duration::from_secs(10));
        let (a, mut b) = tokio::io::duplex(64);
        let mut a = guard.wrap(a);
        tokio::time::advance(Duration::from_secs(5)).await;
        b.write_all(b"x").await.unwrap();
        let mut byte = [0u8; 1];
        a.read_exact(&mut byte).await.unwrap();
        // Traffic at t=5 s pushes the deadline to 15 s.
        let started = Instant::now();
        guard.done().await;
        assert!(started.elapsed() >= Duration::from_secs(9));
        assert_eq!(
            a.read(&mut byte).await.unwrap_err().kind(),
            io::ErrorKind::ConnectionAborted
        );
    }

    #[tokio::test]
    async fn shutdown_cancels_children() {
        let root = CancellationToken::new();
        let guard = SessionGuard::new(&root, Duration::from_secs(3600));
        let (a, _b) = tokio::io::duplex(64);
        let mut a = guard.wrap(a);
        let reader = tokio::spawn(async move {
            let mut byte = [0u8; 1];
            a.read(&mut byte).await
        });
        root.cancel();
        guard.done().await;
        assert!(reader.await.unwrap().is_err());
    }
}
