//! A SPDY/3.1 client session over an upgraded HTTP/1.1 connection: one task reads frames, one writes
//! them; streams are opened by the client only (as kubectl and kubelet's clients do).
//!
//! Flow control, as the SPDY/3.1 draft has it but only toward a peer that does flow control:
//! moby/spdystream (behind kubelet's and containerd's streaming servers, and kubectl) does none
//! (it never sends SETTINGS or WINDOW_UPDATE and ignores them), so a strict sender would stall after
//! 64 KiB. Once the peer has sent SETTINGS or a WINDOW_UPDATE (a strict server sends SETTINGS first),
//! sent DATA stays within its windows (accounted from the start), and received DATA is credited back
//! with WINDOW_UPDATEs (stream and session) as the reader consumes it, so the server keeps sending.
//! Toward spdystream no WINDOW_UPDATE is sent: a frame it has not read when it closes the connection
//! makes the kernel reset it, and the reset drops output still in the server's send buffer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::frame::{self, Deflater, Frame, Inflater};

/// SPDY/3.1's initial stream and session windows.
const DEFAULT_WINDOW: i64 = 64 * 1024;
/// Credit received data back once this much of a window was consumed.
const UPDATE_THRESHOLD: u32 = 32 * 1024;
/// Largest DATA frame we send.
const MAX_CHUNK: usize = 16 * 1024;
/// How long to wait for a SYN_REPLY.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a stream's receiver gets.
enum Incoming {
    Data(Vec<u8>),
    /// FIN, RST_STREAM or the connection's end: no more data.
    End(Option<String>),
}

struct StreamState {
    tx: mpsc::UnboundedSender<Incoming>,
    reply: Option<oneshot::Sender<Result<(), String>>>,
    send_window: i64,
}

struct State {
    next_id: u32,
    streams: HashMap<u32, StreamState>,
    session_window: i64,
    initial_window: i64,
    /// The peer sent WINDOW_UPDATE or SETTINGS: it does flow control.
    peer_flow_control: bool,
    /// Bytes consumed on the session not yet credited back.
    session_unacked: u32,
    closed: Option<String>,
    deflate: Deflater,
    out: mpsc::UnboundedSender<Vec<u8>>,
}

struct Shared {
    state: Mutex<State>,
    window_changed: Notify,
}

/// A client SPDY session. Cheap to clone; the connection closes when the last [`SessionGuard`]
/// clone is dropped (its tasks are aborted then).
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
}

