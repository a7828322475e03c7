//! Session tests: a client and a server of this crate over `tokio::io::duplex`.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use berth_spdy::{Headers, RstStatus, Session, SessionConfig, SpdyError, Stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(20);

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn pair(config: SessionConfig) -> (Session, Session, mpsc::Receiver<Stream>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, incoming) = Session::server(a, config);
    let client = Session::client(b, config);
    (client, server, incoming)
}

/// Server that echoes every stream back (reply, copy until FIN, FIN).
fn spawn_echo(mut incoming: mpsc::Receiver<Stream>) {
    tokio::spawn(async move {
        while let Some(stream) = incoming.recv().await {
            tokio::spawn(async move {
                stream
                    .reply(h(&[("echo", "yes")]), false)
                    .await
                    .expect("reply");
                let (mut r, mut w) = stream.split();
                tokio::io::copy(&mut r, &mut w).await.expect("copy");
                w.finish().await.expect("finish");
            });
        }
    });
}

#[tokio::test]
async fn open_reply_data_both_ways_fin() {
    let (client, _server, mut incoming) = pair(SessionConfig::default());
    let server_task = tokio::spawn(async move {
        let stream = incoming.recv().await.expect("stream");
        assert_eq!(stream.header("streamtype"), Some("stdout"));
        assert_eq!(stream.header("StreamType"), Some("stdout"));
        assert_eq!(stream.id() % 2, 1);
        stream
            .reply(h(&[("x-reply", "1")]), false)
            .await
            .expect("reply");
        let (mut r, mut w) = stream.split();
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.expect("read");
        assert_eq!(got, b"hello from client");
        w.send(b"hello from server").await.expect("send");
        w.finish().await.expect("finish");
    });
    let stream = timeout(T, client.open_stream(h(&[("streamtype", "stdout")]), false))
        .await
        .expect("timeout")
        .expect("open");
    assert_eq!(stream.reply_headers(), Some(&h(&[("x-reply", "1")])));
    let (mut r, mut w) = stream.split();
    w.write_all(b"hello from client").await.expect("write");
    w.shutdown().await.expect("fin");
    let mut got = Vec::new();
    timeout(T, r.read_to_end(&mut got))
        .await
        .expect("timeout")
        .expect("read");
    assert_eq!(got, b"hello from server");
    server_task.await.expect("server");
}

#[tokio::test]
async fn ten_megabytes_through_a_small_window() {
    let config = SessionConfig {
        initial_window: 4096,
        ..SessionConfig::default()
    };
    let (client, _server, incoming) = pair(config);
    spawn_echo(incoming);
    let stream = client
        .open_stream(h(&[("streamtype", "data")]), false)
        .await
        .expect("open");
    let (mut r, mut w) = stream.split();
    let data: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let expect = data.clone();
    let writer = tokio::spawn(async move {
        w.send(&data).await.expect("send");
        w.finish().await.expect("finish");
    });
    let mut got = Vec::with_capacity(expect.len());
    timeout(Duration::from_secs(60), r.read_to_end(&mut got))
        .await
        .expect("timeout")
        .expect("read");
    writer.await.expect("writer");
    assert!(got == expect, "payload differs");
}

#[tokio::test]
async fn many_concurrent_streams() {
    let (client, _server, incoming) = pair(SessionConfig::default());
    spawn_echo(incoming);
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let stream = client
                .open_stream(h(&[("n", &i.to_string())]), false)
                .await
                .expect("open");
            let (mut r, mut w) = stream.split();
            let payload = vec![u8::try_from(i).unwrap(); 100_000 + i as usize];
            w.send(&payload).await.expect("send");
            w.finish().await.expect("finish");
            let mut got = Vec::new();
            r.read_to_end(&mut got).await.expect("read");
            assert_eq!(got, payload);
        }));
    }
    for t in tasks {
        timeout(T, t).await.expect("timeout").expect("task");
    }
}

