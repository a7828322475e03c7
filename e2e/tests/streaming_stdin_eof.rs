//! The end of a session's stdin (issue 13): SPDY FIN on the stdin stream, or WebSocket v5's CLOSE
//! of channel 0, while the connection stays open for the output. Driven through the Go client
//! built on spdystream (what kubectl and kubelet use, `berth_e2e::streaming::go_spdy`) and through
//! Berth's own WebSocket client:
//!
//! - attach to a `stdin_once` container: its stdin closes, the command exits, the session ends
//!   with success; no later attachment gets a stdin again;
//! - exec with stdin: the process's stdin closes, the session ends with its exit status;
//! - attach to a container without `stdin_once`: the attachment ends, the container's stdin stays
//!   open for the next one (containerd's behaviour).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::streaming::berth::{attach_url, exec_url};
use berth_e2e::streaming::go_spdy::{GoSpdyClient, GoSpdyOptions, GoSpdyResult};
use berth_e2e::streaming::stdin_eof::{ALL_STREAMS, EofSession, PROMPT};
use berth_e2e::streaming::{
    ExecOptions, ExecSession, ExecStatus, SpdyVersion, Transport, WsVersion, exec,
};
use tonic::Code;

const LONG: Duration = Duration::from_secs(20);
const SPDY: Transport = Transport::Spdy(SpdyVersion::V4);
const WS: Transport = Transport::Ws(WsVersion::V5);

fn go_client() -> &'static GoSpdyClient {
    GoSpdyClient::get(Path::new(env!("CARGO_TARGET_TMPDIR")))
}

/// Runs the Go client; panics (with what it saw) unless the session ended by itself, soon after
/// stdin was closed, on protocol v4 and with stdin still open for the FIN.
async fn go_session(url: &str, options: &GoSpdyOptions) -> GoSpdyResult {
    let out = berth_e2e::streaming::stdin_eof::go_session(go_client(), url, options)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(out.protocol, "v4.channel.k8s.io", "{out:?}");
    // Every session here waits for stdin's end: it must still be open for the FIN.
    assert_eq!(out.half_close_error, "", "{out:?}");
    out
}

/// Runs one of the sessions the containerd reference run makes too, and checks its output.
async fn eof_session(url: &str, session: EofSession) -> GoSpdyResult {
    let out = go_session(url, &session.options).await;
    session.check(&out).unwrap_or_else(|e| panic!("{e:#}"));
    out
}

