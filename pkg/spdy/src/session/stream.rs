//! Stream handles: [`Stream`] as delivered or opened, and its two halves.
//!
//! Drop semantics (no leaks, no stalls):
//! - Dropping a [`RecvStream`] discards what is buffered and everything that still arrives,
//!   returning the bytes to the peer's windows right away, so a flow-controlling peer is never
//!   stalled by a half nobody reads.
//! - Dropping a [`SendStream`] without [`SendStream::finish`] sends FIN (an empty DATA frame with
//!   FLAG_FIN): the common pattern "copy, then drop" ends the stream cleanly. Exceptions: a
//!   stream we were offered and never replied to is refused with RST_STREAM(REFUSED_STREAM), one
//!   we opened that never got its SYN_REPLY is cancelled with RST_STREAM(CANCEL). Use
//!   [`SendStream::reset`] to abort explicitly.
//! - [`Stream::split`] of an offered stream that was not replied to sends an empty SYN_REPLY
//!   first: splitting means the stream is accepted.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::SpdyError;
use crate::frame::{Frame, RstStatus};
use crate::headers::Headers;
use crate::session::state::{MAX_CHUNK, Outgoing, QUEUE_HIGH_WATER, Shared, State};

/// One SPDY stream. Obtain the data halves with [`Stream::split`].
pub struct Stream {
    id: u32,
    headers: Headers,
    reply_headers: Option<Headers>,
    recv: RecvStream,
    send: SendStream,
}

/// The receiving half: `recv()` or `tokio::io::AsyncRead`.
pub struct RecvStream {
    id: u32,
    shared: Arc<Shared>,
    pending: Bytes,
}

/// The sending half: `send()` or `tokio::io::AsyncWrite` (`shutdown` sends FIN).
pub struct SendStream {
    id: u32,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish()
    }
}

fn notify(shared: &Shared) {
    shared.write_wake.notify_one();
}

impl Stream {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: u32,
        headers: Headers,
        reply_headers: Option<Headers>,
    ) -> Stream {
        Stream {
            id,
            headers,
            reply_headers,
            recv: RecvStream {
                id,
                shared: shared.clone(),
                pending: Bytes::new(),
            },
            send: SendStream { id, shared },
        }
    }

    pub(crate) fn set_reply_headers(&mut self, headers: Headers) {
        self.reply_headers = Some(headers);
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The SYN_STREAM headers (names lower-case).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// First value of header `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// For a stream this side opened: the peer's SYN_REPLY headers.
    pub fn reply_headers(&self) -> Option<&Headers> {
        self.reply_headers.as_ref()
    }

    /// Answers a stream the peer opened with SYN_REPLY; `fin` also closes our side.
    pub async fn reply(&self, headers: Headers, fin: bool) -> Result<(), SpdyError> {
        crate::session::validate_headers(&headers, false)?;
        let mut st = self.send.shared.lock();
        if let Some(e) = st.dead_err() {
            return Err(e);
        }
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Err(SpdyError::ConnectionClosed);
        };
        if s.local {
            return Err(SpdyError::InvalidState(
                "reply on a stream this side opened",
            ));
        }
        if s.replied {
            return Err(SpdyError::InvalidState("stream already replied"));
        }
        if let Some(status) = s.reset {
            return Err(SpdyError::StreamReset(status));
        }
        s.replied = true;
        if fin {
            s.send_fin = true;
        }
        st.push(Outgoing::SynReply {
            stream_id: self.id,
            fin,
            headers,
        });
        if fin {
            st.settle(self.id);
        }
        drop(st);
        notify(&self.send.shared);
        Ok(())
    }

    /// Resets the stream (RST_STREAM with `status`).
    pub fn reset(&self, status: RstStatus) {
        self.send.reset(status);
    }

    /// The two halves. An offered stream not yet replied to is accepted with an empty SYN_REPLY.
    pub fn split(self) -> (RecvStream, SendStream) {
        {
            let mut st = self.send.shared.lock();
            if let Some(s) = st.streams.get_mut(&self.id)
                && !s.local
                && !s.replied
                && s.reset.is_none()
            {
                s.replied = true;
                st.push(Outgoing::SynReply {
                    stream_id: self.id,
                    fin: false,
                    headers: Headers::new(),
                });
                drop(st);
                notify(&self.send.shared);
            }
        }
        (self.recv, self.send)
    }
}

impl RecvStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Next chunk of data; `None` once the peer finished, the stream was reset or the connection
    /// is gone (see [`RecvStream::reset_status`]).
    pub async fn recv(&mut self) -> Option<Bytes> {
        if !self.pending.is_empty() {
            return Some(std::mem::take(&mut self.pending));
        }
        poll_fn(|cx| self.poll_chunk(cx)).await.ok().flatten()
    }

    /// The RST_STREAM status if the stream was reset (by either side).
    pub fn reset_status(&self) -> Option<RstStatus> {
        self.shared
            .lock()
            .streams
            .get(&self.id)
            .and_then(|s| s.reset)
    }

    /// `Ok(None)` on FIN; `Err` on reset or a lost connection.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, SpdyError>> {
        let mut st = self.shared.lock();
        let dead = st.dead_err();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(dead.unwrap_or(SpdyError::ConnectionClosed)));
        };
        if let Some(chunk) = s.recv_buf.pop_front() {
            let n = chunk.len();
            st.consumed(self.id, n);
            drop(st);
            notify(&self.shared);
            self.shared.recv_progress.notify_waiters();
            return Poll::Ready(Ok(Some(chunk)));
        }
        if let Some(status) = s.reset {
            return Poll::Ready(Err(SpdyError::StreamReset(status)));
        }
        if s.recv_fin {
            return Poll::Ready(Ok(None));
        }
        if let Some(e) = dead {
            return Poll::Ready(Err(e));
        }
        s.recv_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match self.poll_chunk(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(None)) => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(Some(chunk))) => self.pending = chunk,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e.to_io())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl Drop for RecvStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        s.recv_dropped = true;
        s.recv_waker = None;
        s.handles = s.handles.saturating_sub(1);
        let n = s.recv_buffered;
        s.recv_buf.clear();
        // Discarded bytes count as consumed: the peer gets its window back.
        st.consumed(self.id, n);
        st.settle(self.id);
        drop(st);
        notify(&self.shared);
        self.shared.recv_progress.notify_waiters();
    }
}

