//! Port-forward over SPDY, WebSocket and SPDY tunnelled in WebSocket, to local TCP servers.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::poll_fn;
use std::time::Duration;

use berth_spdy::{Session, SessionConfig};
use bytes::Bytes;
use common::*;
use futures_core::Stream as _;
use futures_sink::Sink;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Answers every connection with "echo:" + everything it read until EOF, then closes.
async fn echo_until_eof() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut data = Vec::new();
                conn.read_to_end(&mut data).await.unwrap();
                conn.write_all(b"echo:").await.unwrap();
                conn.write_all(&data).await.unwrap();
            });
        }
    });
    port
}

/// Answers every connection's first line with "line:" + the line, then closes.
async fn echo_line() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = BufReader::new(conn);
                let mut line = String::new();
                conn.read_line(&mut line).await.unwrap();
                conn.get_mut()
                    .write_all(format!("line:{line}").as_bytes())
                    .await
                    .unwrap();
            });
        }
    });
    port
}

/// A port nothing listens on.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// One forwarded connection over a SPDY session: (data received, error stream text).
async fn spdy_pair(
    session: &Session,
    port: u16,
    request_id: Option<&str>,
    send: &[u8],
) -> (Vec<u8>, String) {
    let port = port.to_string();
    let mut headers = vec![("port", port.as_str())];
    if let Some(id) = request_id {
        headers.push(("requestid", id));
    }
    let (error, _error_send) = open(session, "error", &headers).await;
    let (data, mut data_send) = open(session, "data", &headers).await;
    data_send.send(send).await.unwrap();
    data_send.finish().await.unwrap();
    let (received, error) = tokio::join!(read_all(data), read_all(error));
    (received, String::from_utf8(error).unwrap())
}

#[tokio::test]
async fn spdy_parallel_request_ids() {
    let h = start().await;
    let port = echo_until_eof().await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let (session, chosen) = spdy_connect(&url, &["portforward.k8s.io"]).await.unwrap();
    assert_eq!(chosen, "portforward.k8s.io");
    let mut pairs = Vec::new();
    for i in 0..8 {
        let session = session.clone();
        pairs.push(tokio::spawn(async move {
            let id = i.to_string();
            let payload = format!("hello {i}\n").repeat(1000 * (i + 1));
            let (got, error) = spdy_pair(&session, port, Some(&id), payload.as_bytes()).await;
            assert_eq!(error, "");
            assert_eq!(got, format!("echo:{payload}").as_bytes());
        }));
    }
    for p in pairs {
        p.await.unwrap();
    }
    assert_eq!(h.record.port_forwards.lock().unwrap().len(), 8);
}

#[tokio::test]
async fn spdy_legacy_clients_without_request_ids() {
    let h = start().await;
    let port = echo_until_eof().await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let (session, _) = spdy_connect(&url, &["portforward.k8s.io"]).await.unwrap();
    for i in 0..3 {
        let (got, error) = spdy_pair(&session, port, None, format!("n{i}").as_bytes()).await;
        assert_eq!(error, "");
        assert_eq!(got, format!("echo:n{i}").as_bytes());
    }
}

#[tokio::test]
async fn spdy_dial_failures_go_to_the_error_stream() {
    let h = start().await;
    let url = h.server.port_forward_url("nope".to_string()).unwrap();
    let (session, _) = spdy_connect(&url, &["portforward.k8s.io"]).await.unwrap();
    let (got, error) = spdy_pair(&session, 8080, Some("0"), b"x").await;
    assert!(got.is_empty());
    assert_eq!(
        error,
        "error forwarding port 8080 to pod nope: pod nope not found"
    );

    let port = closed_port().await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let (session, _) = spdy_connect(&url, &["portforward.k8s.io"]).await.unwrap();
    let (_, error) = spdy_pair(&session, port, Some("0"), b"x").await;
    assert!(
        error.starts_with(&format!("error forwarding port {port} to pod pod-1: ")),
        "{error}"
    );
}

#[tokio::test]
async fn spdy_streams_without_port_are_refused() {
    let h = start().await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let (session, _) = spdy_connect(&url, &["portforward.k8s.io"]).await.unwrap();
    let refused = session
        .open_stream(vec![("streamtype".into(), "data".into())], false)
        .await;
    assert!(refused.is_err());
    let refused = session
        .open_stream(
            vec![
                ("streamtype".into(), "bogus".into()),
                ("port".into(), "80".into()),
            ],
            false,
        )
        .await;
    assert!(refused.is_err());
    // The session still works.
    let port = echo_until_eof().await;
    let (got, _) = spdy_pair(&session, port, Some("1"), b"ok").await;
    assert_eq!(got, b"echo:ok");
}

