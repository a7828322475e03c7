//! The reader task: parses frames, decompresses header blocks (every block, even for streams it
//! then ignores, to keep the shared zlib context in step), and applies them to the session state.
//!
//! Frames on streams that are not open follow the spec where that cannot hurt the real peer:
//! DATA/SYN_REPLY/HEADERS for a stream id never opened get RST_STREAM(INVALID_STREAM); DATA
//! after the peer's FIN gets RST_STREAM(STREAM_ALREADY_CLOSED); frames for streams that were
//! open and are gone (closed or reset) are dropped silently, since they may have crossed our
//! RST_STREAM. A SYN_STREAM with a stale, reused or wrong-parity id is refused with
//! RST_STREAM(PROTOCOL_ERROR / STREAM_IN_USE), like spdystream does; one past our
//! max-concurrent-streams gets REFUSED_STREAM; after we sent GOAWAY new streams are ignored.
//! Malformed frames and undecodable header blocks end the session with GOAWAY(PROTOCOL_ERROR).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::SpdyError;
use crate::frame::{self, Frame, GoAwayStatus, RstStatus, setting};
use crate::headers::{Decoder, Headers};
use crate::session::Role;
use crate::session::state::{MAX_WINDOW, MAX_WINDOW_U32, Outgoing, Shared, State, StreamState};
use crate::session::stream::Stream;

