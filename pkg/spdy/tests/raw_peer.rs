//! A hand-driven peer built from the frame and header modules, behaving like Go's spdystream:
//! no SETTINGS, no WINDOW_UPDATE, ever. The server session must still move any amount of data,
//! and must answer protocol violations as documented.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use berth_spdy::frame::{self, Frame, RstStatus};
use berth_spdy::headers::{Decoder, Encoder};
use berth_spdy::{Headers, Session, SessionConfig};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

const T: Duration = Duration::from_secs(20);

struct RawPeer {
    io: DuplexStream,
    buf: BytesMut,
    enc: Encoder,
    dec: Decoder,
}

impl RawPeer {
    fn new(io: DuplexStream) -> RawPeer {
        RawPeer {
            io,
            buf: BytesMut::new(),
            enc: Encoder::new(),
            dec: Decoder::new(),
        }
    }

    async fn send(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        f.encode(&mut out).expect("encode");
        self.io.write_all(&out).await.expect("write");
    }

    async fn syn_stream(&mut self, id: u32, headers: &[(&str, &str)], fin: bool) {
        let headers: Headers = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let block = self.enc.encode(&headers).expect("compress");
        self.send(Frame::SynStream {
            stream_id: id,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            header_block: block.into(),
        })
        .await;
    }

    /// Next frame, with header blocks decoded (returned alongside).
    async fn next(&mut self) -> Option<(Frame, Option<Headers>)> {
        loop {
            if let Some((f, n)) =
                frame::parse(&self.buf, frame::MAX_PAYLOAD_LEN).expect("valid frame")
            {
                self.buf.advance(n);
                let headers = match &f {
                    Frame::SynStream { header_block, .. }
                    | Frame::SynReply { header_block, .. }
                    | Frame::Headers { header_block, .. } => {
                        Some(self.dec.decode(header_block).expect("headers"))
                    }
                    _ => None,
                };
                return Some((f, headers));
            }
            if self.io.read_buf(&mut self.buf).await.expect("read") == 0 {
                return None;
            }
        }
    }

    /// Next frame that is not SETTINGS / WINDOW_UPDATE (which spdystream ignores).
    async fn next_relevant(&mut self) -> Option<(Frame, Option<Headers>)> {
        loop {
            match self.next().await? {
                (Frame::Settings { .. } | Frame::WindowUpdate { .. }, _) => continue,
                other => return Some(other),
            }
        }
    }
}

type Started = (
    Session,
    tokio::sync::mpsc::Receiver<berth_spdy::Stream>,
    RawPeer,
);

fn start() -> Started {
    start_with(SessionConfig::default())
}

fn start_with(config: SessionConfig) -> Started {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, incoming) = Session::server(a, config);
    (server, incoming, RawPeer::new(b))
}

#[tokio::test]
async fn server_sends_settings_first_and_replies_before_data() {
    let (_server, mut incoming, mut peer) = start();
    let (first, _) = peer.next().await.expect("frame");
    assert!(matches!(first, Frame::Settings { .. }), "{first:?}");
    peer.syn_stream(1, &[("streamtype", "error")], false).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    assert_eq!(stream.header("streamtype"), Some("error"));
    let (_r, mut w) = stream.split();
    w.send(b"status").await.expect("send");
    w.finish().await.expect("fin");
    let (reply, headers) = peer.next_relevant().await.expect("reply");
    assert!(
        matches!(
            reply,
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                ..
            }
        ),
        "{reply:?}"
    );
    assert_eq!(headers, Some(Headers::new()));
    let (data, _) = peer.next_relevant().await.expect("data");
    assert_eq!(
        data,
        Frame::Data {
            stream_id: 1,
            fin: false,
            data: bytes::Bytes::from_static(b"status")
        }
    );
    let (fin, _) = peer.next_relevant().await.expect("fin");
    assert!(
        matches!(
            fin,
            Frame::Data {
                stream_id: 1,
                fin: true,
                ..
            }
        ),
        "{fin:?}"
    );
}

async fn timeout<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("timeout")
}

