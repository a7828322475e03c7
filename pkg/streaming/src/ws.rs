//! WebSocket transport: Kubernetes' channel framing over one tungstenite connection.
//!
//! `channel.k8s.io` prefixes each binary message with its channel byte; `base64.channel.k8s.io`
//! sends text messages whose first character is `'0' + channel` and whose rest is base64; `v5`
//! adds the `[255, ch]` message by which a client closes channel `ch` (stdin EOF). The tunnel
//! codec carries a raw byte stream in binary messages (SPDY inside WebSocket).
//!
//! One [`Pump`] owns the connection and moves messages both ways in a single poll loop, so a
//! slow reader on one side never stops the other direction, and everything is bounded: inbound
//! data waits in small per-channel queues (the pump stops reading while one is full), outbound
//! data in one small queue shared by the channel writers (writers wait while it is full).

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use futures_core::Stream;
use futures_sink::Sink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, WebSocketConfig, frame::coding::CloseCode,
};
use tokio_util::sync::PollSender;

use crate::remotecommand::CHUNK;

/// Messages queued towards the client (per connection).
const OUTBOUND_QUEUE: usize = 8;
/// Messages queued from the client (per channel).
const INBOUND_QUEUE: usize = 4;
/// Largest message accepted from a client.
const MAX_MESSAGE: usize = 1 << 20;
/// How long to wait for the client's close frame after ours.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// v5: a message on this channel closes the channel named by its single payload byte.
const CLOSE_CHANNEL: u8 = 255;

/// tungstenite settings for server connections.
pub(crate) fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(CHUNK)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Binary,
    Base64,
    /// No channels: the payload of binary messages is one byte stream (channel 0).
    Tunnel,
}

/// One outbound chunk.
pub(crate) struct Out {
    channel: u8,
    data: Bytes,
}

fn encode(codec: Codec, out: Out) -> Message {
    match codec {
        Codec::Binary => {
            let mut m = BytesMut::with_capacity(out.data.len() + 1);
            m.put_u8(out.channel);
            m.put_slice(&out.data);
            Message::Binary(m.freeze())
        }
        Codec::Base64 => {
            let mut text = String::with_capacity(out.data.len() * 4 / 3 + 4);
            text.push(char::from(b'0'.wrapping_add(out.channel)));
            base64::engine::general_purpose::STANDARD.encode_string(&out.data, &mut text);
            Message::text(text)
        }
        Codec::Tunnel => Message::Binary(out.data),
    }
}

/// What a client message means.
enum Inbound {
    Data(usize, Bytes),
    Close(usize),
    Ignore,
}

fn decode(codec: Codec, v5: bool, payload: Bytes) -> Inbound {
    if codec == Codec::Tunnel {
        return Inbound::Data(0, payload);
    }
    let Some(&first) = payload.first() else {
        return Inbound::Ignore;
    };
    let data = payload.slice(1..);
    match codec {
        Codec::Binary if v5 && first == CLOSE_CHANNEL => match data.as_ref() {
            [ch] => Inbound::Close(usize::from(*ch)),
            _ => {
                tracing::debug!("websocket close signal without exactly one channel byte");
                Inbound::Ignore
            }
        },
        Codec::Binary => Inbound::Data(usize::from(first), data),
        Codec::Base64 => {
            let Some(channel) = first.checked_sub(b'0') else {
                return Inbound::Ignore;
            };
            match base64::engine::general_purpose::STANDARD.decode(&data) {
                Ok(decoded) => Inbound::Data(usize::from(channel), Bytes::from(decoded)),
                Err(e) => {
                    tracing::debug!(error = %e, "invalid base64 websocket message");
                    Inbound::Ignore
                }
            }
        }
        Codec::Tunnel => Inbound::Data(0, payload),
    }
}

/// Builds the channels of one connection.
pub(crate) struct ChannelSet {
    codec: Codec,
    v5: bool,
    inbound: Vec<Option<PollSender<Bytes>>>,
    out_tx: mpsc::Sender<Out>,
    out_rx: mpsc::Receiver<Out>,
}

impl ChannelSet {
    pub(crate) fn new(codec: Codec, v5: bool) -> ChannelSet {
        let (out_tx, out_rx) = mpsc::channel(OUTBOUND_QUEUE);
        ChannelSet {
            codec,
            v5,
            inbound: Vec::new(),
            out_tx,
            out_rx,
        }
    }

    /// The reader for what the client sends on `channel`.
    pub(crate) fn reader(&mut self, channel: u8) -> ChannelReader {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let index = usize::from(channel);
        if self.inbound.len() <= index {
            self.inbound.resize_with(index + 1, || None);
        }
        self.inbound[index] = Some(PollSender::new(tx));
        ChannelReader {
            rx,
            buf: Bytes::new(),
        }
    }

