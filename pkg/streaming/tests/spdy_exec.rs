//! Exec and attach over SPDY/3.1 with the berth-spdy client, as kubectl/kubelet speak it.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use berth_streaming::AttachTarget;
use common::*;

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("status {s:?}: {e}"))
}

#[tokio::test]
async fn v4_stdout_stderr_and_success_status() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(
            &["sh", "-c", "echo out; echo err >&2"],
            false,
            true,
            true,
            false,
        ))
        .unwrap();
    assert!(url.starts_with(&format!("http://{}/exec/", h.server.address())));
    let ran = spdy_run(&url, "v4.channel.k8s.io", None, true, true).await;
    assert_eq!(ran.stdout, "out\n");
    assert_eq!(ran.stderr, "err\n");
    assert_eq!(ran.status, r#"{"metadata":{},"status":"Success"}"#);
    h.record.wait_all_dropped(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn v4_non_zero_exit_code_status() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["sh", "-c", "exit 3"], false, true, false, false))
        .unwrap();
    let ran = spdy_run(&url, "v4.channel.k8s.io", None, true, false).await;
    let status = json(&ran.status);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("command terminated with non-zero exit code: ")
    );
}

#[tokio::test]
async fn stdin_is_echoed_and_its_eof_ends_the_process() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["cat"], true, true, false, false))
        .unwrap();
    let ran = spdy_run(
        &url,
        "v4.channel.k8s.io",
        Some(b"hello\nworld\n"),
        true,
        false,
    )
    .await;
    assert_eq!(ran.stdout, "hello\nworld\n");
    assert_eq!(ran.status, r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn large_output_flows() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(
            &["head", "-c", "3000000", "/dev/zero"],
            false,
            true,
            false,
            false,
        ))
        .unwrap();
    let ran = spdy_run(&url, "v4.channel.k8s.io", None, true, false).await;
    assert_eq!(ran.stdout.len(), 3_000_000);
}

#[tokio::test]
async fn v2_and_v1_report_errors_as_text_and_nothing_on_success() {
    let h = start().await;
    for protocol in ["v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"] {
        let url = h
            .server
            .exec_url(exec(&["sh", "-c", "exit 7"], false, true, false, false))
            .unwrap();
        let ran = spdy_run(&url, protocol, None, true, false).await;
        assert_eq!(
            ran.status,
            "command terminated with non-zero exit code: error executing command [sh -c exit 7], exit code 7",
            "{protocol}"
        );
        let url = h
            .server
            .exec_url(exec(&["true"], false, true, false, false))
            .unwrap();
        let ran = spdy_run(&url, protocol, None, true, false).await;
        assert_eq!(ran.status, "", "{protocol}");
    }
}

#[tokio::test]
async fn exec_that_cannot_start_is_an_internal_error() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["fail"], false, true, false, false))
        .unwrap();
    let ran = spdy_run(&url, "v4.channel.k8s.io", None, true, false).await;
    let status = json(&ran.status);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "InternalError");
    assert_eq!(status["code"], 500);
    assert_eq!(
        status["message"],
        "Internal error occurred: error executing command in container: runtime exploded"
    );
}

#[tokio::test]
async fn resize_events_reach_the_backend() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["cat"], true, true, false, true))
        .unwrap();
    let (session, _) = spdy_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let (error, _e) = open(&session, "error", &[]).await;
    let (_, mut stdin) = open(&session, "stdin", &[]).await;
    let (stdout, _o) = open(&session, "stdout", &[]).await;
    let (_, mut resize) = open(&session, "resize", &[]).await;
    resize
        .send(br#"{"Width":80,"Height":24}{"Width":1"#)
        .await
        .unwrap();
    resize.send(b"20,\"Height\":40}\n").await.unwrap();
    let seen = h.record.wait_resizes(2, Duration::from_secs(5)).await;
    assert_eq!(seen, vec![(80, 24), (120, 40)]);
    stdin.send(b"tty\n").await.unwrap();
    stdin.finish().await.unwrap();
    assert_eq!(read_all(stdout).await, b"tty\n");
    assert_eq!(
        read_all(error).await,
        br#"{"metadata":{},"status":"Success"}"#
    );
}