#[tokio::test]
async fn peer_without_window_updates_gets_everything() {
    let (_server, mut incoming, mut peer) = start();
    peer.syn_stream(1, &[("streamtype", "stdout")], true).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    stream.reply(Headers::new(), false).await.expect("reply");
    let (_r, mut w) = stream.split();
    const TOTAL: usize = 3 * 1024 * 1024;
    let sender = tokio::spawn(async move {
        w.send(&vec![7u8; TOTAL]).await.expect("send");
        w.finish().await.expect("fin");
    });
    let mut got = 0;
    loop {
        match timeout(peer.next_relevant()).await.expect("frame") {
            (Frame::SynReply { .. }, _) => {}
            (Frame::Data { data, fin, .. }, _) => {
                got += data.len();
                if fin {
                    break;
                }
            }
            (other, _) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, TOTAL);
    sender.await.expect("sender");
}

#[tokio::test]
async fn peer_ignoring_our_window_is_tolerated() {
    let (_server, mut incoming, mut peer) = start();
    peer.syn_stream(1, &[("streamtype", "stdin")], false).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    stream.reply(Headers::new(), false).await.expect("reply");
    let (mut r, _w) = stream.split();
    // 4 MiB in one go: far beyond the advertised window, as spdystream would write it.
    let writer = tokio::spawn(async move {
        for _ in 0..256 {
            peer.send(Frame::Data {
                stream_id: 1,
                fin: false,
                data: vec![1u8; 16 * 1024].into(),
            })
            .await;
        }
        peer.send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: bytes::Bytes::new(),
        })
        .await;
        peer
    });
    let mut got = Vec::new();
    timeout(r.read_to_end(&mut got)).await.expect("read");
    assert_eq!(got.len(), 4 * 1024 * 1024);
    let _peer = writer.await.expect("writer");
}

#[tokio::test]
async fn ping_is_echoed_and_errors_are_answered() {
    let (_server, mut incoming, mut peer) = start();
    peer.send(Frame::Ping { id: 1 }).await;
    assert_eq!(
        timeout(peer.next_relevant()).await.expect("pong").0,
        Frame::Ping { id: 1 }
    );
    // DATA on a stream never opened.
    peer.send(Frame::Data {
        stream_id: 9,
        fin: false,
        data: vec![0u8; 3].into(),
    })
    .await;
    assert_eq!(
        timeout(peer.next_relevant()).await.expect("rst").0,
        Frame::RstStream {
            stream_id: 9,
            status: RstStatus::InvalidStream
        }
    );
    // A stream with the server's parity.
    peer.syn_stream(2, &[("a", "b")], false).await;
    assert_eq!(
        timeout(peer.next_relevant()).await.expect("rst").0,
        Frame::RstStream {
            stream_id: 2,
            status: RstStatus::ProtocolError
        }
    );
    // A good stream, then DATA after its FIN.
    peer.syn_stream(3, &[("a", "b")], true).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    stream.reply(Headers::new(), false).await.expect("reply");
    assert!(matches!(
        timeout(peer.next_relevant()).await.expect("reply").0,
        Frame::SynReply { stream_id: 3, .. }
    ));
    peer.send(Frame::Data {
        stream_id: 3,
        fin: false,
        data: vec![0u8; 3].into(),
    })
    .await;
    assert_eq!(
        timeout(peer.next_relevant()).await.expect("rst").0,
        Frame::RstStream {
            stream_id: 3,
            status: RstStatus::StreamAlreadyClosed
        }
    );
    // Unknown control frames are skipped.
    peer.send(Frame::Unknown {
        frame_type: 10,
        flags: 0,
        length: 12,
    })
    .await;
    peer.send(Frame::Ping { id: 5 }).await;
    assert_eq!(
        timeout(peer.next_relevant()).await.expect("pong").0,
        Frame::Ping { id: 5 }
    );
}

#[tokio::test]
async fn garbage_ends_the_session_with_goaway() {
    let (server, _incoming, mut peer) = start();
    // A control frame of version 2.
    peer.io
        .write_all(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1])
        .await
        .expect("write");
    match timeout(peer.next_relevant()).await {
        Some((Frame::GoAway { status, .. }, _)) => {
            assert_eq!(status, berth_spdy::GoAwayStatus::ProtocolError)
        }
        other => panic!("expected GOAWAY, got {other:?}"),
    }
    timeout(server.closed()).await;
}