    /// A writer to the client on `channel`.
    pub(crate) fn writer(&self, channel: u8) -> ChannelWriter {
        ChannelWriter {
            channel,
            tx: PollSender::new(self.out_tx.clone()),
        }
    }

    /// Starts moving messages; the pump ends when the client goes away, or (after a close
    /// handshake) once every writer is dropped.
    pub(crate) fn pump<S>(self, ws: WebSocketStream<S>) -> Pump<S> {
        let ChannelSet {
            codec,
            v5,
            inbound,
            out_tx,
            out_rx,
        } = self;
        drop(out_tx);
        Pump {
            ws,
            codec,
            v5,
            inbound,
            outbound: out_rx,
            pending_in: None,
            pending_out: None,
            flush: false,
            out_closed: false,
            close_sent: false,
        }
    }
}

/// How a pump ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PumpEnd {
    /// The client closed, went away, or broke the protocol.
    ClientGone,
    /// All writers were dropped and our close frame is out.
    Closed,
}

pub(crate) struct Pump<S> {
    ws: WebSocketStream<S>,
    codec: Codec,
    v5: bool,
    inbound: Vec<Option<PollSender<Bytes>>>,
    outbound: mpsc::Receiver<Out>,
    pending_in: Option<(usize, Bytes)>,
    pending_out: Option<Message>,
    flush: bool,
    out_closed: bool,
    close_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Pump<S> {
    /// Runs until the client is gone, or until our close handshake finished (bounded wait).
    pub(crate) async fn run(mut self) -> PumpEnd {
        let end = poll_fn(|cx| self.poll_step(cx)).await;
        if end == PumpEnd::ClientGone {
            // Send the close reply tungstenite queued, if the connection still takes it.
            let ws = &mut self.ws;
            let _ =
                tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| Pin::new(&mut *ws).poll_flush(cx)))
                    .await;
        } else {
            // Read (and drop) until the client answers our close frame.
            let _ = tokio::time::timeout(CLOSE_GRACE, poll_fn(|cx| self.poll_drain(cx))).await;
        }
        end
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match Pin::new(&mut self.ws).poll_next(cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<PumpEnd> {
        loop {
            let mut progress = false;

            // Hand the last message read to its channel.
            if let Some((index, data)) = self.pending_in.take()
                && let Some(Some(tx)) = self.inbound.get_mut(index)
            {
                match tx.poll_reserve(cx) {
                    Poll::Ready(Ok(())) => {
                        let _ = tx.send_item(data);
                        progress = true;
                    }
                    Poll::Ready(Err(_)) => {
                        // Nobody reads this channel any more.
                        self.inbound[index] = None;
                        progress = true;
                    }
                    Poll::Pending => self.pending_in = Some((index, data)),
                }
            }

            // Read from the client, unless a channel is full.
            if self.pending_in.is_none() {
                match Pin::new(&mut self.ws).poll_next(cx) {
                    Poll::Ready(Some(Ok(message))) => {
                        progress = true;
                        if self.receive(message) {
                            return Poll::Ready(PumpEnd::ClientGone);
                        }
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %e, "websocket read failed");
                        return Poll::Ready(PumpEnd::ClientGone);
                    }
                    Poll::Ready(None) => return Poll::Ready(PumpEnd::ClientGone),
                    Poll::Pending => {}
                }
            }

            // Write to the client.
            if self.pending_out.is_none() && !self.out_closed {
                match self.outbound.poll_recv(cx) {
                    Poll::Ready(Some(out)) => self.pending_out = Some(encode(self.codec, out)),
                    Poll::Ready(None) => {
                        self.out_closed = true;
                        self.pending_out = Some(Message::Close(Some(CloseFrame {
                            code: CloseCode::Normal,
                            reason: "".into(),
                        })));
                    }
                    Poll::Pending => {}
                }
            }
            if let Some(message) = self.pending_out.take() {
                match Pin::new(&mut self.ws).poll_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        let close = matches!(message, Message::Close(_));
                        if let Err(e) = Pin::new(&mut self.ws).start_send(message) {
                            tracing::debug!(error = %e, "websocket write failed");
                            return Poll::Ready(PumpEnd::ClientGone);
                        }
                        self.close_sent |= close;
                        self.flush = true;
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "websocket write failed");
                        return Poll::Ready(PumpEnd::ClientGone);
                    }
                    Poll::Pending => self.pending_out = Some(message),
                }
            }
            if self.flush {
                match Pin::new(&mut self.ws).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {
                        self.flush = false;
                        if self.close_sent {
                            return Poll::Ready(PumpEnd::Closed);
                        }
                    }
                    Poll::Ready(Err(e)) => {
                        tracing::debug!(error = %e, "websocket flush failed");
                        return Poll::Ready(PumpEnd::ClientGone);
                    }
                    Poll::Pending => {}
                }
            }

            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Routes one client message; true when the client closed the connection.
    fn receive(&mut self, message: Message) -> bool {
        let payload = match message {
            Message::Binary(b) => b,
            Message::Text(t) => Bytes::from(t),
            Message::Close(_) => return true,
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => return false,
        };
        match decode(self.codec, self.v5, payload) {
            Inbound::Data(index, data) => {
                if data.is_empty() {
                    return false;
                }
                match self.inbound.get(index) {
                    Some(Some(_)) => self.pending_in = Some((index, data)),
                    Some(None) => {}
                    None => tracing::trace!(channel = index, "message for an unknown channel"),
                }
            }
            Inbound::Close(index) => {
                if let Some(slot) = self.inbound.get_mut(index) {
                    // Dropping the sender is EOF for the channel's reader.
                    *slot = None;
                }
            }
            Inbound::Ignore => {}
        }
        false
    }
}