#[tokio::test]
async fn attach_streams_output_and_reports_success() {
    let h = start().await;
    let url = h
        .server
        .attach_url(AttachTarget {
            container_id: "echo attached; read line; echo got $line; exit 4".to_string(),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .unwrap();
    assert!(url.contains("/attach/"));
    let ran = spdy_run(&url, "v4.channel.k8s.io", Some(b"x\n"), true, true).await;
    assert_eq!(ran.stdout, "attached\ngot x\n");
    // kubelet reports no exit code for attach.
    assert_eq!(ran.status, r#"{"metadata":{},"status":"Success"}"#);
}

#[tokio::test]
async fn client_disconnect_mid_stream_drops_the_process() {
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
    let (session, _) = spdy_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let (_error, _e) = open(&session, "error", &[]).await;
    let (mut stdout, _o) = open(&session, "stdout", &[]).await;
    assert_eq!(&stdout.recv().await.unwrap()[..], b"started\n");
    assert_eq!(h.record.live(), 1);
    let pid = h.record.pids.lock().unwrap()[0];
    assert!(pid_alive(pid));
    session.abort();
    drop(session);
    h.record.wait_all_dropped(Duration::from_secs(5)).await;
    assert!(eventually(Duration::from_secs(5), || !pid_alive(pid)).await);
}

#[tokio::test]
async fn streams_not_created_in_time_end_the_session() {
    let h = start_with(berth_streaming::StreamingConfig {
        stream_creation_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let url = h
        .server
        .exec_url(exec(&["true"], false, true, false, false))
        .unwrap();
    let (session, _) = spdy_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    // Only the error stream: stdout never comes.
    let (error, _e) = open(&session, "error", &[]).await;
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .expect("session should be closed");
    assert!(read_all(error).await.is_empty());
    assert_eq!(
        h.record.started.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn hundred_concurrent_exec_sessions() {
    let h = start().await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let url = h
            .server
            .exec_url(exec(
                &["sh", "-c", &format!("echo {i}; exit {}", i % 3)],
                false,
                true,
                false,
                false,
            ))
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let ran = spdy_run(&url, "v4.channel.k8s.io", None, true, false).await;
            (i, ran)
        }));
    }
    for task in tasks {
        let (i, ran) = task.await.unwrap();
        assert_eq!(ran.stdout, format!("{i}\n"));
        if i % 3 == 0 {
            assert_eq!(ran.status, r#"{"metadata":{},"status":"Success"}"#);
        } else {
            assert!(ran.status.contains("NonZeroExitCode"), "{}", ran.status);
        }
    }
    h.record.wait_all_dropped(Duration::from_secs(10)).await;
    assert_eq!(h.record.live(), 0);
}

#[tokio::test]
async fn large_stdin_echo_with_concurrent_reads() {
    let h = start().await;
    let url = h
        .server
        .exec_url(exec(&["cat"], true, true, false, false))
        .unwrap();
    let (session, _) = spdy_connect(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let (error, _e) = open(&session, "error", &[]).await;
    let (_, mut stdin) = open(&session, "stdin", &[]).await;
    let (stdout, _o) = open(&session, "stdout", &[]).await;
    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        for chunk in sent.chunks(50_000) {
            stdin.send(chunk).await.unwrap();
        }
        stdin.finish().await.unwrap();
    });
    let got = tokio::time::timeout(Duration::from_secs(60), read_all(stdout))
        .await
        .unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), payload.len());
    assert!(got == payload);
    assert_eq!(
        read_all(error).await,
        br#"{"metadata":{},"status":"Success"}"#
    );
}
