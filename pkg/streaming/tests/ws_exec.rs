//! Exec and attach over WebSocket with the tokio-tungstenite client.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn v4_binary_channels_and_exit_code_status() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(
            &["sh", "-c", "echo out; echo err >&2; exit 2"],
            false,
            true,
            true,
            false,
        ))
        .unwrap();
    let (mut ws, chosen) = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(chosen.as_deref(), Some("v4.channel.k8s.io"));
    let messages = ws_collect(&mut ws).await;
    // kubelet's "connection established": an empty message on the lowest writable channel.
    assert_eq!(messages[0], (1, vec![]));
    assert_eq!(channel(&messages, 1), b"out\n");
    assert_eq!(channel(&messages, 2), b"err\n");
    let status: serde_json::Value = serde_json::from_slice(&channel(&messages, 3)).unwrap();
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "2");
    h.record.wait_all_dropped(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn v4_base64_text_messages() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["cat"], true, true, false, false))
        .unwrap();
    let (mut ws, chosen) = ws_connect(&url, &["v4.base64.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("v4.base64.channel.k8s.io"));
    let first = ws_recv(&mut ws).await.unwrap();
    assert_eq!(first, Message::text("1"));
    // "foo\n" on stdin, base64.
    ws_send(&mut ws, Message::text("0Zm9vCg==")).await;
    let echoed = ws_recv(&mut ws).await.unwrap();
    assert_eq!(echoed, Message::text("1Zm9vCg=="));
}

#[tokio::test]
async fn v5_closes_stdin_with_the_close_signal() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["cat"], true, true, false, false))
        .unwrap();
    let (mut ws, chosen) = ws_connect(&url, &["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .await
        .unwrap();
    assert_eq!(chosen.as_deref(), Some("v5.channel.k8s.io"));
    ws_send(&mut ws, binary(0, b"hi\n")).await;
    ws_send(&mut ws, binary(255, &[0])).await;
    let messages = ws_collect(&mut ws).await;
    assert_eq!(channel(&messages, 1), b"hi\n");
    assert_eq!(
        channel(&messages, 3),
        br#"{"metadata":{},"status":"Success"}"#
    );
}

#[tokio::test]
async fn no_protocol_is_channel_k8s_io_with_text_status() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["sh", "-c", "exit 5"], false, true, false, false))
        .unwrap();
    let (mut ws, chosen) = ws_connect(&url, &[]).await.unwrap();
    assert_eq!(chosen, None);
    let messages = ws_collect(&mut ws).await;
    assert_eq!(
        String::from_utf8(channel(&messages, 3)).unwrap(),
        "command terminated with non-zero exit code: error executing command [sh -c exit 5], exit code 5"
    );
}

#[tokio::test]
async fn resize_channel_reaches_the_backend() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["cat"], true, true, false, true))
        .unwrap();
    let (mut ws, _) = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    ws_send(&mut ws, binary(4, br#"{"Width":100,"Height":30}"#)).await;
    ws_send(&mut ws, binary(4, br#"{"Width":101,"Height":31}"#)).await;
    let seen = h.record.wait_resizes(2, Duration::from_secs(5)).await;
    assert_eq!(seen, vec![(100, 30), (101, 31)]);
    ws_send(&mut ws, binary(255, &[0])).await;
    let messages = ws_collect(&mut ws).await;
    assert_eq!(
        channel(&messages, 3),
        br#"{"metadata":{},"status":"Success"}"#
    );
}

#[tokio::test]
async fn client_disconnect_drops_the_process() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(
            &["sh", "-c", "echo started; exec sleep 1000"],
            false,
            true,
            false,
            false,
        ))
        .unwrap();
    let (mut ws, _) = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(ws_recv(&mut ws).await.unwrap(), binary(1, b""));
    assert_eq!(ws_recv(&mut ws).await.unwrap(), binary(1, b"started\n"));
    let pid = h.record.pids.lock().unwrap()[0];
    drop(ws);
    h.record.wait_all_dropped(Duration::from_secs(5)).await;
    assert!(eventually(Duration::from_secs(5), || !pid_alive(pid)).await);
}

#[tokio::test]
async fn stdin_only_exec_announces_on_the_error_channel() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(
            &["sh", "-c", "cat >/dev/null"],
            true,
            false,
            false,
            false,
        ))
        .unwrap();
    let (mut ws, _) = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    assert_eq!(ws_recv(&mut ws).await.unwrap(), binary(3, b""));
    ws_send(&mut ws, binary(0, b"data")).await;
    ws_send(&mut ws, binary(255, &[0])).await;
    let messages = ws_collect(&mut ws).await;
    assert_eq!(
        channel(&messages, 3),
        br#"{"metadata":{},"status":"Success"}"#
    );
}

#[tokio::test]
async fn hundred_concurrent_websocket_sessions() {
    let h = start().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = h
            .server
            .exec_url(exec(&["echo", &i.to_string()], false, true, false, false))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let (mut ws, _) = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
            (i, ws_collect(&mut ws).await)
        }));
    }
    for task in tasks {
        let (i, messages) = task.await.unwrap();
        assert_eq!(channel(&messages, 1), format!("{i}\n").as_bytes());
    }
    h.record.wait_all_dropped(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn large_stdin_echo_with_concurrent_reads() {
    use std::future::poll_fn;
    use std::pin::Pin;

    use futures_core::Stream as _;
    use futures_sink::Sink;

    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["cat"], true, true, false, false))
        .unwrap();
    let (mut ws, _) = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut chunks = payload.chunks(40_000).peekable();
    let mut got = Vec::new();
    let mut status = Vec::new();
    let mut sent_close = false;
    // One task, both directions: send when the sink is ready, read whatever arrives.
    let done = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let message = poll_fn(|cx| {
                if !sent_close && Pin::new(&mut ws).poll_ready(cx).is_ready() {
                    let m = match chunks.next() {
                        Some(c) => binary(0, c),
                        None => {
                            sent_close = true;
                            binary(255, &[0])
                        }
                    };
                    Pin::new(&mut ws).start_send(m).unwrap();
                    let _ = Pin::new(&mut ws).poll_flush(cx);
                }
                let _ = Pin::new(&mut ws).poll_flush(cx);
                Pin::new(&mut ws).poll_next(cx)
            })
            .await;
            match message {
                Some(Ok(Message::Binary(b))) if b[0] == 1 => got.extend_from_slice(&b[1..]),
                Some(Ok(Message::Binary(b))) if b[0] == 3 => status.extend_from_slice(&b[1..]),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(done.is_ok(), "timed out");
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
    assert_eq!(status, br#"{"metadata":{},"status":"Success"}"#);
}