/// What the client sends on one channel, as a byte stream (EOF when the channel is closed or
/// the connection ends).
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    buf: Bytes,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.buf.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(data)) => self.buf = data,
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.buf.len().min(out.remaining());
        out.put_slice(&self.buf.split_to(n));
        Poll::Ready(Ok(()))
    }
}

/// Writes to the client on one channel. Shutdown is a no-op: channels have no half-close
/// towards the client.
pub(crate) struct ChannelWriter {
    channel: u8,
    tx: PollSender<Out>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.tx.poll_reserve(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "websocket connection closed",
                )));
            }
            Poll::Pending => return Poll::Pending,
        }
        let n = data.len().min(CHUNK);
        let out = Out {
            channel: self.channel,
            data: Bytes::copy_from_slice(&data[..n]),
        };
        match self.tx.send_item(out) {
            Ok(()) => Poll::Ready(Ok(n)),
            Err(_) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "websocket connection closed",
            ))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl ChannelWriter {
    /// Queues one message as is (even empty: kubelet's "connection established" message).
    pub(crate) async fn send(&mut self, data: Bytes) -> io::Result<()> {
        let out = Out {
            channel: self.channel,
            data,
        };
        poll_fn(|cx| self.tx.poll_reserve(cx)).await.map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "websocket connection closed")
        })?;
        self.tx
            .send_item(out)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "websocket connection closed"))
    }
}

/// A channel reader and writer as one byte stream (what the SPDY-in-WebSocket tunnel runs on).
pub(crate) struct Duplex {
    pub reader: ChannelReader,
    pub writer: ChannelWriter,
}

impl AsyncRead for Duplex {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Duplex {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(i: Inbound) -> Option<(usize, Vec<u8>)> {
        match i {
            Inbound::Data(ch, d) => Some((ch, d.to_vec())),
            _ => None,
        }
    }

    #[test]
    fn codecs() {
        let Message::Binary(b) = encode(
            Codec::Binary,
            Out {
                channel: 1,
                data: Bytes::from_static(b"hi"),
            },
        ) else {
            panic!()
        };
        assert_eq!(&b[..], b"\x01hi");
        let Message::Text(t) = encode(
            Codec::Base64,
            Out {
                channel: 2,
                data: Bytes::from_static(b"foo\n"),
            },
        ) else {
            panic!()
        };
        assert_eq!(t.as_str(), "2Zm9vCg==");
        assert_eq!(
            data(decode(
                Codec::Base64,
                false,
                Bytes::from_static(b"0Zm9vCg==")
            )),
            Some((0, b"foo\n".to_vec()))
        );
        assert_eq!(
            data(decode(Codec::Binary, true, Bytes::from_static(b"\x00abc"))),
            Some((0, b"abc".to_vec()))
        );
        assert!(matches!(
            decode(Codec::Binary, true, Bytes::from_static(b"\xff\x00")),
            Inbound::Close(0)
        ));
        // Without v5, 255 is just an unknown channel.
        assert_eq!(
            data(decode(
                Codec::Binary,
                false,
                Bytes::from_static(b"\xff\x00")
            )),
            Some((255, vec![0]))
        );
        assert!(matches!(
            decode(Codec::Base64, false, Bytes::from_static(b"0!!")),
            Inbound::Ignore
        ));
        assert!(matches!(
            decode(Codec::Binary, false, Bytes::new()),
            Inbound::Ignore
        ));
    }
}
