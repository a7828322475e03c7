//! Streaming sessions against a real berthd beyond one exec: port-forward (SPDY and WebSocket,
//! connections in parallel), single-use and expiring URLs, clients that vanish mid-exec, and many
//! sessions at once.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use berth_e2e::containers::*;
use berth_e2e::streaming::berth::{
    exec_sync, exec_url, port_forward_url, wait_alone, wait_for_process_beside,
};
use berth_e2e::streaming::{
    ExecOptions, ExecSession, ExecStatus, SpdyPortForwarder, SpdyVersion, StreamOptions, Transport,
    WsVersion, exec, http_get, http_status, port_forward_spdy, port_forward_ws,
};
use berth_e2e::{Berthd, Options};

const LONG: Duration = Duration::from_secs(20);
const SPDY: Transport = Transport::Spdy(SpdyVersion::V4);
const WS: Transport = Transport::Ws(WsVersion::V5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_reaches_the_pods_http_server_over_spdy_and_websocket() {
    let berthd = Berthd::start("stpf").await.expect("starting berthd");
    pull(&berthd, &httpd()).await;
    let pod = Pod::run(&berthd, "pf").await;
    let web = run(&berthd, &pod, container_config("web", &httpd(), &[])).await;
    // The server listens once it answers a port-forwarded GET; retry until then.
    let url = port_forward_url(&berthd, &pod.id, &[8080])
        .await
        .expect("PortForward");
    let forwarder = SpdyPortForwarder::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("port-forward upgrade: {e:#}"));
    poll(LONG, "httpd answering through port-forward", async || {
        let mut conn = forwarder.open(8080).await.ok()?;
        let (status, _) = http_get(&mut conn, "/healthz", Duration::from_secs(2))
            .await
            .ok()?;
        (status == 200).then_some(())
    })
    .await;

    // Eight connections on one SPDY session at once, small and large answers.
    let forwarder = Arc::new(forwarder);
    let mut gets = Vec::new();
    for i in 0..8 {
        let forwarder = forwarder.clone();
        gets.push(tokio::spawn(async move {
            let path = if i % 2 == 0 {
                "/".to_string()
            } else {
                format!("/bytes/{}", 1_000_000 + i)
            };
            let mut conn = forwarder
                .open(8080)
                .await
                .unwrap_or_else(|e| panic!("connection {i}: {e:#}"));
            let (status, body) = http_get(&mut conn, &path, LONG)
                .await
                .unwrap_or_else(|e| panic!("GET {path} on connection {i}: {e:#}"));
            assert!(conn.error().is_none(), "connection {i}: {:?}", conn.error());
            (path, status, body)
        }));
    }
    for get in gets {
        let (path, status, body) = get.await.expect("GET task");
        assert_eq!(status, 200, "GET {path}");
        if path == "/" {
            let text = String::from_utf8_lossy(&body);
            assert!(text.contains("hello from berth httpd"), "GET /: {text:?}");
        } else {
            let want: usize = path.trim_start_matches("/bytes/").parse().unwrap();
            assert_eq!(body.len(), want, "GET {path}");
        }
    }
    drop(forwarder);

    // A port nothing listens on: the connection's error stream says so, the data stream ends.
    let url = port_forward_url(&berthd, &pod.id, &[])
        .await
        .expect("PortForward");
    let mut conn = port_forward_spdy(&url, 9)
        .await
        .expect("port-forward to a closed port");
    let got = http_get(&mut conn, "/", Duration::from_secs(10)).await;
    assert!(
        got.is_err() || got.as_ref().is_ok_and(|(s, _)| *s != 200),
        "{got:?}"
    );
    poll(Duration::from_secs(5), "an error for port 9", async || {
        conn.error()
    })
    .await;

    // WebSocket: one connection per URL, several at once.
    let mut gets = Vec::new();
    for i in 0..4 {
        let url = port_forward_url(&berthd, &pod.id, &[8080])
            .await
            .expect("PortForward");
        gets.push(tokio::spawn(async move {
            let mut conn = port_forward_ws(&url, 8080)
                .await
                .unwrap_or_else(|e| panic!("WebSocket port-forward {i}: {e:#}"));
            http_get(&mut conn, "/bytes/300000", LONG)
                .await
                .unwrap_or_else(|e| panic!("GET over WebSocket {i}: {e:#}"))
        }));
    }
    for get in gets {
        let (status, body) = get.await.expect("GET task");
        assert_eq!((status, body.len()), (200, 300_000));
    }
    stop_and_remove(&berthd, &web).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_are_single_use_and_expire() {
    let options = Options {
        dropin: "[streaming]\ntoken_ttl_secs = 2\n".into(),
        ..Default::default()
    };
    let berthd = Berthd::start_with("sttoken", options)
        .await
        .expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "token").await;
    let id = run(
        &berthd,
        &pod,
        container_config("sleeper", &busybox(), &["sleep", "3600"]),
    )
    .await;
    for transport in [SPDY, WS] {
        let url = exec_url(&berthd, &id, &["echo", "once"], StreamOptions::default())
            .await
            .expect("Exec");
        let out = exec(&url, transport, ExecOptions::default())
            .await
            .expect("first use");
        assert_eq!(out.stdout_str(), "once\n", "{}", out.summary());
        let err = exec(&url, transport, ExecOptions::default())
            .await
            .expect_err("second use of a URL");
        assert_eq!(http_status(&err), Some(404), "{transport:?} reuse: {err:#}");

        let url = exec_url(&berthd, &id, &["echo", "late"], StreamOptions::default())
            .await
            .expect("Exec");
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let err = exec(&url, transport, ExecOptions::default())
            .await
            .expect_err("an expired URL");
        assert_eq!(
            http_status(&err),
            Some(404),
            "{transport:?} expired: {err:#}"
        );
    }
    // The same for port-forward, and a token nobody issued.
    let url = port_forward_url(&berthd, &pod.id, &[8080])
        .await
        .expect("PortForward");
    let forwarder = SpdyPortForwarder::connect(&url).await.expect("first use");
    let err = SpdyPortForwarder::connect(&url)
        .await
        .err()
        .expect("second use of a port-forward URL");
    assert_eq!(http_status(&err), Some(404), "{err:#}");
    drop(forwarder);
    let (base, _) = url.rsplit_once('/').expect("a token at the end of the URL");
    let err = exec(&format!("{base}/not-a-token"), SPDY, ExecOptions::default())
        .await
        .expect_err("an unknown token");
    assert_eq!(http_status(&err), Some(404), "{err:#}");
    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_exec_leaves_no_process() {
    let berthd = Berthd::start("stdisc").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "disc").await;
    let id = run(
        &berthd,
        &pod,
        container_config("sleeper", &busybox(), &["sleep", "3600"]),
    )
    .await;
    let main_pid = pid(&berthd, &id).await;
    let cases = [
        (SPDY, false, "sleep 1001"),
        (WS, false, "sleep 1002"),
        (SPDY, true, "sleep 1003"),
        (Transport::Ws(WsVersion::V4), true, "sleep 1004"),
    ];
    for (transport, tty, cmd) in cases {
        let streams = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: !tty,
            tty,
        };
        let argv: Vec<&str> = cmd.split(' ').collect();
        let url = exec_url(&berthd, &id, &argv, streams).await.expect("Exec");
        let session = ExecSession::open(&url, transport, streams)
            .await
            .expect("exec session");
        let exec_pid = wait_for_process_beside(main_pid, cmd, LONG).await;
        session.disconnect();
        wait_gone(exec_pid, LONG).await;
        wait_alone(main_pid, Duration::from_secs(5)).await;
    }
    // The container itself is untouched.
    assert_eq!(state(&berthd, &id).await, RUNNING);
    let out = exec_sync(&berthd, &id, &["echo", "still-here"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(out.stdout, b"still-here\n");
    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_exec_sessions_and_exec_syncs() {
    let berthd = Arc::new(Berthd::start("stmany").await.expect("starting berthd"));
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "many").await;
    let id = run(
        &berthd,
        &pod,
        container_config("sleeper", &busybox(), &["sleep", "3600"]),
    )
    .await;
    let main_pid = pid(&berthd, &id).await;
    // BERTH_E2E_CONCURRENCY: another count, to find where a limit starts.
    let count: usize = std::env::var("BERTH_E2E_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut tasks = Vec::new();
    for i in 0..count {
        let (berthd, id) = (berthd.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            let word = format!("task-{i}");
            let script = format!("echo {word}; echo {word} >&2; exit {}", i % 5);
            let cmd = ["sh", "-c", script.as_str()];
            let (stdout, stderr, code) = match i % 3 {
                0 => {
                    let out = exec_sync(&berthd, &id, &cmd, 60)
                        .await
                        .map_err(|e| format!("ExecSync {i}: {e:?}"))?;
                    (out.stdout, out.stderr, out.exit_code)
                }
                kind => {
                    let transport = if kind == 1 { SPDY } else { WS };
                    let options = ExecOptions {
                        timeout: Duration::from_secs(90),
                        ..Default::default()
                    };
                    let url = exec_url(&berthd, &id, &cmd, options.streams())
                        .await
                        .map_err(|e| format!("Exec {i}: {e:?}"))?;
                    let out = exec(&url, transport, options)
                        .await
                        .map_err(|e| format!("exec {i} over {transport:?}: {e:#}"))?;
                    let ExecStatus::Exited(code) = out.status else {
                        return Err(format!("exec {i} over {transport:?}: {}", out.summary()));
                    };
                    (out.stdout, out.stderr, code)
                }
            };
            let want = format!("{word}\n");
            let got = (
                String::from_utf8_lossy(&stdout).into_owned(),
                String::from_utf8_lossy(&stderr).into_owned(),
                code,
            );
            if got != (want.clone(), want.clone(), i32::try_from(i % 5).unwrap()) {
                return Err(format!("{i}: got (stdout, stderr, exit code) {got:?}"));
            }
            Ok(())
        }));
    }
    let mut failures = Vec::new();
    for task in tasks {
        if let Err(e) = task.await.expect("exec task") {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {count} concurrent execs failed; the first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(3)].join("\n")
    );
    wait_alone(main_pid, Duration::from_secs(10)).await;
    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    Arc::into_inner(berthd)
        .expect("all tasks are done")
        .finish();
}