/// Owns the session's reader and writer tasks.
pub struct SessionGuard {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The sending half of a stream (clonable).
#[derive(Clone)]
pub struct SendStream {
    id: u32,
    session: Session,
}

/// The receiving half of a stream.
pub struct RecvStream {
    id: u32,
    session: Session,
    rx: mpsc::UnboundedReceiver<Incoming>,
    unacked: u32,
    end: Option<Option<String>>,
}

impl Session {
    /// Starts a session on an upgraded connection; `leftover` is what was read past the HTTP head.
    pub fn start<T>(io: T, leftover: Vec<u8>) -> anyhow::Result<(Session, SessionGuard)>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        let (out, out_rx) = mpsc::unbounded_channel();
        let session = Session {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    next_id: 1,
                    streams: HashMap::new(),
                    session_window: DEFAULT_WINDOW,
                    initial_window: DEFAULT_WINDOW,
                    peer_flow_control: false,
                    session_unacked: 0,
                    closed: None,
                    deflate: Deflater::new()?,
                    out,
                }),
                window_changed: Notify::new(),
            }),
        };
        let read_task = tokio::spawn({
            let session = session.clone();
            async move {
                let why = match session.read_loop(reader, leftover).await {
                    Ok(()) => "connection closed by the server".to_string(),
                    Err(e) => format!("{e:#}"),
                };
                session.close(why);
            }
        });
        let write_task = tokio::spawn(write_loop(writer, out_rx));
        Ok((
            session,
            SessionGuard {
                tasks: vec![read_task, write_task],
            },
        ))
    }

    /// Opens a stream with `headers` and waits for the server's SYN_REPLY.
    pub async fn open(&self, headers: &[(&str, &str)]) -> anyhow::Result<(SendStream, RecvStream)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let id = {
            let mut st = self.shared.state.lock().unwrap();
            if let Some(why) = &st.closed {
                bail!("SPDY session closed: {why}");
            }
            let id = st.next_id;
            st.next_id += 2;
            let block = st.deflate.block(headers)?;
            let window = st.initial_window;
            st.streams.insert(
                id,
                StreamState {
                    tx,
                    reply: Some(reply_tx),
                    send_window: window,
                },
            );
            // Under the lock: stream ids must reach the wire in increasing order.
            let _ = st.out.send(frame::syn_stream(id, false, &block));
            id
        };
        match tokio::time::timeout(REPLY_TIMEOUT, reply_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(why))) => bail!("stream {id} {headers:?} refused: {why}"),
            Ok(Err(_)) => bail!("stream {id} {headers:?}: session gone"),
            Err(_) => bail!("no SYN_REPLY for stream {id} {headers:?} within {REPLY_TIMEOUT:?}"),
        }
        let session = self.clone();
        Ok((
            SendStream {
                id,
                session: session.clone(),
            },
            RecvStream {
                id,
                session,
                rx,
                unacked: 0,
                end: None,
            },
        ))
    }

    /// Sends GOAWAY (no new streams; the server closes once its streams are done).
    pub fn go_away(&self) {
        let st = self.shared.state.lock().unwrap();
        let _ = st.out.send(frame::go_away(0));
    }

    /// Why the session ended, once it has.
    pub fn closed(&self) -> Option<String> {
        self.shared.state.lock().unwrap().closed.clone()
    }

    fn send_raw(&self, bytes: Vec<u8>) {
        let st = self.shared.state.lock().unwrap();
        let _ = st.out.send(bytes);
    }

    fn close(&self, why: String) {
        let mut st = self.shared.state.lock().unwrap();
        if st.closed.is_none() {
            st.closed = Some(why.clone());
        }
        for (_, stream) in st.streams.drain() {
            if let Some(reply) = stream.reply {
                let _ = reply.send(Err(why.clone()));
            }
            let _ = stream.tx.send(Incoming::End(Some(why.clone())));
        }
        drop(st);
        self.shared.window_changed.notify_waiters();
    }

    async fn read_loop<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        leftover: Vec<u8>,
    ) -> anyhow::Result<()> {
        let mut inflate = Inflater::new();
        let mut reader = (&leftover[..]).chain(&mut reader);
        loop {
            let mut head = [0u8; 8];
            match reader.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e).context("reading a SPDY frame"),
            }
            let head = frame::parse_head(&head)?;
            let mut payload = vec![0u8; head.len];
            reader
                .read_exact(&mut payload)
                .await
                .context("reading a SPDY frame's payload")?;
            let frame = frame::decode(&head, payload, &mut inflate)?;
            self.handle(frame);
        }
    }

    fn handle(&self, frame: Frame) {
        let mut st = self.shared.state.lock().unwrap();
        match frame {
            Frame::Data { stream, fin, data } => {
                // A frame carries at most 2^24 bytes.
                let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                let delivered = match st.streams.get(&stream) {
                    Some(s) if !data.is_empty() => s.tx.send(Incoming::Data(data)).is_ok(),
                    _ => false,
                };
                if !delivered && len > 0 {
                    // Nobody reads it: credit the session window right away.
                    credit_session(&mut st, len);
                }
                if fin {
                    end_stream(&mut st, stream, None);
                }
            }
            Frame::SynReply { stream, fin, .. } => {
                if let Some(s) = st.streams.get_mut(&stream)
                    && let Some(reply) = s.reply.take()
                {
                    let _ = reply.send(Ok(()));
                }
                if fin {
                    end_stream(&mut st, stream, None);
                }
            }
            Frame::Headers { stream, fin } => {
                if fin {
                    end_stream(&mut st, stream, None);
                }
            }
            Frame::RstStream { stream, status } => {
                let why = format!("reset by the server (status {status})");
                if let Some(mut s) = st.streams.remove(&stream) {
                    if let Some(reply) = s.reply.take() {
                        let _ = reply.send(Err(why.clone()));
                    }
                    let _ = s.tx.send(Incoming::End(Some(why)));
                }
                drop(st);
                self.shared.window_changed.notify_waiters();
            }
            Frame::Settings { entries } => {
                st.peer_flow_control = true;
                for (id, value) in entries {
                    if id == frame::SETTINGS_INITIAL_WINDOW_SIZE {
                        let delta = value as i64 - st.initial_window;
                        st.initial_window = value as i64;
                        for s in st.streams.values_mut() {
                            s.send_window += delta;
                        }
                    }
                }
                drop(st);
                self.shared.window_changed.notify_waiters();
            }
            Frame::WindowUpdate { stream, delta } => {
                st.peer_flow_control = true;
                if stream == 0 {
                    st.session_window += delta as i64;
                } else if let Some(s) = st.streams.get_mut(&stream) {
                    s.send_window += delta as i64;
                }
                drop(st);
                self.shared.window_changed.notify_waiters();
            }
            Frame::Ping { id } => {
                // Server pings have even ids; echo them.
                if id % 2 == 0 {
                    let _ = st.out.send(frame::ping(id));
                }
            }
            Frame::SynStream { stream, .. } => {
                let _ = st
                    .out
                    .send(frame::rst_stream(stream, frame::RST_REFUSED_STREAM));
            }
            Frame::GoAway { .. } | Frame::Unknown { .. } => {}
        }
    }

    /// Sends `data` on stream `id` within the windows, in chunks.
    async fn send_data(&self, id: u32, mut data: &[u8], fin: bool) -> anyhow::Result<()> {
        loop {
            let chunk = loop {
                let notified = self.shared.window_changed.notified();
                {
                    let mut st = self.shared.state.lock().unwrap();
                    if let Some(why) = &st.closed {
                        bail!("SPDY session closed: {why}");
                    }
                    let enforce = st.peer_flow_control;
                    let session_window = st.session_window;
                    let Some(s) = st.streams.get_mut(&id) else {
                        bail!("stream {id} was reset or closed");
                    };
                    let window = s.send_window.min(session_window);
                    if data.is_empty() || !enforce || window > 0 {
                        let n = if enforce {
                            data.len()
                                .min(MAX_CHUNK)
                                .min(usize::try_from(window.max(0)).unwrap_or(usize::MAX))
                        } else {
                            data.len().min(MAX_CHUNK)
                        };
                        s.send_window -= n as i64;
                        st.session_window -= n as i64;
                        let last = n == data.len();
                        let _ = st.out.send(frame::data(id, fin && last, &data[..n]));
                        break n;
                    }
                }
                notified.await;
            };
            data = &data[chunk..];
            if data.is_empty() {
                return Ok(());
            }
        }
    }
}

