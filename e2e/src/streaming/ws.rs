//! The WebSocket transport: every message is one channel's data, the channel number first (a byte,
//! or an ASCII digit followed by base64 for `*.base64.channel.k8s.io`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::portforward::PortForwardStream;
use super::remote::Event;
use super::spdy::session::split_url;
use super::{HttpError, WsVersion};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Aborts tasks when dropped (the socket closes with them).
pub(crate) struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Opens a WebSocket to `url` (`http://` becomes `ws://`) offering `protocols`; returns the stream
/// and the protocol the server chose. A non-101 answer is an [`HttpError`].
pub async fn connect(
    url: &str,
    protocols: &[&str],
) -> anyhow::Result<(WebSocketStream<TcpStream>, String)> {
    let (authority, path) = split_url(url)?;
    let mut request = format!("ws://{authority}{path}")
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL from {url}"))?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_str(&protocols.join(", "))?,
    );
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
        .await
        .with_context(|| format!("connecting to {authority}: timed out"))?
        .with_context(|| format!("connecting to {authority}"))?;
    tcp.set_nodelay(true)?;
    let (stream, response) = match tokio_tungstenite::client_async(request, tcp).await {
        Ok(ok) => ok,
        Err(WsError::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(HttpError {
                status: response.status().as_u16(),
                body,
            }
            .into());
        }
        Err(e) => return Err(e).context("WebSocket handshake"),
    };
    let protocol = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((stream, protocol))
}

/// The sending side of a remote command WebSocket.
pub(crate) struct WsControl {
    pub protocol: String,
    version: WsVersion,
    tx: mpsc::UnboundedSender<Message>,
    _tasks: Tasks,
}

impl WsControl {
    /// Sends `data` on `channel`, in messages of at most 32 KiB (as kubectl's copy loop does;
    /// servers limit message sizes).
    pub fn send(&self, channel: u8, data: &[u8]) -> anyhow::Result<()> {
        for chunk in data.chunks(32 * 1024) {
            let message = match self.version {
                WsVersion::V4Base64 => Message::text(format!(
                    "{}{}",
                    (b'0' + channel) as char,
                    BASE64.encode(chunk)
                )),
                _ => {
                    let mut frame = Vec::with_capacity(chunk.len() + 1);
                    frame.push(channel);
                    frame.extend_from_slice(chunk);
                    Message::binary(frame)
                }
            };
            self.tx
                .send(message)
                .ok()
                .context("the WebSocket is closed")?;
        }
        Ok(())
    }

    /// v5's CLOSE signal: `[255, channel]`.
    pub fn close_channel(&self, channel: u8) -> anyhow::Result<()> {
        if self.version != WsVersion::V5 {
            bail!("only v5.channel.k8s.io can close a channel");
        }
        self.tx
            .send(Message::binary(vec![255, channel]))
            .ok()
            .context("the WebSocket is closed")
    }
}

fn protocol_name(version: WsVersion) -> &'static str {
    super::Transport::Ws(version).protocol()
}

/// Connects a remote command session; output goes to `events` (closed at the end).
pub(crate) async fn open_exec(
    url: &str,
    version: WsVersion,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<WsControl> {
    let offered = protocol_name(version);
    let (stream, protocol) = connect(url, &[offered]).await?;
    if protocol != offered {
        bail!("offered {offered}, the server chose {protocol:?}");
    }
    let base64 = version == WsVersion::V4Base64;
    let (mut sink, mut source) = stream.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(message) = rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let reader = tokio::spawn(async move {
        while let Some(message) = source.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    let _ = events.send(Event::Failed(format!("WebSocket: {e}")));
                    return;
                }
            };
            let (channel, data) = match decode(&message, base64) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => continue,
                Err(e) => {
                    let _ = events.send(Event::Failed(format!("{e:#}")));
                    return;
                }
            };
            let event = match channel {
                1 => Event::Stdout(data),
                2 => Event::Stderr(data),
                3 => Event::Status(data),
                other => {
                    let _ = events.send(Event::Failed(format!(
                        "message on unexpected channel {other}"
                    )));
                    continue;
                }
            };
            if events.send(event).is_err() {
                return;
            }
        }
    });
    Ok(WsControl {
        protocol,
        version,
        tx,
        _tasks: Tasks(vec![writer, reader]),
    })
}

/// A data message's channel and payload; `None` for control frames and empty messages.
fn decode(message: &Message, base64: bool) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
    let raw: &[u8] = match message {
        Message::Binary(b) => b,
        Message::Text(t) => t.as_bytes(),
        _ => return Ok(None),
    };
    let Some((&channel, payload)) = raw.split_first() else {
        return Ok(None);
    };
    if base64 || matches!(message, Message::Text(_)) {
        let channel = channel.wrapping_sub(b'0');
        let data = BASE64
            .decode(payload)
            .with_context(|| format!("bad base64 on channel {channel}"))?;
        return Ok(Some((channel, data)));
    }
    Ok(Some((channel, payload.to_vec())))
}

/// One port-forward connection over its own WebSocket (`?port=N`): channel 0 carries the data,
/// channel 1 errors, and the first message on each is the port (2 bytes, little endian).
pub async fn port_forward_ws(url: &str, port: u16) -> anyhow::Result<PortForwardStream> {
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}port={port}");
    let (stream, protocol) = connect(&url, &["v4.channel.k8s.io"]).await?;
    if !protocol.is_empty() && protocol != "v4.channel.k8s.io" {
        bail!("offered v4.channel.k8s.io, the server chose {protocol:?}");
    }
    let (mut sink, mut source) = stream.split();
    let (user, ours) = tokio::io::duplex(256 * 1024);
    let (mut from_user, mut to_user) = tokio::io::split(ours);
    let error = Arc::new(Mutex::new(None::<String>));
    let reader = tokio::spawn({
        let error = error.clone();
        async move {
            let mut seen_port = [false; 2];
            let mut error_text = Vec::new();
            while let Some(Ok(message)) = source.next().await {
                let Ok(Some((channel, data))) = decode(&message, false) else {
                    continue;
                };
                let Some(seen) = seen_port.get_mut(channel as usize) else {
                    continue;
                };
                let data = if *seen {
                    &data[..]
                } else {
                    *seen = true;
                    if data.len() < 2 || u16::from_le_bytes([data[0], data[1]]) != port {
                        *error.lock().unwrap() = Some(format!(
                            "channel {channel} did not start with port {port}: {data:?}"
                        ));
                        break;
                    }
                    &data[2..]
                };
                if channel == 0 {
                    if to_user.write_all(data).await.is_err() {
                        break;
                    }
                } else {
                    error_text.extend_from_slice(data);
                    *error.lock().unwrap() =
                        Some(String::from_utf8_lossy(&error_text).into_owned());
                }
            }
            let _ = to_user.shutdown().await;
        }
    });
    let writer = tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        buf[0] = 0;
        loop {
            match from_user.read(&mut buf[1..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::binary(buf[..n + 1].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        // WebSocket port-forward has no half-close: the server ends it when the pod side closes.
        std::future::pending::<()>().await;
    });
    Ok(PortForwardStream::new(
        user,
        error,
        Arc::new(Tasks(vec![reader, writer])),
    ))
}