fn stdin_container(
    name: &str,
    command: &[&str],
    stdin_once: bool,
) -> berth_cri_api::v1::ContainerConfig {
    let mut config = container_config(name, &busybox(), command);
    config.stdin = true;
    config.stdin_once = stdin_once;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_once_attach_ends_when_the_clients_stdin_ends() {
    let berthd = Berthd::start("steofonce").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "eofonce").await;

    // The case, as kubectl attach does it: `echo hello`, stdin FIN, connection kept open.
    let id = run(&berthd, &pod, stdin_container("sh-spdy", &["sh"], true)).await;
    let url = attach_url(&berthd, &id, ALL_STREAMS).await.expect("Attach");
    let out = eof_session(&url, EofSession::attach_stdin_once_sh()).await;
    assert_eq!(out.stderr, "", "{out:?}");
    let status = wait_exited(&berthd, &id, LONG).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    // Nothing left to attach to.
    let err = attach_url(&berthd, &id, ALL_STREAMS)
        .await
        .expect_err("Attach to the exited container");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");

    // The same over WebSocket v5: CLOSE of channel 0.
    let id = run(&berthd, &pod, stdin_container("sh-ws", &["sh"], true)).await;
    let url = attach_url(&berthd, &id, ALL_STREAMS).await.expect("Attach");
    let mut session = ExecSession::open(&url, WS, ALL_STREAMS)
        .await
        .expect("attach over WebSocket");
    session.send_stdin(b"echo hello\n").await.expect("stdin");
    session.close_stdin().await.expect("closing stdin");
    let out = session.wait(PROMPT).await.expect("the session ends");
    assert_eq!(out.stdout_str(), "hello\n", "{}", out.summary());
    assert_eq!(out.status, ExecStatus::Exited(0), "{}", out.summary());
    let status = wait_exited(&berthd, &id, LONG).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");

    // A container that outlives its stdin: once the first attachment closed it, a later one
    // cannot open it again (reads keep failing instead of getting the new input).
    let config = stdin_container(
        "outlives",
        &[
            "sh",
            "-c",
            "while read l; do echo \"got $l\"; done; echo eof; \
             while true; do read l && echo \"reopened $l\"; sleep 0.1; done",
        ],
        true,
    );
    let log = pod.log_file(&config);
    let id = run(&berthd, &pod, config).await;
    let url = attach_url(&berthd, &id, ALL_STREAMS).await.expect("Attach");
    let mut first = ExecSession::open(&url, SPDY, ALL_STREAMS)
        .await
        .expect("first attach");
    first.send_stdin(b"one\n").await.expect("stdin");
    first.close_stdin().await.expect("closing stdin (FIN)");
    first
        .read_stdout_until("got one\neof\n", LONG)
        .await
        .expect("stdin closed at the first attachment's EOF");
    first.disconnect();
    let url = attach_url(&berthd, &id, ALL_STREAMS)
        .await
        .expect("Attach again");
    let mut second = ExecSession::open(&url, WS, ALL_STREAMS)
        .await
        .expect("second attach");
    second.send_stdin(b"two\n").await.expect("stdin");
    second.close_stdin().await.expect("closing stdin");
    tokio::time::sleep(Duration::from_secs(1)).await;
    second.disconnect();
    assert_eq!(state(&berthd, &id).await, RUNNING);
    let lines = read_log(&log).expect("log");
    assert_eq!(
        stream_lines(&lines, "stdout"),
        ["got one", "eof"],
        "{lines:?}"
    );
    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stdin_eof_ends_the_command_and_the_session() {
    let berthd = Berthd::start("steofexec").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "eofexec").await;
    let id = run(
        &berthd,
        &pod,
        container_config("sleeper", &busybox(), &["sleep", "3600"]),
    )
    .await;

    // Interactive: the line comes back, then FIN ends `cat`.
    let url = exec_url(&berthd, &id, &["cat"], ALL_STREAMS)
        .await
        .expect("Exec");
    eof_session(&url, EofSession::exec_cat()).await;

    // FIN right behind 1 MiB of input: all of it arrives first; the exit status comes through.
    let url = exec_url(
        &berthd,
        &id,
        &["sh", "-c", "cat; echo done >&2; exit 3"],
        ALL_STREAMS,
    )
    .await
    .expect("Exec");
    let out = go_session(
        &url,
        &GoSpdyOptions {
            input: "0123456789abcdef".into(),
            repeat: 64 * 1024,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(
        out.stdout.len(),
        1 << 20,
        "stdout: {} bytes",
        out.stdout.len()
    );
    assert!(out.stdout.starts_with("0123456789abcdef0123"));
    assert_eq!(out.stderr, "done\n", "{:?}", out.status);
    assert_eq!(out.command_exit_code(), Some(3), "{:?}", out.raw_status);

    // WebSocket v5: CLOSE of channel 0 (the one-shot client closes stdin after the input).
    let options = ExecOptions {
        stdin: Some(b"ws-line\n".to_vec()),
        timeout: LONG,
        ..Default::default()
    };
    let url = exec_url(&berthd, &id, &["cat"], options.streams())
        .await
        .expect("Exec");
    let out = exec(&url, WS, options).await.expect("exec over WebSocket");
    assert_eq!(out.stdout_str(), "ws-line\n", "{}", out.summary());
    assert_eq!(out.status, ExecStatus::Exited(0), "{}", out.summary());

    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_stdin_eof_without_stdin_once_leaves_the_containers_stdin_open() {
    let berthd = Berthd::start("steofkeep").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "eofkeep").await;
    let config = stdin_container(
        "reader",
        &[
            "sh",
            "-c",
            "while read l; do echo \"got $l\"; done; echo stdin-closed",
        ],
        false,
    );
    let log = pod.log_file(&config);
    let id = run(&berthd, &pod, config).await;

    // The attachment ends at its stdin's EOF (as with containerd); the container goes on.
    let url = attach_url(&berthd, &id, ALL_STREAMS).await.expect("Attach");
    eof_session(&url, EofSession::attach_line_reader()).await;

    let url = attach_url(&berthd, &id, ALL_STREAMS).await.expect("Attach");
    let mut session = ExecSession::open(&url, WS, ALL_STREAMS)
        .await
        .expect("attach over WebSocket");
    session.send_stdin(b"two\n").await.expect("stdin");
    session
        .read_stdout_until("got two\n", LONG)
        .await
        .expect("the container's stdin is still open");
    session.close_stdin().await.expect("closing stdin");
    let out = session.wait(PROMPT).await.expect("the attachment ends");
    assert_eq!(out.status, ExecStatus::Exited(0), "{}", out.summary());

    // Still open for the next one.
    let url = attach_url(&berthd, &id, ALL_STREAMS).await.expect("Attach");
    let mut session = ExecSession::open(&url, SPDY, ALL_STREAMS)
        .await
        .expect("attach over SPDY");
    session.send_stdin(b"three\n").await.expect("stdin");
    session
        .read_stdout_until("got three\n", LONG)
        .await
        .expect("the container's stdin is still open");
    session.disconnect();
    assert_eq!(state(&berthd, &id).await, RUNNING);
    let lines = read_log(&log).expect("log");
    assert_eq!(
        stream_lines(&lines, "stdout"),
        ["got one", "got two", "got three"],
        "{lines:?}"
    );
    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}
