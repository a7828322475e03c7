//! A minimal `portforward.k8s.io` client over SPDY/3.1 that does what moby/spdystream does (the
//! SPDY library behind kubectl's and kubelet's clients): **no flow control** — it never sends
//! SETTINGS or WINDOW_UPDATE and ignores the peer's. A server that applies send-side flow control
//! only toward peers that show they do it (Berth's) then sends as fast as it can, as it would to
//! kubectl; the same holds for containerd's spdystream-based server, which never limits anyway.
//!
//! `berth_e2e::streaming::SpdyPortForwarder` is the strict SPDY/3.1 client: once the server sent
//! SETTINGS it credits the default 64 KiB windows back with WINDOW_UPDATEs, so a strict server
//! never has more than 64 KiB in flight to it. Both are measured (see `streaming.rs`).
//!
//! One connection per session, driven on the caller's task: frames are read straight from the
//! socket into one reused buffer, so the client adds as little CPU as possible. Frame encoding and
//! header compression come from `berth_e2e::streaming::spdy::frame`.

use anyhow::{Context, Result, bail};
use berth_e2e::streaming::spdy::frame::{self, Deflater, Frame, Inflater};
use berth_e2e::streaming::spdy::session::split_url;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// The error stream's and the data stream's ids (client streams are odd, in order).
const ERROR_STREAM: u32 = 1;
const DATA_STREAM: u32 = 3;

/// What ended [`PlainForward::receive`].
#[derive(Debug, Default)]
pub struct Received {
    /// Text the server wrote on the error stream.
    pub error: String,
    /// The data stream was reset (status), or the connection ended before its FIN.
    pub abnormal_end: Option<String>,
}

/// One forwarded connection to `port` of a pod, on a session of its own.
pub struct PlainForward {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    inflate: Inflater,
    buf: Vec<u8>,
}