#[tokio::test]
async fn max_concurrent_streams_is_honoured() {
    let config = SessionConfig {
        max_streams: 2,
        ..SessionConfig::default()
    };
    let (client, _server, incoming) = pair(config);
    spawn_echo(incoming);
    // Let SETTINGS arrive.
    client.ping().await.expect("ping");
    let a = client
        .open_stream(h(&[("n", "a")]), false)
        .await
        .expect("a");
    let b = client
        .open_stream(h(&[("n", "b")]), false)
        .await
        .expect("b");
    let c_client = client.clone();
    let mut third =
        tokio::spawn(async move { c_client.open_stream(h(&[("n", "c")]), false).await });
    assert!(
        timeout(Duration::from_millis(200), &mut third)
            .await
            .is_err(),
        "third stream must wait"
    );
    // Close `a` both ways; then the third may open.
    let (mut ar, mut aw) = a.split();
    aw.finish().await.expect("fin a");
    assert_eq!(ar.recv().await, None);
    let c = timeout(T, third)
        .await
        .expect("timeout")
        .expect("join")
        .expect("c");
    drop((b, c));
}

#[tokio::test]
async fn reset_reaches_the_other_side() {
    let (client, _server, mut incoming) = pair(SessionConfig::default());
    let stream = tokio::spawn(async move {
        let stream = incoming.recv().await.expect("stream");
        stream.reply(Headers::new(), false).await.expect("reply");
        let (mut r, w) = stream.split();
        assert_eq!(r.recv().await.as_deref(), Some(&b"x"[..]));
        w.reset(RstStatus::Cancel);
        (r, incoming)
    });
    let s = client
        .open_stream(Headers::new(), false)
        .await
        .expect("open");
    let (mut r, mut w) = s.split();
    w.send(b"x").await.expect("send");
    assert_eq!(timeout(T, r.recv()).await.expect("timeout"), None);
    assert_eq!(r.reset_status(), Some(RstStatus::Cancel));
    let mut buf = [0u8; 4];
    let err = r
        .read(&mut buf)
        .await
        .expect_err("reset is an error for AsyncRead");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    // Writing eventually fails too.
    let e = w.send(b"more").await.expect_err("send after reset");
    assert!(
        matches!(e, SpdyError::StreamReset(RstStatus::Cancel)),
        "{e:?}"
    );
    let (_r, _incoming) = stream.await.expect("server");
}

#[tokio::test]
async fn dropping_an_unreplied_stream_refuses_it() {
    let (client, _server, mut incoming) = pair(SessionConfig::default());
    tokio::spawn(async move {
        while let Some(s) = incoming.recv().await {
            drop(s);
        }
    });
    let e = timeout(T, client.open_stream(Headers::new(), false))
        .await
        .expect("timeout")
        .expect_err("refused");
    assert!(
        matches!(e, SpdyError::StreamReset(RstStatus::RefusedStream)),
        "{e:?}"
    );
}

#[tokio::test]
async fn ping_both_ways() {
    let (client, server, incoming) = pair(SessionConfig::default());
    spawn_echo(incoming);
    for _ in 0..3 {
        timeout(T, client.ping())
            .await
            .expect("timeout")
            .expect("client ping");
        timeout(T, server.ping())
            .await
            .expect("timeout")
            .expect("server ping");
    }
}

#[tokio::test]
async fn go_away_lets_open_streams_finish_then_closes() {
    let (client, server, mut incoming) = pair(SessionConfig::default());
    let srv = server.clone();
    let task = tokio::spawn(async move {
        let stream = incoming.recv().await.expect("stream");
        stream.reply(Headers::new(), false).await.expect("reply");
        let (mut r, mut w) = stream.split();
        srv.go_away();
        // The stream still works after GOAWAY.
        w.send(b"after goaway").await.expect("send");
        w.finish().await.expect("finish");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).await.expect("read");
        assert_eq!(rest, b"bye");
    });
    let s = client
        .open_stream(Headers::new(), false)
        .await
        .expect("open");
    let (mut r, mut w) = s.split();
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"after goaway");
    // No new streams once the peer went away.
    let e = client
        .open_stream(Headers::new(), false)
        .await
        .expect_err("going away");
    assert!(matches!(e, SpdyError::GoingAway), "{e:?}");
    w.send(b"bye").await.expect("send");
    w.finish().await.expect("fin");
    task.await.expect("server");
    timeout(T, client.closed()).await.expect("client closes");
    timeout(T, server.closed()).await.expect("server closes");
}

