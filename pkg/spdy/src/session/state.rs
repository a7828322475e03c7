//! Shared session state: one mutex over everything (streams, windows, the outgoing queue).
//!
//! A single lock keeps the invariants simple (window accounting, stream lifecycle and queue
//! order change together) and contention is irrelevant at the stream counts of exec/attach/
//! port-forward. Nothing awaits while holding it; wakers are woken under it, which only schedules.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::error::SpdyError;
use crate::frame::{Frame, GoAwayStatus, RstStatus};
use crate::headers::Headers;
use crate::session::{Role, SessionConfig, stream::Stream};

/// Initial window of SPDY/3.1, for streams (until SETTINGS says otherwise) and the session.
pub(crate) const DEFAULT_WINDOW: i64 = 65_536;
/// Largest window the protocol allows.
pub(crate) const MAX_WINDOW: i64 = 0x7fff_ffff;
/// The two windows as the u32 of WINDOW_UPDATE deltas and SETTINGS values: 2^16 and 2^31 - 1 fit.
#[allow(clippy::cast_possible_truncation)]
pub(crate) const DEFAULT_WINDOW_U32: u32 = DEFAULT_WINDOW as u32;
#[allow(clippy::cast_possible_truncation)]
pub(crate) const MAX_WINDOW_U32: u32 = MAX_WINDOW as u32;
/// Largest DATA payload we send in one frame.
pub(crate) const MAX_CHUNK: usize = 16 * 1024;
/// Queued-but-unwritten DATA bytes above which senders wait for the writer.
pub(crate) const QUEUE_HIGH_WATER: usize = 256 * 1024;
/// Queued control frames above which the peer is considered abusive (e.g. a PING flood while
/// never reading our answers).
pub(crate) const MAX_QUEUED_FRAMES: usize = 100_000;

/// A frame waiting for the writer; header blocks are compressed by the writer, in queue order.
pub(crate) enum Outgoing {
    Frame(Frame),
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// Flush what precedes, shut the connection down and end the session.
    Close,
}

#[derive(Default)]
pub(crate) struct StreamState {
    pub local: bool,
    /// Incoming: we sent SYN_REPLY. Outgoing: we received it.
    pub replied: bool,
    pub reply_tx: Option<oneshot::Sender<Result<Headers, SpdyError>>>,
    pub recv_buf: VecDeque<Bytes>,
    pub recv_buffered: usize,
    pub recv_fin: bool,
    pub recv_dropped: bool,
    pub recv_waker: Option<Waker>,
    /// Consumed bytes not yet returned to the peer with WINDOW_UPDATE.
    pub recv_unacked: u32,
    pub send_window: i64,
    pub send_fin: bool,
    pub send_waker: Option<Waker>,
    pub reset: Option<RstStatus>,
    /// Live handles (RecvStream + SendStream); the entry goes once both are gone and it is done.
    pub handles: u8,
    /// Counted in the active-stream totals (cleared once closed both ways or reset).
    pub active: bool,
}

impl StreamState {
    fn done(&self) -> bool {
        self.reset.is_some() || (self.recv_fin && self.send_fin)
    }

    fn wake(&mut self) {
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
    }
}

pub(crate) struct State {
    pub role: Role,
    pub config: SessionConfig,
    pub streams: HashMap<u32, StreamState>,
    pub next_stream_id: u32,
    pub next_ping_id: u32,
    pub pings: HashMap<u32, oneshot::Sender<()>>,
    /// Highest stream id the peer opened (for GOAWAY and id validation).
    pub last_peer_stream_id: u32,
    pub active_local: u32,
    pub active_remote: u32,
    pub peer_max_streams: u32,
    pub peer_initial_window: i64,
    /// The peer showed it does flow control (sent SETTINGS_INITIAL_WINDOW_SIZE or WINDOW_UPDATE):
    /// only then do we hold back DATA for its windows.
    pub peer_flow_control: bool,
    pub send_window: i64,
    /// Session receive window we aim to keep granted to the peer.
    pub session_target: u32,
    pub session_unacked: u32,
    pub total_buffered: usize,
    pub queue: VecDeque<Outgoing>,
    pub queued_data: usize,
    pub queue_waiters: Vec<Waker>,
    pub open_waiters: Vec<Waker>,
    pub dead: Option<SpdyError>,
    pub go_away_sent: bool,
    pub go_away_received: Option<u32>,
    pub close_queued: bool,
    pub handles_alive: bool,
    pub incoming: Option<mpsc::Sender<Stream>>,
}

pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Wakes the writer (queue non-empty or session dead).
    pub write_wake: Notify,
    /// Wakes the reader when buffered data was consumed (backpressure).
    pub recv_progress: Notify,
    /// Becomes true when the connection is gone.
    pub closed: watch::Sender<bool>,
}

impl Shared {
    pub fn new(
        role: Role,
        config: SessionConfig,
        incoming: Option<mpsc::Sender<Stream>>,
    ) -> Arc<Shared> {
        let session_target = u32::try_from(
            (i64::from(config.initial_window.max(DEFAULT_WINDOW_U32)) * 4).min(MAX_WINDOW),
        )
        .unwrap_or(MAX_WINDOW_U32);
        let state = State {
            role,
            config,
            streams: HashMap::new(),
            next_stream_id: if role == Role::Client { 1 } else { 2 },
            next_ping_id: if role == Role::Client { 1 } else { 2 },
            pings: HashMap::new(),
            last_peer_stream_id: 0,
            active_local: 0,
            active_remote: 0,
            peer_max_streams: u32::MAX,
            peer_initial_window: DEFAULT_WINDOW,
            peer_flow_control: false,
            send_window: DEFAULT_WINDOW,
            session_target,
            session_unacked: 0,
            total_buffered: 0,
            queue: VecDeque::new(),
            queued_data: 0,
            queue_waiters: Vec::new(),
            open_waiters: Vec::new(),
            dead: None,
            go_away_sent: false,
            go_away_received: None,
            close_queued: false,
            handles_alive: true,
            incoming,
        };
        Arc::new(Shared {
            state: Mutex::new(state),
            write_wake: Notify::new(),
            recv_progress: Notify::new(),
            closed: watch::channel(false).0,
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough state for shutdown paths.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tears the session down: every waiter sees `err`. Idempotent.
    pub fn kill(&self, err: SpdyError) {
        {
            let mut st = self.lock();
            st.kill(err);
        }
        self.write_wake.notify_one();
        self.recv_progress.notify_waiters();
        self.closed.send_replace(true);
    }
}

impl State {
    pub fn kill(&mut self, err: SpdyError) {
        if self.dead.is_some() {
            return;
        }
        tracing::debug!(error = %err, "SPDY session ends");
        self.dead = Some(err.clone());
        self.pings.clear();
        self.queue.clear();
        self.queued_data = 0;
        self.incoming = None;
        for s in self.streams.values_mut() {
            if let Some(tx) = s.reply_tx.take() {
                let _ = tx.send(Err(err.clone()));
            }
            s.wake();
        }
        for w in self
            .queue_waiters
            .drain(..)
            .chain(self.open_waiters.drain(..))
        {
            w.wake();
        }
    }

    pub fn dead_err(&self) -> Option<SpdyError> {
        self.dead.clone()
    }

    /// Queues a frame unconditionally (control frames never wait for room).
    pub fn push(&mut self, out: Outgoing) {
        if self.dead.is_some() || self.close_queued {
            return;
        }
        if let Outgoing::Frame(Frame::Data { data, .. }) = &out {
            self.queued_data += data.len();
        }
        if matches!(out, Outgoing::Close) {
            self.close_queued = true;
        }
        self.queue.push_back(out);
        if self.queue.len() > MAX_QUEUED_FRAMES {
            self.kill(SpdyError::Protocol(
                "peer does not read its connection".into(),
            ));
        }
    }

    pub fn push_frame(&mut self, f: Frame) {
        self.push(Outgoing::Frame(f));
    }

    pub fn rst(&mut self, stream_id: u32, status: RstStatus) {
        self.push_frame(Frame::RstStream { stream_id, status });
    }

    /// Marks a stream reset (locally or by the peer) and wakes its handles.
    pub fn reset_stream(&mut self, id: u32, status: RstStatus) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.reset.is_none() {
            s.reset = Some(status);
        }
        if let Some(tx) = s.reply_tx.take() {
            let _ = tx.send(Err(SpdyError::StreamReset(status)));
        }
        let dropped = std::mem::take(&mut s.recv_buf);
        let n = std::mem::take(&mut s.recv_buffered);
        s.wake();
        drop(dropped);
        self.total_buffered = self.total_buffered.saturating_sub(n);
        self.ack_session(n);
        self.settle(id);
    }

    /// Updates the active counters and drops the entry once it is finished and unreferenced.
    pub fn settle(&mut self, id: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.active && s.done() {
            s.active = false;
            if s.local {
                self.active_local = self.active_local.saturating_sub(1);
            } else {
                self.active_remote = self.active_remote.saturating_sub(1);
            }
            for w in self.open_waiters.drain(..) {
                w.wake();
            }
        }
        if !s.active && s.handles == 0 {
            self.streams.remove(&id);
        }
        self.maybe_close();
    }

    /// After GOAWAY (either way) the connection closes once no stream is active.
    pub fn maybe_close(&mut self) {
        let going = self.go_away_sent || self.go_away_received.is_some();
        if going && !self.close_queued && self.active_local == 0 && self.active_remote == 0 {
            self.push(Outgoing::Close);
        }
    }

    pub fn go_away(&mut self, status: GoAwayStatus) {
        if self.go_away_sent || self.dead.is_some() {
            return;
        }
        self.go_away_sent = true;
        let last_good_stream_id = self.last_peer_stream_id;
        self.push_frame(Frame::GoAway {
            last_good_stream_id,
            status,
        });
        self.maybe_close();
    }

    /// Returns `n` consumed (or discarded) bytes to the peer's session window.
    pub fn ack_session(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.session_unacked = self.session_unacked.saturating_add(n);
        if self.session_unacked >= self.session_target / 2 {
            let delta = std::mem::take(&mut self.session_unacked).min(MAX_WINDOW_U32);
            self.push_frame(Frame::WindowUpdate {
                stream_id: 0,
                delta,
            });
        }
    }

    /// Accounts `n` bytes the application consumed from stream `id`.
    pub fn consumed(&mut self, id: u32, n: usize) {
        self.total_buffered = self.total_buffered.saturating_sub(n);
        let target = self.config.initial_window;
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv_buffered = s.recv_buffered.saturating_sub(n);
            s.recv_unacked = s
                .recv_unacked
                .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
            if !s.recv_fin && s.reset.is_none() && s.recv_unacked >= target / 2 {
                let delta = std::mem::take(&mut s.recv_unacked).min(MAX_WINDOW_U32);
                self.push_frame(Frame::WindowUpdate {
                    stream_id: id,
                    delta,
                });
            }
        }
        self.ack_session(n);
    }

    /// Wakes every stream waiting for send window (after a session WINDOW_UPDATE or SETTINGS).
    pub fn wake_senders(&mut self) {
        for s in self.streams.values_mut() {
            if let Some(w) = s.send_waker.take() {
                w.wake();
            }
        }
    }

    /// Receive-side buffering bound per stream before the reader stops reading (for peers that
    /// ignore our windows).
    pub fn stream_buffer_limit(&self) -> usize {
        (self.config.initial_window as usize).max(DEFAULT_WINDOW_U32 as usize)
    }

    pub fn session_buffer_limit(&self) -> usize {
        self.session_target as usize
    }
}