#[tokio::test]
async fn server_go_away_names_the_last_stream() {
    let (server, mut incoming, mut peer) = start();
    peer.syn_stream(1, &[("a", "b")], true).await;
    peer.syn_stream(3, &[("a", "c")], true).await;
    let s1 = timeout(incoming.recv()).await.expect("s1");
    let s3 = timeout(incoming.recv()).await.expect("s3");
    server.go_away();
    s1.reply(Headers::new(), true).await.expect("reply 1");
    s3.reply(Headers::new(), true).await.expect("reply 3");
    let mut saw_goaway = false;
    let mut replies = 0;
    while let Some((f, _)) = timeout(peer.next_relevant()).await {
        match f {
            Frame::GoAway {
                last_good_stream_id,
                ..
            } => {
                assert_eq!(last_good_stream_id, 3);
                saw_goaway = true;
            }
            Frame::SynReply { .. } => replies += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // The connection closed once both streams were done.
    assert!(saw_goaway);
    assert_eq!(replies, 2);
}

#[tokio::test]
async fn advertises_windows_and_returns_them_as_data_is_read() {
    let config = SessionConfig {
        initial_window: 8192,
        ..SessionConfig::default()
    };
    let (_server, mut incoming, mut peer) = start_with(config);
    let (f, _) = peer.next().await.expect("settings");
    let Frame::Settings { entries, .. } = f else {
        panic!("expected SETTINGS, got {f:?}");
    };
    assert!(
        entries
            .iter()
            .any(|e| e.id == frame::setting::INITIAL_WINDOW_SIZE && e.value == 8192)
    );
    assert!(
        entries
            .iter()
            .any(|e| e.id == frame::setting::MAX_CONCURRENT_STREAMS && e.value == 100)
    );
    // The session window is grown to 4 x 64 KiB.
    assert_eq!(
        peer.next().await.expect("window update").0,
        Frame::WindowUpdate {
            stream_id: 0,
            delta: 4 * 65536 - 65536
        }
    );
    peer.syn_stream(1, &[("streamtype", "stdin")], false).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    let (mut r, _w) = stream.split();
    assert!(matches!(
        peer.next().await.expect("reply").0,
        Frame::SynReply { .. }
    ));
    peer.send(Frame::Data {
        stream_id: 1,
        fin: false,
        data: vec![3u8; 8192].into(),
    })
    .await;
    let mut buf = vec![0u8; 8192];
    timeout(r.read_exact(&mut buf)).await.expect("read");
    // Half the window consumed: the stream window comes back.
    let mut returned = 0;
    while returned < 8192 {
        match timeout(peer.next()).await.expect("frame").0 {
            Frame::WindowUpdate {
                stream_id: 1,
                delta,
            } => returned += delta,
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn honours_the_peers_initial_window_once_it_does_flow_control() {
    let (_server, mut incoming, mut peer) = start();
    peer.send(Frame::Settings {
        clear: false,
        entries: vec![frame::Setting {
            flags: 0,
            id: frame::setting::INITIAL_WINDOW_SIZE,
            value: 1000,
        }],
    })
    .await;
    peer.syn_stream(1, &[("streamtype", "stdout")], true).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    let (_r, mut w) = stream.split();
    let sender = tokio::spawn(async move {
        w.send(&[9u8; 5000]).await.expect("send");
        w.finish().await.expect("fin");
    });
    let mut got = 0;
    // Only the window's worth arrives until we grant more.
    while got < 1000 {
        if let (Frame::Data { data, .. }, _) = timeout(peer.next_relevant()).await.expect("frame") {
            got += data.len();
        }
    }
    assert_eq!(got, 1000);
    let quiet = tokio::time::timeout(Duration::from_millis(200), peer.next_relevant()).await;
    assert!(quiet.is_err(), "sent past the peer's window: {quiet:?}");
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 4000,
    })
    .await;
    let mut fin = false;
    while !fin {
        if let (Frame::Data { data, fin: f, .. }, _) =
            timeout(peer.next_relevant()).await.expect("frame")
        {
            got += data.len();
            fin = f;
        }
    }
    assert_eq!(got, 5000);
    sender.await.expect("sender");
}

#[tokio::test]
async fn headers_the_go_peer_rejects_are_refused_locally() {
    let (_server, mut incoming, mut peer) = start();
    peer.syn_stream(1, &[("streamtype", "error")], false).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    for bad in [
        "Connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "",
    ] {
        let e = stream
            .reply(vec![(bad.to_string(), "x".to_string())], false)
            .await
            .expect_err("refused");
        assert!(matches!(e, berth_spdy::SpdyError::Header(_)), "{e:?}");
    }
    stream
        .reply(vec![("x-ok".into(), "1".into())], true)
        .await
        .expect("reply");
    assert!(matches!(
        timeout(peer.next_relevant()).await.expect("reply").0,
        Frame::SynReply {
            stream_id: 1,
            fin: true,
            ..
        }
    ));
}

#[tokio::test]
async fn client_close_sequence_of_kubernetes() {
    // What k8s' connection.Close() does: RST(CANCEL) every stream, then GOAWAY, then close.
    let (server, mut incoming, mut peer) = start();
    peer.syn_stream(1, &[("streamtype", "stdin")], false).await;
    let stream = timeout(incoming.recv()).await.expect("stream");
    stream.reply(Headers::new(), false).await.expect("reply");
    let (mut r, mut w) = stream.split();
    peer.send(Frame::RstStream {
        stream_id: 1,
        status: RstStatus::Cancel,
    })
    .await;
    peer.send(Frame::GoAway {
        last_good_stream_id: 0,
        status: berth_spdy::GoAwayStatus::Ok,
    })
    .await;
    assert_eq!(timeout(r.recv()).await, None);
    assert_eq!(r.reset_status(), Some(RstStatus::Cancel));
    assert!(w.send(b"late").await.is_err());
    // No stream left and GOAWAY seen: the server closes the connection by itself.
    timeout(server.closed()).await;
}
