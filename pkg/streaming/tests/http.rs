//! The HTTP side: tokens (single use, expiry, bound), routing, negotiation failures, idle
//! timeout, shutdown.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use berth_streaming::{AttachTarget, MAX_IN_FLIGHT, StreamingConfig, StreamingError};
use common::*;
use tokio::net::TcpStream;

async fn get(url: &str, headers: &[(&str, &str)]) -> Head {
    let (addr, target) = split_url(url);
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    request(&mut tcp, &target, headers).await
}

const SPDY_V4: &[(&str, &str)] = &[
    ("Connection", "Upgrade"),
    ("Upgrade", "SPDY/3.1"),
    ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
];

#[tokio::test]
async fn a_token_works_once() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let ran = spdy_run(&url, "v4.channel.k8s.io", None, true, false).await;
    assert_eq!(ran.status, r#"{"metadata":{},"status":"Success"}"#);
    let again = get(&url, SPDY_V4).await;
    assert_eq!(again.status, 404);
    assert!(
        again.body.contains("already used or expired"),
        "{}",
        again.body
    );
}

#[tokio::test]
async fn a_token_expires() {
    let h = start_with(StreamingConfig {
        token_ttl: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(get(&url, SPDY_V4).await.status, 404);
}

#[tokio::test]
async fn a_token_is_only_good_for_its_kind_and_paths_are_checked() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let wrong = url.replace("/exec/", "/attach/");
    assert_eq!(get(&wrong, SPDY_V4).await.status, 404);
    // Used up by the wrong-kind attempt, as kubelet's cache does.
    assert_eq!(get(&url, SPDY_V4).await.status, 404);
    let base = format!("http://{}", h.server.address());
    for path in ["/", "/exec", "/exec/", "/exec/a/b", "/other/x"] {
        assert_eq!(
            get(&format!("{base}{path}"), SPDY_V4).await.status,
            404,
            "{path}"
        );
    }
}

#[tokio::test]
async fn protocol_mismatch_is_403() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let head = get(
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v9.channel.k8s.io"),
        ],
    )
    .await;
    assert_eq!(head.status, 403);
    assert_eq!(
        head.body,
        "unable to upgrade: unable to negotiate protocol: client supports [v9.channel.k8s.io], \
         server accepts [v4.channel.k8s.io v3.channel.k8s.io v2.channel.k8s.io channel.k8s.io]\n"
    );
    assert_eq!(
        head.headers_named("x-accepted-stream-protocol-versions"),
        vec![
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "v2.channel.k8s.io",
            "channel.k8s.io"
        ]
    );

    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let err = ws_connect(&url, &["v9.channel.k8s.io"]).await.unwrap_err();
    assert!(err.contains("403"), "{err}");

    let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
    let head = get(
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "SPDY/3.1"),
            ("X-Stream-Protocol-Version", "v4.channel.k8s.io"),
        ],
    )
    .await;
    assert_eq!(head.status, 403);
}

#[tokio::test]
async fn bad_upgrade_requests_are_400() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let head = get(&url, &[]).await;
    assert_eq!(head.status, 400);
    assert_eq!(
        head.body,
        "unable to upgrade: X-Stream-Protocol-Version is required\n"
    );
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let head = get(&url, &[("X-Stream-Protocol-Version", "v4.channel.k8s.io")]).await;
    assert_eq!(head.status, 400);
    assert!(
        head.body.contains("missing upgrade headers"),
        "{}",
        head.body
    );
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let head = get(
        &url,
        &[
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "8"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
    )
    .await;
    assert_eq!(head.status, 400);
}

#[tokio::test]
async fn url_requests_are_validated_and_bounded() {
    let h = start().await;
    let invalid = [
        h.server
            .exec_url(exec(&["true"], false, false, false, false)),
        h.server.exec_url(exec(&["true"], false, true, true, true)),
        h.server.exec_url(exec(&[], false, true, false, false)),
        h.server.attach_url(AttachTarget::default()),
        h.server.port_forward_url(String::new()),
    ];
    for result in invalid {
        assert!(matches!(result, Err(StreamingError::InvalidRequest(_))));
    }
    for _ in 0..MAX_IN_FLIGHT {
        h.server.port_forward_url("pod-1".to_string()).unwrap();
    }
    let err = h.server.port_forward_url("pod-1".to_string()).unwrap_err();
    assert!(matches!(
        err,
        StreamingError::TooManyInFlight { limit: 1000 }
    ));
    assert_eq!(
        err.to_string(),
        "maximum number of in-flight streaming requests exceeded (1000)"
    );
}

#[tokio::test]
async fn idle_sessions_are_closed() {
    let h = start_with(StreamingConfig {
        idle_timeout: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let url = h
        .server
        .exec_url(exec(&["sleep", "1000"], false, true, false, false))
        .unwrap();
    let (session, _) = spdy_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let (_error, _e) = open(&session, "error", &[]).await;
    let (_stdout, _o) = open(&session, "stdout", &[]).await;
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("idle session closed");
    h.record.wait_all_dropped(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn shutdown_ends_sessions_and_the_serving_future() {
    let mut h = start().await;
    let url = h
        .server
        .exec_url(exec(&["sleep", "1000"], false, true, false, false))
        .unwrap();
    let (mut ws, _) = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(ws_recv(&mut ws).await.unwrap(), binary(1, b""));
    assert!(eventually(Duration::from_secs(5), || h.record.live() == 1).await);
    let _ = h.stop.take().unwrap().send(());
    tokio::time::timeout(Duration::from_secs(10), &mut h.serving)
        .await
        .expect("serving future ends")
        .unwrap();
    h.record.wait_all_dropped(Duration::from_secs(5)).await;
    // The client sees the connection end.
    assert!(
        tokio::time::timeout(Duration::from_secs(5), ws_recv(&mut ws))
            .await
            .expect("connection ends")
            .is_none()
    );
}