#[tokio::test]
async fn peer_disconnect_mid_stream() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (server, mut incoming) = Session::server(a, SessionConfig::default());
    let client = Session::client(b, SessionConfig::default());
    let s = client.open_stream(Headers::new(), false);
    let (s, srv_stream) = tokio::join!(s, async {
        let st = incoming.recv().await.expect("stream");
        st.reply(Headers::new(), false).await.expect("reply");
        st
    });
    let (mut r, mut w) = s.expect("open").split();
    let (mut sr, _sw) = srv_stream.split();
    w.send(b"partial").await.expect("send");
    assert_eq!(sr.recv().await.as_deref(), Some(&b"partial"[..]));
    // Kill the client's connection.
    client.abort();
    assert_eq!(
        timeout(T, sr.recv())
            .await
            .expect("server sees end promptly"),
        None
    );
    let mut buf = [0u8; 8];
    assert!(
        timeout(T, sr.read(&mut buf))
            .await
            .expect("timeout")
            .is_err()
    );
    timeout(T, server.closed())
        .await
        .expect("server session closes");
    assert!(r.recv().await.is_none());
    assert!(w.send(b"x").await.is_err());
}

#[tokio::test]
async fn dropped_recv_half_does_not_stall_the_peer() {
    let config = SessionConfig {
        initial_window: 8192,
        ..SessionConfig::default()
    };
    let (client, _server, mut incoming) = pair(config);
    let task = tokio::spawn(async move {
        let stream = incoming.recv().await.expect("stream");
        let (r, mut w) = stream.split();
        drop(r);
        w.send(b"ok").await.expect("send");
        w.finish().await.expect("finish");
        incoming
    });
    let s = client
        .open_stream(Headers::new(), false)
        .await
        .expect("open");
    let (mut r, mut w) = s.split();
    // Far more than every window: must not stall although nobody reads it.
    timeout(T, w.send(&vec![1u8; 2 * 1024 * 1024]))
        .await
        .expect("no stall")
        .expect("send");
    w.finish().await.expect("fin");
    let mut got = Vec::new();
    r.read_to_end(&mut got).await.expect("read");
    assert_eq!(got, b"ok");
    let _incoming = task.await.expect("server");
}

#[tokio::test]
async fn dropped_send_half_sends_fin() {
    let (client, _server, mut incoming) = pair(SessionConfig::default());
    tokio::spawn(async move {
        let stream = incoming.recv().await.expect("stream");
        stream.reply(Headers::new(), false).await.expect("reply");
        let (_r, mut w) = stream.split();
        w.send(b"last words").await.expect("send");
        drop(w);
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let s = client
        .open_stream(Headers::new(), false)
        .await
        .expect("open");
    let (mut r, _w) = s.split();
    let mut got = Vec::new();
    timeout(T, r.read_to_end(&mut got))
        .await
        .expect("fin arrives")
        .expect("read");
    assert_eq!(got, b"last words");
}

#[tokio::test]
async fn dropping_all_handles_closes_the_session() {
    let (client, server, incoming) = pair(SessionConfig::default());
    spawn_echo(incoming);
    let watcher = server.clone();
    drop(server);
    client
        .ping()
        .await
        .expect("still alive while the receiver is in use");
    drop(client);
    timeout(T, watcher.closed())
        .await
        .expect("closed after client handles dropped");
}
