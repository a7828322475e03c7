//! The streaming client (`berth_e2e::streaming`) against a reference server: containerd 1.6's CRI
//! plugin, which serves Exec/Attach/PortForward with Kubernetes' own streaming code. Ignored by
//! default (it needs a running containerd); to rerun it:
//!
//! ```sh
//! hack/registry.sh start && hack/test-images.sh        # the test registry on 127.0.0.1:5000
//! export BERTH_BENCH_DIR=/tmp/berth-stream-ctrd        # a private containerd, stopped afterwards
//! hack/bench/containerd.sh start && eval "$(hack/bench/containerd.sh env)"
//! cargo test -p berth-e2e --test streaming_containerd -- --ignored --nocapture
//! hack/bench/containerd.sh stop
//! ```
//!
//! `BERTH_BENCH_CONTAINERD_ENDPOINT` (what `containerd.sh env` exports) names the CRI socket. The
//! test removes its pod at the end, so containerd is left as it was.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use berth_e2e::containerd::{Checks, ReferencePod, container_config};
use berth_e2e::containers::{busybox, httpd};
use berth_e2e::streaming::cri::{attach_url, exec_url, port_forward_url};
use berth_e2e::streaming::{
    ExecOptions, ExecSession, ExecStatus, SpdyPortForwarder, SpdyVersion, StreamOptions, Transport,
    WsVersion, http_get, port_forward_ws,
};

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs containerd 1.6 running (hack/bench/containerd.sh start); see the file's doc"]
async fn the_client_speaks_kubernetes_streaming_protocols_with_containerd() {
    ReferencePod::run("streaming-ref", &[busybox(), httpd()])
        .await
        .check_then_remove(Duration::from_secs(300), checks)
        .await;
}

