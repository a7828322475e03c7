//! An async SPDY/3.1 session over any byte stream, for both roles.
//!
//! Each session runs two tokio tasks, a reader and a writer (see `reader.rs`/`writer.rs`); stream
//! handles talk to them through one shared, mutex-protected state. No task or thread per stream.
//!
//! # Compatibility with the real peer (moby/spdystream, used by kubectl, kubelet, apiserver)
//!
//! spdystream implements no flow control at all: it never sends WINDOW_UPDATE or SETTINGS, and
//! ignores both when it receives them (they land in its "unhandled frame type" branch). A strict
//! SPDY/3.1 sender would stall after the first 64 KiB on every stream. So **send-side flow
//! control toward a peer is applied only once that peer has shown it does flow control**, i.e.
//! sent a SETTINGS with INITIAL_WINDOW_SIZE or any WINDOW_UPDATE. Windows are accounted from the
//! start, so once enforcement begins it is exact. This crate's own sessions always send SETTINGS
//! first, so two of them use strict flow control from the first byte.
//!
//! On the receive side this crate advertises `initial_window` with SETTINGS (and grows the
//! session window with WINDOW_UPDATE on stream 0), and returns window as the application
//! consumes data. Peers that ignore windows are tolerated (no FLOW_CONTROL_ERROR): memory is
//! bounded instead by backpressure, the reader stops reading the connection while a stream holds
//! more than `max(initial_window, 64 KiB)` unread bytes or all streams together more than the
//! session window. That is what spdystream itself does (its per-stream channel is unbuffered),
//! with the same head-of-line caveat: an application that never reads one stream eventually
//! stalls the others. Drop a [`RecvStream`] you do not want to read.
//!
//! Other spdystream facts this code relies on: it closes the whole connection on any frame it
//! cannot parse (unknown control types, PING id 0, RST status 0, upper-case or duplicate header
//! names, a `connection`/`keep-alive`/`proxy-connection`/`transfer-encoding` header in a
//! SYN_REPLY), so those are never sent; it drops DATA that arrives on a stream before the
//! SYN_REPLY, so SYN_REPLY is always queued first; it answers PINGs whose id parity is not its
//! own (client odd, server even) and so do we; on receiving GOAWAY it stops reading at once and
//! closes the connection once its streams are gone, so [`Session::go_away`] belongs at the very
//! end, after the streams have finished.

mod reader;
pub(crate) mod state;
pub(crate) mod stream;
mod writer;

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use crate::error::SpdyError;
use crate::frame::{Frame, GoAwayStatus, MAX_PAYLOAD_LEN, MAX_STREAM_ID, Setting, setting};
use crate::headers::{HeaderError, Headers};
use state::{DEFAULT_WINDOW, Outgoing, Shared, StreamState};
pub use stream::{RecvStream, SendStream, Stream};

/// Session parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// Receive window per stream, advertised with SETTINGS_INITIAL_WINDOW_SIZE (the protocol's
    /// default is 64 KiB; bigger means more throughput from flow-controlling peers). The session
    /// window is four times this.
    pub initial_window: u32,
    /// Concurrent streams the peer may open (advertised with SETTINGS_MAX_CONCURRENT_STREAMS;
    /// more are refused with RST_STREAM(REFUSED_STREAM)).
    pub max_streams: u32,
    /// Largest frame payload accepted; bigger frames end the session (at most 2^24-1).
    pub max_frame_len: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            initial_window: 1024 * 1024,
            max_streams: 100,
            max_frame_len: MAX_PAYLOAD_LEN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// Handle to a running session. Cheap to clone. When the last handle is dropped (and, for a
/// server, the stream receiver too) the session sends GOAWAY and closes once its streams end.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    _guard: Arc<HandleGuard>,
}

struct HandleGuard(Arc<Shared>);

impl Drop for HandleGuard {
    fn drop(&mut self) {
        let mut st = self.0.lock();
        st.handles_alive = false;
        let receiver_gone = st.incoming.as_ref().is_none_or(|tx| tx.is_closed());
        if receiver_gone {
            st.go_away(GoAwayStatus::Ok);
        }
        drop(st);
        self.0.write_wake.notify_one();
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

/// Header names spdystream rejects (it then closes the whole connection): in any block.
const FORBIDDEN: [&str; 4] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
];

/// Rejects header lists the writer could not encode or the peer would choke on, so a bad list
/// fails the call instead of the session. `host` is also refused in SYN_STREAM.
pub(crate) fn validate_headers(headers: &Headers, syn_stream: bool) -> Result<(), SpdyError> {
    for (name, value) in headers {
        if name.is_empty() {
            return Err(HeaderError::EmptyName.into());
        }
        if name.len() > u32::MAX as usize / 2 || value.len() > u32::MAX as usize / 2 {
            return Err(HeaderError::FieldTooLong.into());
        }
        let forbidden = FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f));
        if forbidden || (syn_stream && name.eq_ignore_ascii_case("host")) {
            return Err(HeaderError::Forbidden(name.clone()).into());
        }
    }
    Ok(())
}