pub(crate) async fn run<R: AsyncRead + Unpin>(shared: Arc<Shared>, io: R) {
    let mut closed = shared.closed.subscribe();
    let result = tokio::select! {
        r = read_loop(&shared, io) => r,
        _ = closed.wait_for(|c| *c) => return,
    };
    match result {
        Ok(()) => shared.kill(SpdyError::ConnectionClosed),
        Err(err @ (SpdyError::Frame(_) | SpdyError::Header(_) | SpdyError::Protocol(_))) => {
            tracing::debug!(error = %err, "SPDY peer broke the protocol");
            {
                let mut st = shared.lock();
                st.go_away_sent = false;
                st.go_away(GoAwayStatus::ProtocolError);
                st.push(Outgoing::Close);
            }
            shared.write_wake.notify_one();
            let _ = tokio::time::timeout(Duration::from_secs(1), closed.wait_for(|c| *c)).await;
            shared.kill(err);
        }
        Err(err) => shared.kill(err),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(shared: &Arc<Shared>, mut io: R) -> Result<(), SpdyError> {
    let max = shared.lock().config.max_frame_len;
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut incoming_closed = false;
    loop {
        while let Some((frame, n)) = frame::parse(&buf, max)? {
            buf.advance(n);
            if let Some(id) = handle(shared, &mut decoder, frame).await? {
                backpressure(shared, id, &mut io, &mut buf).await?;
            }
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        let incoming = shared.lock().incoming.clone();
        let read = tokio::select! {
            r = io.read_buf(&mut buf) => r?,
            _ = async {
                match &incoming {
                    Some(tx) if !incoming_closed => tx.closed().await,
                    _ => std::future::pending().await,
                }
            } => {
                // The server application dropped its stream receiver.
                incoming_closed = true;
                let mut st = shared.lock();
                if !st.handles_alive {
                    st.go_away(GoAwayStatus::Ok);
                }
                drop(st);
                shared.write_wake.notify_one();
                continue;
            }
        };
        if read == 0 {
            return Ok(());
        }
    }
}

fn decode(decoder: &mut Decoder, block: &[u8]) -> Result<Headers, SpdyError> {
    Ok(decoder.decode(block)?)
}

/// Whether `id` has the parity of streams opened by `role`.
fn opened_by(role: Role, id: u32) -> bool {
    (id % 2 == 1) == (role == Role::Client)
}

/// Whether a stream id not in the map was ever opened (so it is closed rather than unknown).
fn was_opened(st: &State, id: u32) -> bool {
    if opened_by(st.role, id) {
        id < st.next_stream_id
    } else {
        id <= st.last_peer_stream_id
    }
}

/// Applies one frame; returns a stream id when the reader must wait for that stream to drain.
async fn handle(
    shared: &Arc<Shared>,
    decoder: &mut Decoder,
    frame: Frame,
) -> Result<Option<u32>, SpdyError> {
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let wait = on_data(&mut shared.lock(), stream_id, fin, data);
            shared.write_wake.notify_one();
            if wait {
                return Ok(Some(stream_id));
            }
        }
        Frame::SynStream {
            stream_id,
            fin,
            unidirectional,
            header_block,
            ..
        } => {
            let headers = decode(decoder, &header_block)?;
            let stream = on_syn_stream(
                shared,
                stream_id,
                fin || unidirectional,
                unidirectional,
                headers,
            );
            shared.write_wake.notify_one();
            if let Some(stream) = stream {
                let tx = shared.lock().incoming.clone();
                // Never blocks the reader: if the application is that far behind (or gone), the
                // stream is dropped, which refuses it.
                if let Some(tx) = tx {
                    drop(tx.try_send(stream));
                }
            }
        }
        Frame::SynReply {
            stream_id,
            fin,
            header_block,
        } => {
            let headers = decode(decoder, &header_block)?;
            let mut st = shared.lock();
            let known = st
                .streams
                .get(&stream_id)
                .map(|s| (s.local, s.replied, s.reset.is_some()));
            match known {
                Some((true, false, _)) => {
                    if let Some(s) = st.streams.get_mut(&stream_id) {
                        s.replied = true;
                        if let Some(tx) = s.reply_tx.take() {
                            let _ = tx.send(Ok(headers));
                        }
                    }
                    if fin {
                        remote_fin(&mut st, stream_id);
                    }
                }
                Some((local, _, false)) => {
                    let status = if local {
                        RstStatus::StreamInUse
                    } else {
                        RstStatus::ProtocolError
                    };
                    st.rst(stream_id, status);
                    st.reset_stream(stream_id, status);
                }
                Some(_) => {}
                None if was_opened(&st, stream_id) => {}
                None => st.rst(stream_id, RstStatus::InvalidStream),
            }
            drop(st);
            shared.write_wake.notify_one();
        }
        Frame::Headers {
            stream_id,
            fin,
            header_block,
        } => {
            // Extra headers carry nothing the Kubernetes protocols use; only FIN matters.
            let _ = decode(decoder, &header_block)?;
            let mut st = shared.lock();
            match st.streams.get(&stream_id) {
                Some(_) if fin => remote_fin(&mut st, stream_id),
                Some(_) => {}
                None if was_opened(&st, stream_id) => {}
                None => st.rst(stream_id, RstStatus::InvalidStream),
            }
            drop(st);
            shared.write_wake.notify_one();
        }
        Frame::RstStream { stream_id, status } => {
            let mut st = shared.lock();
            st.reset_stream(stream_id, status);
        }
        Frame::Settings { entries, .. } => {
            let mut st = shared.lock();
            for e in entries {
                match e.id {
                    setting::INITIAL_WINDOW_SIZE if i64::from(e.value) <= MAX_WINDOW => {
                        let delta = i64::from(e.value) - st.peer_initial_window;
                        st.peer_initial_window = i64::from(e.value);
                        st.peer_flow_control = true;
                        for s in st.streams.values_mut() {
                            s.send_window += delta;
                        }
                        st.wake_senders();
                    }
                    setting::MAX_CONCURRENT_STREAMS => {
                        st.peer_max_streams = e.value;
                        for w in st.open_waiters.drain(..) {
                            w.wake();
                        }
                    }
                    _ => {}
                }
            }
        }
        Frame::Ping { id } => {
            let mut st = shared.lock();
            if opened_by(st.role, id) {
                if let Some(tx) = st.pings.remove(&id) {
                    let _ = tx.send(());
                }
            } else {
                st.push_frame(Frame::Ping { id });
                drop(st);
                shared.write_wake.notify_one();
            }
        }
        Frame::GoAway {
            last_good_stream_id,
            ..
        } => {
            let mut st = shared.lock();
            st.go_away_received = Some(last_good_stream_id);
            // Our streams the peer never saw are refused.
            let refused: Vec<u32> = st
                .streams
                .iter()
                .filter(|(id, s)| s.local && **id > last_good_stream_id)
                .map(|(id, _)| *id)
                .collect();
            for id in refused {
                st.reset_stream(id, RstStatus::RefusedStream);
            }
            for w in st.open_waiters.drain(..) {
                w.wake();
            }
            st.maybe_close();
            drop(st);
            shared.write_wake.notify_one();
        }
        Frame::WindowUpdate { stream_id, delta } => {
            let mut st = shared.lock();
            st.peer_flow_control = true;
            if stream_id == 0 {
                st.send_window = (st.send_window + i64::from(delta)).min(MAX_WINDOW);
                st.wake_senders();
            } else if let Some(s) = st.streams.get_mut(&stream_id) {
                s.send_window += i64::from(delta);
                if s.send_window > MAX_WINDOW && s.reset.is_none() {
                    st.rst(stream_id, RstStatus::FlowControlError);
                    st.reset_stream(stream_id, RstStatus::FlowControlError);
                    drop(st);
                    shared.write_wake.notify_one();
                } else if let Some(w) = s.send_waker.take() {
                    w.wake();
                }
            }
        }
        Frame::Unknown { frame_type, .. } => {
            tracing::trace!(frame_type, "ignoring unknown SPDY control frame");
        }
    }
    Ok(None)
}

fn remote_fin(st: &mut State, id: u32) {
    if let Some(s) = st.streams.get_mut(&id) {
        s.recv_fin = true;
        if let Some(w) = s.recv_waker.take() {
            w.wake();
        }
    }
    st.settle(id);
}

/// Applies a DATA frame; returns whether the reader should wait for the application to drain.
fn on_data(st: &mut State, id: u32, fin: bool, data: bytes::Bytes) -> bool {
    let n = data.len();
    let stream_limit = st.stream_buffer_limit();
    let session_limit = st.session_buffer_limit();
    let Some(s) = st.streams.get_mut(&id) else {
        st.ack_session(n);
        if !was_opened(st, id) {
            st.rst(id, RstStatus::InvalidStream);
        }
        return false;
    };
    if s.reset.is_some() {
        st.ack_session(n);
        return false;
    }
    if s.recv_fin {
        st.ack_session(n);
        st.rst(id, RstStatus::StreamAlreadyClosed);
        st.reset_stream(id, RstStatus::StreamAlreadyClosed);
        return false;
    }
    let mut wait = false;
    if s.recv_dropped {
        // Nobody reads: discard, but give the window back so the peer is not stalled.
        s.recv_unacked = s
            .recv_unacked
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        let target = st.config.initial_window;
        if !fin && s.recv_unacked >= target / 2 {
            let delta = std::mem::take(&mut s.recv_unacked).min(MAX_WINDOW_U32);
            st.push_frame(Frame::WindowUpdate {
                stream_id: id,
                delta,
            });
        }
        st.ack_session(n);
    } else if n > 0 {
        s.recv_buf.push_back(data);
        s.recv_buffered += n;
        wait = s.recv_buffered > stream_limit;
        if let Some(w) = s.recv_waker.take() {
            w.wake();
        }
        st.total_buffered += n;
        wait |= st.total_buffered > session_limit;
    }
    if fin {
        remote_fin(st, id);
    }
    wait
}

/// Stops parsing until the application drained stream `id` (or the session) below its limit.
/// The connection is still read meanwhile, up to a bounded amount, so that its end is noticed
/// (and the session torn down, waking everyone) even while the application is stuck.
async fn backpressure<R: AsyncRead + Unpin>(
    shared: &Shared,
    id: u32,
    io: &mut R,
    buf: &mut BytesMut,
) -> Result<(), SpdyError> {
    let cap = buf.len() + 64 * 1024;
    let mut eof = false;
    loop {
        let notified = shared.recv_progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let st = shared.lock();
            if st.dead.is_some() {
                return Ok(());
            }
            let over_stream = st.streams.get(&id).is_some_and(|s| {
                !s.recv_dropped && s.reset.is_none() && s.recv_buffered > st.stream_buffer_limit()
            });
            if !over_stream && st.total_buffered <= st.session_buffer_limit() {
                return Ok(());
            }
        }
        if eof {
            // The peer is gone; what it sent can no longer matter.
            return Err(SpdyError::ConnectionClosed);
        }
        let room = buf.len() < cap;
        if room && buf.capacity() == buf.len() {
            buf.reserve(16 * 1024);
        }
        tokio::select! {
            _ = notified => {}
            r = io.read_buf(buf), if room => eof = r? == 0,
        }
    }
}

fn on_syn_stream(
    shared: &Arc<Shared>,
    id: u32,
    fin: bool,
    unidirectional: bool,
    headers: Headers,
) -> Option<Stream> {
    let mut st = shared.lock();
    if st.go_away_sent || st.dead.is_some() {
        return None;
    }
    if st.streams.contains_key(&id) {
        st.rst(id, RstStatus::StreamInUse);
        return None;
    }
    if opened_by(st.role, id) || id <= st.last_peer_stream_id {
        st.rst(id, RstStatus::ProtocolError);
        return None;
    }
    st.last_peer_stream_id = id;
    if st.active_remote >= st.config.max_streams || st.incoming.is_none() {
        st.rst(id, RstStatus::RefusedStream);
        return None;
    }
    st.active_remote += 1;
    let send_window = st.peer_initial_window;
    st.streams.insert(
        id,
        StreamState {
            local: false,
            recv_fin: fin,
            // A unidirectional stream is never answered: our side is closed from the start.
            send_fin: unidirectional,
            replied: unidirectional,
            send_window,
            handles: 2,
            active: true,
            ..StreamState::default()
        },
    );
    drop(st);
    Some(Stream::new(shared.clone(), id, headers, None))
}