#[tokio::test]
async fn websocket_port_prefix_and_pairs() {
    let h = start().await;
    let good = echo_line().await;
    let bad = closed_port().await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let url = format!("{url}?port={good}&port={bad}");
    let (mut ws, chosen) = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("v4.channel.k8s.io"));
    // The first message on each channel is its port, little-endian.
    let mut prefixes = Vec::new();
    for _ in 0..4 {
        let Some(Message::Binary(b)) = ws_recv(&mut ws).await else {
            panic!("expected a binary message")
        };
        prefixes.push(b.to_vec());
    }
    prefixes.sort();
    let g = good.to_le_bytes();
    let b = bad.to_le_bytes();
    let mut expected = vec![
        vec![0, g[0], g[1]],
        vec![1, g[0], g[1]],
        vec![2, b[0], b[1]],
        vec![3, b[0], b[1]],
    ];
    expected.sort();
    assert_eq!(prefixes, expected);
    ws_send(&mut ws, binary(0, b"hello\n")).await;
    let messages = ws_collect(&mut ws).await;
    assert_eq!(channel(&messages, 0), b"line:hello\n");
    assert!(channel(&messages, 1).is_empty());
    let error = String::from_utf8(channel(&messages, 3)).unwrap();
    assert!(
        error.starts_with(&format!("error forwarding port {bad} to pod pod-1: ")),
        "{error}"
    );
}

#[tokio::test]
async fn websocket_base64_and_portforward_alias() {
    let h = start().await;
    let port = echo_line().await;
    for protocol in ["v4.base64.channel.k8s.io", "v4.portforward.k8s.io"] {
        let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
        let url = format!("{url}?port={port}");
        let (mut ws, chosen) = ws_connect(&url, &[protocol]).await.unwrap();
        assert_eq!(chosen.as_deref(), Some(protocol));
        if protocol.contains("base64") {
            // "0" + base64 of "ping\n".
            ws_send(&mut ws, Message::text("0cGluZwo=")).await;
        } else {
            ws_send(&mut ws, binary(0, b"ping\n")).await;
        }
        let messages = ws_collect(&mut ws).await;
        let p = port.to_le_bytes();
        let mut data = p.to_vec();
        data.extend_from_slice(b"line:ping\n");
        assert_eq!(channel(&messages, 0), data, "{protocol}");
        assert_eq!(channel(&messages, 1), p.to_vec(), "{protocol}");
    }
}

#[tokio::test]
async fn websocket_without_port_is_400() {
    let h = start().await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let err = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap_err();
    assert!(err.contains("400"), "{err}");
}

#[tokio::test]
async fn spdy_tunnelled_in_websocket() {
    let h = start().await;
    let port = echo_until_eof().await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let (mut ws, chosen) = ws_connect(&url, &["SPDY/3.1+portforward.k8s.io"])
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("SPDY/3.1+portforward.k8s.io"));
    // Bridge: the WebSocket's binary messages <-> a byte stream for the SPDY client.
    let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
    let bridge = tokio::spawn(async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            tokio::select! {
                m = poll_fn(|cx| Pin::new(&mut ws).poll_next(cx)) => match m {
                    Some(Ok(Message::Binary(b))) => {
                        if theirs.write_all(&b).await.is_err() { return; }
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
                n = theirs.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let m = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
                        poll_fn(|cx| Pin::new(&mut ws).poll_ready(cx)).await.unwrap();
                        Pin::new(&mut ws).start_send(m).unwrap();
                        poll_fn(|cx| Pin::new(&mut ws).poll_flush(cx)).await.unwrap();
                    }
                },
            }
        }
    });
    let session = Session::client(ours, SessionConfig::default());
    let (a, b) = tokio::join!(
        spdy_pair(&session, port, Some("1"), b"first"),
        spdy_pair(&session, port, Some("2"), b"second"),
    );
    assert_eq!(a, (b"echo:first".to_vec(), String::new()));
    assert_eq!(b, (b"echo:second".to_vec(), String::new()));
    drop(session);
    let _ = tokio::time::timeout(Duration::from_secs(5), bridge).await;
}