impl Session {
    /// Starts the server side on `io` (after the HTTP upgrade). Streams the peer opens arrive on
    /// the receiver; answer each with [`Stream::reply`]. The receiver yields `None` once the
    /// connection is gone. Spawns the reader and writer tasks: call within a tokio runtime.
    pub fn server<T>(io: T, config: SessionConfig) -> (Session, mpsc::Receiver<Stream>)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let cap = config.max_streams.clamp(1, 1024) as usize;
        let (tx, rx) = mpsc::channel(cap);
        (Session::start(io, config, Role::Server, Some(tx)), rx)
    }

    /// Starts the client side on `io`. Streams the peer opens are refused. Call within a tokio
    /// runtime.
    pub fn client<T>(io: T, config: SessionConfig) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Session::start(io, config, Role::Client, None)
    }

    fn start<T>(
        io: T,
        mut config: SessionConfig,
        role: Role,
        incoming: Option<mpsc::Sender<Stream>>,
    ) -> Session
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        config.initial_window = config.initial_window.clamp(1, 0x7fff_ffff);
        config.max_frame_len = config.max_frame_len.clamp(1024, MAX_PAYLOAD_LEN);
        let shared = Shared::new(role, config, incoming);
        {
            let mut st = shared.lock();
            st.push_frame(Frame::Settings {
                clear: false,
                entries: vec![
                    Setting {
                        flags: 0,
                        id: setting::MAX_CONCURRENT_STREAMS,
                        value: config.max_streams,
                    },
                    Setting {
                        flags: 0,
                        id: setting::INITIAL_WINDOW_SIZE,
                        value: config.initial_window,
                    },
                ],
            });
            // session_target is a u32, so a positive difference fits one.
            let grow = i64::from(st.session_target) - DEFAULT_WINDOW;
            if let Ok(delta @ 1..) = u32::try_from(grow) {
                st.push_frame(Frame::WindowUpdate {
                    stream_id: 0,
                    delta,
                });
            }
        }
        let (r, w) = tokio::io::split(io);
        tokio::spawn(reader::run(shared.clone(), r));
        tokio::spawn(writer::run(shared.clone(), w));
        Session {
            _guard: Arc::new(HandleGuard(shared.clone())),
            shared,
        }
    }

    /// Opens a stream (SYN_STREAM) and waits for the peer's SYN_REPLY. With `fin` our side is
    /// closed at once. Waits while the peer's max-concurrent-streams limit is reached.
    pub async fn open_stream(&self, headers: Headers, fin: bool) -> Result<Stream, SpdyError> {
        validate_headers(&headers, true)?;
        let (tx, rx) = oneshot::channel();
        let mut tx = Some(tx);
        let mut syn_headers = Some(headers);
        let id = poll_fn(|cx| {
            let mut st = self.shared.lock();
            if let Some(e) = st.dead_err() {
                return Poll::Ready(Err(e));
            }
            if st.go_away_sent || st.go_away_received.is_some() {
                return Poll::Ready(Err(SpdyError::GoingAway));
            }
            if st.active_local >= st.peer_max_streams {
                st.open_waiters.push(cx.waker().clone());
                return Poll::Pending;
            }
            let id = st.next_stream_id;
            if id > MAX_STREAM_ID {
                return Poll::Ready(Err(SpdyError::StreamIdsExhausted));
            }
            st.next_stream_id += 2;
            st.active_local += 1;
            let send_window = st.peer_initial_window;
            st.streams.insert(
                id,
                StreamState {
                    local: true,
                    reply_tx: tx.take(),
                    send_window,
                    send_fin: fin,
                    handles: 2,
                    active: true,
                    ..StreamState::default()
                },
            );
            st.push(Outgoing::SynStream {
                stream_id: id,
                fin,
                headers: syn_headers.clone().unwrap_or_default(),
            });
            Poll::Ready(Ok(id))
        })
        .await?;
        self.shared.write_wake.notify_one();
        let headers = syn_headers.take().unwrap_or_default();
        // Handles exist from here on: dropping this future cancels the stream.
        let mut stream = Stream::new(self.shared.clone(), id, headers, None);
        match rx.await {
            Ok(Ok(reply)) => {
                stream.set_reply_headers(reply);
                Ok(stream)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(self
                .shared
                .lock()
                .dead_err()
                .unwrap_or(SpdyError::ConnectionClosed)),
        }
    }

    /// Sends a PING and waits for the answer; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, SpdyError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if let Some(e) = st.dead_err() {
                return Err(e);
            }
            let id = st.next_ping_id;
            st.next_ping_id = if id >= 0x7fff_fffd {
                2 - id % 2
            } else {
                id + 2
            };
            st.pings.insert(id, tx);
            st.push_frame(Frame::Ping { id });
        }
        self.shared.write_wake.notify_one();
        let start = Instant::now();
        match rx.await {
            Ok(()) => Ok(start.elapsed()),
            Err(_) => Err(self
                .shared
                .lock()
                .dead_err()
                .unwrap_or(SpdyError::ConnectionClosed)),
        }
    }

    /// Sends GOAWAY: no new streams either way; the connection closes once the open streams end.
    pub fn go_away(&self) {
        self.shared.lock().go_away(GoAwayStatus::Ok);
        self.shared.write_wake.notify_one();
    }

    /// Resolves when the connection is gone.
    pub async fn closed(&self) {
        let mut rx = self.shared.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Tears the connection down at once, without GOAWAY; every stream sees an error.
    pub fn abort(&self) {
        self.shared.kill(SpdyError::ConnectionClosed);
    }
}