fn credit_session(st: &mut State, len: u32) {
    st.session_unacked = st.session_unacked.saturating_add(len);
    if st.peer_flow_control && st.session_unacked >= UPDATE_THRESHOLD {
        let _ = st.out.send(frame::window_update(0, st.session_unacked));
        st.session_unacked = 0;
    }
}

/// The peer is done sending on `id`; the stream is forgotten once our side is done too (we keep it
/// for sending, so only the receiver is told).
fn end_stream(st: &mut State, id: u32, why: Option<String>) {
    if let Some(s) = st.streams.get(&id) {
        let _ = s.tx.send(Incoming::End(why));
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(writer: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut writer = tokio::io::BufWriter::new(writer);
    while let Some(bytes) = rx.recv().await {
        if writer.write_all(&bytes).await.is_err() {
            return;
        }
        // Batch what is queued already, then flush.
        while let Ok(more) = rx.try_recv() {
            if writer.write_all(&more).await.is_err() {
                return;
            }
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

impl SendStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends data, waiting for window as needed.
    pub async fn send(&self, data: &[u8]) -> anyhow::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.session.send_data(self.id, data, false).await
    }

    /// Half-closes the stream (empty DATA with FLAG_FIN).
    pub async fn finish(&self) -> anyhow::Result<()> {
        self.session.send_data(self.id, &[], true).await
    }

    /// RST_STREAM CANCEL.
    pub fn reset(&self) {
        self.session
            .send_raw(frame::rst_stream(self.id, frame::RST_CANCEL));
        self.session
            .shared
            .state
            .lock()
            .unwrap()
            .streams
            .remove(&self.id);
    }
}

impl RecvStream {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next data; `None` once the server finished or reset the stream (see [`Self::end_reason`]).
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        if self.end.is_some() {
            return None;
        }
        match self.rx.recv().await {
            Some(Incoming::Data(data)) => {
                self.consumed(u32::try_from(data.len()).unwrap_or(u32::MAX));
                Some(data)
            }
            Some(Incoming::End(why)) => {
                self.end = Some(why);
                None
            }
            None => {
                self.end = Some(Some("session gone".into()));
                None
            }
        }
    }

    /// Everything until the end of the stream.
    pub async fn read_all(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(data) = self.recv().await {
            all.extend_from_slice(&data);
        }
        all
    }

    /// `None` for a clean FIN, else why the stream ended (reset, connection lost).
    pub fn end_reason(&self) -> Option<String> {
        self.end.clone().flatten()
    }

    fn consumed(&mut self, len: u32) {
        self.unacked = self.unacked.saturating_add(len);
        let mut st = self.session.shared.state.lock().unwrap();
        if st.peer_flow_control && self.unacked >= UPDATE_THRESHOLD {
            let _ = st.out.send(frame::window_update(self.id, self.unacked));
            self.unacked = 0;
        }
        credit_session(&mut st, len);
    }
}

/// Parses `http://host:port/path` (the only form CRI streaming URLs take without TLS).
pub fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("only http:// streaming URLs are supported, not {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((authority.to_string(), path.to_string()))
}
