//! Sessions leave nothing behind: after a mix of finished and abandoned sessions, the runtime's
//! task count and the process's open fds return to where they were. (Alone in its binary, so no
//! other test disturbs the counts.)

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_or_fd_outlives_its_session() {
    let h = start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut data = Vec::new();
                let _ = conn.read_to_end(&mut data).await;
                let _ = conn.write_all(&data).await;
            });
        }
    });
    // Warm up lazily created resources (e.g. tokio's signal/child machinery).
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    spdy_run(&url, "v4.channel.k8s.io", None, true, false).await;
    h.record.wait_all_dropped(Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (tasks, fds) = (alive_tasks(), open_fds());

    for round in 0..3 {
        // Finished SPDY and WebSocket execs.
        let url = h
            .server
            .exec_url(exec(
                &["sh", "-c", "echo hi; exit 1"],
                false,
                true,
                true,
                false,
            ))
            .unwrap();
        let ran = spdy_run(&url, "v4.channel.k8s.io", None, true, true).await;
        assert_eq!(ran.stdout, "hi\n");
        let url = h
            .server
            .exec_url(exec(&["cat"], true, true, false, false))
            .unwrap();
        let (mut ws, _) = ws_connect(&url, &["v5.channel.k8s.io"]).await.unwrap();
        ws_send(&mut ws, binary(0, b"x")).await;
        ws_send(&mut ws, binary(255, &[0])).await;
        assert_eq!(channel(&ws_collect(&mut ws).await, 1), b"x");
        drop(ws);

        // Abandoned mid-stream, both transports.
        let url = h
            .server
            .exec_url(exec(&["sleep", "1000"], false, true, false, false))
            .unwrap();
        let (session, _) = spdy_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
        let streams = (
            open(&session, "error", &[]).await,
            open(&session, "stdout", &[]).await,
        );
        let url = h
            .server
            .exec_url(exec(&["sleep", "1000"], false, true, false, false))
            .unwrap();
        let (mut ws, _) = ws_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
        assert!(ws_recv(&mut ws).await.is_some());
        assert!(
            eventually(Duration::from_secs(5), || h.record.live() == 2).await,
            "round {round}"
        );
        session.abort();
        drop((session, streams, ws));

        // Port-forward, SPDY and WebSocket.
        let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
        let (session, _) = spdy_connect(&url, &["portforward.k8s.io"]).await.unwrap();
        let p = port.to_string();
        let headers = [("port", p.as_str()), ("requestid", "0")];
        let (error, _e) = open(&session, "error", &headers).await;
        let (data, mut data_send) = open(&session, "data", &headers).await;
        data_send.send(b"pf").await.unwrap();
        data_send.finish().await.unwrap();
        assert_eq!(read_all(data).await, b"pf");
        assert!(read_all(error).await.is_empty());
        drop(session);
        let url = h.server.port_forward_url("pod-1".to_string()).unwrap();
        let (ws, _) = ws_connect(&format!("{url}?port={port}"), &["v4.channel.k8s.io"])
            .await
            .unwrap();
        drop(ws);
    }

    h.record.wait_all_dropped(Duration::from_secs(10)).await;
    let settled = eventually(Duration::from_secs(15), || {
        alive_tasks() <= tasks && open_fds() <= fds
    })
    .await;
    assert!(
        settled,
        "tasks {} (was {tasks}), fds {} (was {fds})",
        alive_tasks(),
        open_fds()
    );
}