/// Runs every check, each printed as it ends.
async fn checks(r: &mut ReferencePod, c: &mut Checks) {
    let sleeper = r
        .run_container(container_config("sleeper", &busybox(), &["sleep", "3600"]))
        .await;

    for transport in Transport::ALL {
        let name = format!("{transport:?}");
        // containerd 1.6's streaming server predates v5.channel.k8s.io (Kubernetes 1.30).
        if transport == Transport::Ws(WsVersion::V5) {
            let out = r
                .exec(&sleeper, &["true"], transport, ExecOptions::default())
                .await;
            c.check(
                format!("{name}: refused by containerd 1.6"),
                match out {
                    Err(e) => {
                        println!("     ({e:#})");
                        Ok(())
                    }
                    Ok(o) => Err(anyhow::anyhow!("v5 accepted? {}", o.summary())),
                },
            );
            continue;
        }
        let out = r
            .exec(
                &sleeper,
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                transport,
                ExecOptions::default(),
            )
            .await;
        c.check(
            format!("{name}: output and non-zero exit"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.stdout_str() == "out\n" && o.stderr_str() == "err\n",
                    "output: {}",
                    o.summary()
                );
                let v4 = transport.protocol().starts_with("v4");
                match &o.status {
                    ExecStatus::Exited(3) if v4 => Ok(()),
                    // Kubernetes' server closes v1's error stream as soon as it has it: no status.
                    ExecStatus::Exited(0)
                        if transport == Transport::Spdy(SpdyVersion::V1)
                            && o.raw_status.is_empty() =>
                    {
                        println!(
                            "     (no status: Kubernetes' v1 handler closes the error stream)"
                        );
                        Ok(())
                    }
                    ExecStatus::Error(text) if !v4 && !text.is_empty() => {
                        println!("     (text status: {text:?})");
                        Ok(())
                    }
                    _ => anyhow::bail!("{}", o.summary()),
                }
            }),
        );
        let out = r
            .exec(
                &sleeper,
                &["echo", "fine"],
                transport,
                ExecOptions::default(),
            )
            .await;
        c.check(
            format!("{name}: success"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.status == ExecStatus::Exited(0) && o.stdout_str() == "fine\n",
                    "{}",
                    o.summary()
                );
                Ok(())
            }),
        );
        let options = ExecOptions {
            stdin: Some(b"line one\nline two\n".to_vec()),
            ..Default::default()
        };
        let out = r
            .exec(&sleeper, &["head", "-n", "1"], transport, options)
            .await;
        c.check(
            format!("{name}: stdin"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.stdout_str() == "line one\n" && o.exit_code() == Some(0),
                    "{}",
                    o.summary()
                );
                Ok(())
            }),
        );
        // containerd 1.6 sends no tty output over WebSocket unless stdin is attached too.
        let options = ExecOptions {
            tty: true,
            stdin: matches!(transport, Transport::Ws(_)).then(Vec::new),
            ..Default::default()
        };
        let out = r
            .exec(
                &sleeper,
                &["sh", "-c", "echo in-tty; tty"],
                transport,
                options,
            )
            .await;
        c.check(
            format!("{name}: tty"),
            out.and_then(|o| {
                let text = o.stdout_str();
                anyhow::ensure!(
                    text.contains("in-tty\r\n") && text.contains("/dev/pts/"),
                    "{}",
                    o.summary()
                );
                Ok(())
            }),
        );
    }

    // stdin closed (FIN) ends `cat`; a megabyte of stdin and of stdout.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let spdy = Transport::Spdy(SpdyVersion::V4);
    let options = ExecOptions {
        stdin: Some(big.clone()),
        ..Default::default()
    };
    let out = r.exec(&sleeper, &["cat"], spdy, options).await;
    c.check(
        "SPDY v4: 1 MiB through cat, stdin closed",
        out.and_then(|o| {
            anyhow::ensure!(
                o.stdout == big && o.exit_code() == Some(0),
                "{} bytes back, {:?}",
                o.stdout.len(),
                o.status
            );
            Ok(())
        }),
    );
    for transport in [
        spdy,
        Transport::Ws(WsVersion::V4),
        Transport::Ws(WsVersion::V4Base64),
    ] {
        let out = r
            .exec(
                &sleeper,
                &["head", "-c", "3000000", "/dev/zero"],
                transport,
                ExecOptions::default(),
            )
            .await;
        c.check(
            format!("{transport:?}: 3 MB of stdout"),
            out.and_then(|o| {
                anyhow::ensure!(
                    o.stdout.len() == 3_000_000 && o.exit_code() == Some(0),
                    "{} bytes, {:?}",
                    o.stdout.len(),
                    o.status
                );
                Ok(())
            }),
        );
    }

    // Resize: the size is sent before the shell reads its line and runs stty.
    for transport in [
        spdy,
        Transport::Spdy(SpdyVersion::V3),
        Transport::Ws(WsVersion::V4),
    ] {
        let result = async {
            let streams = StreamOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            };
            let url = exec_url(
                &mut r.rt,
                &sleeper,
                &["sh", "-c", "read x; stty size"],
                streams,
            )
            .await?;
            let mut session = ExecSession::open(&url, transport, streams).await?;
            session.resize(123, 45).await?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            session.send_stdin(b"go\n").await?;
            let out = session.wait(T).await?;
            anyhow::ensure!(
                out.stdout_str().contains("45 123"),
                "{:?}",
                out.stdout_str()
            );
            Ok(())
        }
        .await;
        c.check(format!("{transport:?}: resize"), result);
    }

    // Attach to a container reading its stdin.
    let mut config = container_config(
        "reader",
        &busybox(),
        &["sh", "-c", "while read l; do echo \"got $l\"; done"],
    );
    config.stdin = true;
    let reader = r.run_container(config).await;
    for transport in [spdy, Transport::Ws(WsVersion::V4)] {
        let result = async {
            let streams = StreamOptions {
                stdin: true,
                ..Default::default()
            };
            let url = attach_url(&mut r.rt, &reader, streams).await?;
            let mut session = ExecSession::open(&url, transport, streams).await?;
            session.send_stdin(b"hello\n").await?;
            session.read_until("got hello\n", T).await?;
            session.send_stdin(b"again\n").await?;
            session.read_until("got again\n", T).await?;
            Ok(())
        }
        .await;
        c.check(format!("{transport:?}: attach"), result);
    }

    // Port-forward to the HTTP test image, several connections at once.
    r.run_container(container_config("web", &httpd(), &[]))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let result = async {
        let url = port_forward_url(&mut r.rt, &r.id, &[8080]).await?;
        let forwarder = SpdyPortForwarder::connect(&url).await?;
        let mut gets = Vec::new();
        for i in 0..6 {
            let mut conn = forwarder.open(8080).await?;
            gets.push(tokio::spawn(async move {
                let path = if i % 2 == 0 {
                    "/".to_string()
                } else {
                    "/bytes/2000000".to_string()
                };
                http_get(&mut conn, &path, T).await.map(|r| (path, r))
            }));
        }
        for get in gets {
            let (path, (status, body)) = get.await??;
            anyhow::ensure!(status == 200, "GET {path}: {status}");
            if path == "/" {
                anyhow::ensure!(
                    String::from_utf8_lossy(&body).contains("hello from berth httpd"),
                    "{body:?}"
                );
            } else {
                anyhow::ensure!(body.len() == 2_000_000, "GET {path}: {} bytes", body.len());
            }
        }
        Ok(())
    }
    .await;
    c.check("SPDY port-forward: 6 parallel GETs", result);
    let result = async {
        let url = port_forward_url(&mut r.rt, &r.id, &[8080]).await?;
        let mut conn = port_forward_ws(&url, 8080).await?;
        let (status, body) = http_get(&mut conn, "/bytes/500000", T).await?;
        anyhow::ensure!(
            status == 200 && body.len() == 500_000,
            "{status}, {} bytes",
            body.len()
        );
        Ok(())
    }
    .await;
    c.check("WebSocket port-forward", result);
}