impl SendStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data`, waiting for flow-control window and writer queue room as needed.
    pub async fn send(&mut self, data: &[u8]) -> Result<(), SpdyError> {
        let mut off = 0;
        while off < data.len() {
            let rest = data.get(off..).unwrap_or_default();
            off += poll_fn(|cx| self.poll_send_chunk(cx, rest)).await?;
        }
        Ok(())
    }

    /// Ends our side: DATA with FLAG_FIN. Idempotent.
    pub async fn finish(&mut self) -> Result<(), SpdyError> {
        self.fin()
    }

    /// Resets the stream (RST_STREAM with `status`); both halves end.
    pub fn reset(&self, status: RstStatus) {
        let mut st = self.shared.lock();
        let Some(s) = st.streams.get(&self.id) else {
            return;
        };
        if s.reset.is_some() || st.dead.is_some() {
            return;
        }
        st.rst(self.id, status);
        st.reset_stream(self.id, status);
        drop(st);
        notify(&self.shared);
    }

    fn fin(&mut self) -> Result<(), SpdyError> {
        let mut st = self.shared.lock();
        if let Some(e) = st.dead_err() {
            return Err(e);
        }
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Err(SpdyError::ConnectionClosed);
        };
        if let Some(status) = s.reset {
            return Err(SpdyError::StreamReset(status));
        }
        if s.send_fin {
            return Ok(());
        }
        s.send_fin = true;
        auto_reply(&mut st, self.id);
        st.push_frame(Frame::Data {
            stream_id: self.id,
            fin: true,
            data: Bytes::new(),
        });
        st.settle(self.id);
        drop(st);
        notify(&self.shared);
        Ok(())
    }

    /// Queues up to one chunk of `data`; returns how many bytes were taken.
    fn poll_send_chunk(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<Result<usize, SpdyError>> {
        let mut st = self.shared.lock();
        if let Some(e) = st.dead_err() {
            return Poll::Ready(Err(e));
        }
        let enforce = st.peer_flow_control;
        let session_window = st.send_window;
        let over_queue = st.queued_data >= QUEUE_HIGH_WATER;
        let Some(s) = st.streams.get_mut(&self.id) else {
            return Poll::Ready(Err(SpdyError::ConnectionClosed));
        };
        if let Some(status) = s.reset {
            return Poll::Ready(Err(SpdyError::StreamReset(status)));
        }
        if s.send_fin {
            return Poll::Ready(Err(SpdyError::StreamFinished));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut n = data.len().min(MAX_CHUNK);
        if enforce {
            let avail = s.send_window.min(session_window);
            if avail <= 0 {
                s.send_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            n = n.min(usize::try_from(avail).unwrap_or(MAX_CHUNK));
        }
        if over_queue {
            st.queue_waiters.push(cx.waker().clone());
            return Poll::Pending;
        }
        s.send_window -= n as i64;
        st.send_window -= n as i64;
        auto_reply(&mut st, self.id);
        st.push_frame(Frame::Data {
            stream_id: self.id,
            fin: false,
            data: Bytes::copy_from_slice(data.get(..n).unwrap_or_default()),
        });
        drop(st);
        notify(&self.shared);
        Poll::Ready(Ok(n))
    }
}

/// Data on an offered stream must follow its SYN_REPLY (spdystream drops it otherwise).
fn auto_reply(st: &mut State, id: u32) {
    if let Some(s) = st.streams.get_mut(&id)
        && !s.local
        && !s.replied
    {
        s.replied = true;
        st.push(Outgoing::SynReply {
            stream_id: id,
            fin: false,
            headers: Headers::new(),
        });
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_send_chunk(cx, buf).map_err(|e| e.to_io())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.fin().map_err(|e| e.to_io()))
    }
}

impl Drop for SendStream {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let dead = st.dead.is_some();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        s.handles = s.handles.saturating_sub(1);
        s.send_waker = None;
        if !dead && s.reset.is_none() && !s.send_fin {
            if !s.replied {
                let status = if s.local {
                    RstStatus::Cancel
                } else {
                    RstStatus::RefusedStream
                };
                st.rst(self.id, status);
                st.reset_stream(self.id, status);
            } else {
                s.send_fin = true;
                st.push_frame(Frame::Data {
                    stream_id: self.id,
                    fin: true,
                    data: Bytes::new(),
                });
            }
        }
        st.settle(self.id);
        drop(st);
        notify(&self.shared);
    }
}