impl PlainForward {
    /// Upgrades `url` to SPDY/3.1 with `portforward.k8s.io`, then opens the error stream
    /// (half-closed at once) and the data stream for `port`, each waiting for its SYN_REPLY, as
    /// client-go's port forwarder does.
    pub async fn connect(url: &str, port: u16) -> Result<PlainForward> {
        let (authority, path) = split_url(url)?;
        let tcp = TcpStream::connect(&authority)
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        tcp.set_nodelay(true)?;
        let (read, mut writer) = tcp.into_split();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: berth-bench\r\n\
             Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n"
        );
        writer.write_all(request.as_bytes()).await?;
        let mut reader = BufReader::with_capacity(256 * 1024, read);
        // The response head, byte by byte from the buffer (whatever follows it stays buffered).
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 64 * 1024 {
                bail!("HTTP response head over 64 KiB");
            }
            head.push(
                reader
                    .read_u8()
                    .await
                    .context("reading the upgrade response")?,
            );
        }
        let text = String::from_utf8_lossy(&head);
        let status = text.split_whitespace().nth(1).unwrap_or_default();
        if status != "101" {
            bail!("HTTP {status} instead of an upgrade: {text:?}");
        }
        if !text.lines().any(|l| {
            l.split_once(':').is_some_and(|(n, v)| {
                n.trim().eq_ignore_ascii_case("x-stream-protocol-version")
                    && v.trim() == "portforward.k8s.io"
            })
        }) {
            bail!("the server did not choose portforward.k8s.io: {text:?}");
        }
        let mut forward = PlainForward {
            reader,
            writer,
            inflate: Inflater::new(),
            buf: Vec::with_capacity(64 * 1024),
        };
        let mut deflate = Deflater::new()?;
        let port = port.to_string();
        for (id, kind) in [(ERROR_STREAM, "error"), (DATA_STREAM, "data")] {
            let block =
                deflate.block(&[("streamType", kind), ("port", &port), ("requestID", "0")])?;
            forward
                .writer
                .write_all(&frame::syn_stream(id, false, &block))
                .await?;
            forward.wait_reply(id).await?;
            if id == ERROR_STREAM {
                forward
                    .writer
                    .write_all(&frame::data(id, true, &[]))
                    .await?;
            }
        }
        Ok(forward)
    }

    /// Reads frames until the SYN_REPLY of stream `id`.
    async fn wait_reply(&mut self, id: u32) -> Result<()> {
        loop {
            match self.next_control().await? {
                Some(Frame::SynReply { stream, .. }) if stream == id => return Ok(()),
                Some(Frame::RstStream { stream, status }) if stream == id => {
                    bail!("stream {id} refused (RST_STREAM status {status})")
                }
                Some(Frame::Ping { id: ping }) => self.writer.write_all(&frame::ping(ping)).await?,
                Some(_) => {}
                None => bail!("a DATA frame before the SYN_REPLY of stream {id}"),
            }
        }
    }

    /// The next frame's head and payload (into `self.buf`); `None` at a clean end of the
    /// connection.
    async fn next_frame(&mut self) -> Result<Option<frame::FrameHead>> {
        let mut head = [0u8; 8];
        match self.reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context("reading a SPDY frame"),
        }
        let head = frame::parse_head(&head)?;
        self.buf.resize(head.len, 0);
        self.reader
            .read_exact(&mut self.buf)
            .await
            .context("reading a SPDY frame's payload")?;
        Ok(Some(head))
    }

    /// The next frame if it is a control frame (decoded); `None` for a DATA frame.
    async fn next_control(&mut self) -> Result<Option<Frame>> {
        let head = self
            .next_frame()
            .await?
            .context("the connection ended during the stream setup")?;
        if !head.control {
            return Ok(None);
        }
        Ok(Some(frame::decode(
            &head,
            std::mem::take(&mut self.buf),
            &mut self.inflate,
        )?))
    }

    /// Sends `data` on the data stream (one DATA frame; for a short request).
    pub async fn send(&mut self, data: &[u8]) -> Result<()> {
        self.writer
            .write_all(&frame::data(DATA_STREAM, false, data))
            .await?;
        Ok(())
    }

    /// Hands every byte of the data stream to `sink` until the server finishes (FIN) or resets
    /// it, or the connection ends. Pings are answered; SETTINGS and WINDOW_UPDATE ignored.
    pub async fn receive(&mut self, mut sink: impl FnMut(&[u8]) -> Result<()>) -> Result<Received> {
        let mut out = Received::default();
        loop {
            let Some(head) = self.next_frame().await? else {
                out.abnormal_end = Some("the connection ended before the data stream's FIN".into());
                return Ok(out);
            };
            let fin = head.flags & frame::FLAG_FIN != 0;
            if !head.control {
                match head.kind_or_stream {
                    DATA_STREAM => {
                        sink(&self.buf)?;
                        if fin {
                            return Ok(out);
                        }
                    }
                    ERROR_STREAM => out.error.push_str(&String::from_utf8_lossy(&self.buf)),
                    _ => {}
                }
                continue;
            }
            let decoded = frame::decode(&head, std::mem::take(&mut self.buf), &mut self.inflate)?;
            match decoded {
                Frame::RstStream { stream, status } if stream == DATA_STREAM => {
                    out.abnormal_end = Some(format!("data stream reset (status {status})"));
                    return Ok(out);
                }
                Frame::Headers { stream, fin: true }
                | Frame::SynReply {
                    stream, fin: true, ..
                } if stream == DATA_STREAM => {
                    return Ok(out);
                }
                Frame::Ping { id } => self.writer.write_all(&frame::ping(id)).await?,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = (0x8003_0000u32 | u32::from(kind)).to_be_bytes().to_vec();
        out.push(flags);
        out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes()[1..]);
        out.extend_from_slice(payload);
        out
    }

    /// Reads one frame: (control, type or stream, flags, payload).
    async fn read_frame(r: &mut (impl AsyncReadExt + Unpin)) -> Option<(bool, u32, u8, Vec<u8>)> {
        let mut head = [0u8; 8];
        r.read_exact(&mut head).await.ok()?;
        let h = frame::parse_head(&head).unwrap();
        let mut payload = vec![0u8; h.len];
        r.read_exact(&mut payload).await.unwrap();
        Some((h.control, h.kind_or_stream, h.flags, payload))
    }

    /// A fake port-forward server: sends SETTINGS (a bigger window) and a PING, accepts the two
    /// streams, answers the request with two DATA frames and FIN; returns the frame types the
    /// client sent after the request.
    async fn serve(listener: TcpListener) -> (Vec<u32>, Vec<u8>) {
        let (tcp, _) = listener.accept().await.unwrap();
        let (read, mut w) = tcp.into_split();
        let mut r = BufReader::new(read);
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(r.read_u8().await.unwrap());
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        assert!(text.contains("Upgrade: SPDY/3.1"), "{text}");
        w.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
              X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n",
        )
        .await
        .unwrap();
        let mut settings = 1u32.to_be_bytes().to_vec();
        settings.extend_from_slice(&7u32.to_be_bytes());
        settings.extend_from_slice(&(1u32 << 20).to_be_bytes());
        w.write_all(&control(frame::SETTINGS, 0, &settings))
            .await
            .unwrap();
        w.write_all(&control(frame::PING, 0, &2u32.to_be_bytes()))
            .await
            .unwrap();
        let mut deflate = Deflater::new().unwrap();
        let mut inflate = Inflater::new();
        let mut request = Vec::new();
        let mut after = Vec::new();
        while let Some((control_frame, kind, flags, payload)) = read_frame(&mut r).await {
            if control_frame && kind == u32::from(frame::SYN_STREAM) {
                let id = u32::from_be_bytes(payload[..4].try_into().unwrap());
                let headers = inflate.block(&payload[10..]).unwrap();
                assert!(
                    headers.iter().any(|(n, v)| n == "port" && v == "8080"),
                    "{headers:?}"
                );
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend_from_slice(&deflate.block(&[]).unwrap());
                w.write_all(&control(frame::SYN_REPLY, 0, &reply))
                    .await
                    .unwrap();
            } else if !control_frame && kind == DATA_STREAM && request.is_empty() {
                request = payload;
                w.write_all(&frame::data(
                    DATA_STREAM,
                    false,
                    b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nab",
                ))
                .await
                .unwrap();
                w.write_all(&frame::data(DATA_STREAM, false, b"cdef"))
                    .await
                    .unwrap();
                w.write_all(&frame::data(DATA_STREAM, true, &[]))
                    .await
                    .unwrap();
            } else if !request.is_empty() {
                after.push(if control_frame { kind } else { 0 });
            } else {
                // The error stream's FIN, the PING's echo.
                assert!(
                    (!control_frame && kind == ERROR_STREAM && flags & frame::FLAG_FIN != 0)
                        || (control_frame && kind == u32::from(frame::PING)),
                    "unexpected frame {control_frame} {kind}"
                );
            }
        }
        (after, request)
    }

    #[tokio::test]
    async fn plain_forward_ignores_flow_control() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/portforward/token",
            listener.local_addr().unwrap()
        );
        let server = tokio::spawn(serve(listener));
        let mut forward = PlainForward::connect(&url, 8080).await.unwrap();
        forward.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let received = forward
            .receive(|d| {
                got.extend_from_slice(d);
                Ok(())
            })
            .await
            .unwrap();
        drop(forward);
        let (after, request) = server.await.unwrap();
        assert_eq!(request, b"GET / HTTP/1.1\r\n\r\n");
        assert!(got.ends_with(b"\r\n\r\nabcdef"), "{got:?}");
        assert!(received.abnormal_end.is_none() && received.error.is_empty());
        // No WINDOW_UPDATE (nor anything else) after the request, despite SETTINGS.
        assert!(after.is_empty(), "{after:?}");
    }
}
