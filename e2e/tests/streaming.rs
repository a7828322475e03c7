//! CRI Exec, Attach and ExecSync against a real berthd, through the independent streaming client
//! (`berth_e2e::streaming`, validated against containerd's server): SPDY/3.1 and WebSocket, with and
//! without a tty, stdin, resizes, exit statuses, timeouts and errors. Port-forward, tokens,
//! disconnects and load are in `streaming_sessions.rs`.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::streaming::berth::{attach_url, exec_sync, exec_url, wait_alone};
use berth_e2e::streaming::{
    ExecOptions, ExecSession, ExecStatus, SpdyVersion, StreamOptions, Transport, WsVersion, exec,
};
use tonic::Code;

const LONG: Duration = Duration::from_secs(20);
const SPDY: Transport = Transport::Spdy(SpdyVersion::V4);
const WS: Transport = Transport::Ws(WsVersion::V5);

/// A pod with a busybox container that sleeps; returns the pod, the container and its pid.
async fn sleeper(berthd: &Berthd, name: &str) -> (Pod, String, i32) {
    pull(berthd, &busybox()).await;
    let pod = Pod::run(berthd, name).await;
    let id = run(
        berthd,
        &pod,
        container_config("sleeper", &busybox(), &["sleep", "3600"]),
    )
    .await;
    let pid = pid(berthd, &id).await;
    (pod, id, pid)
}

/// Runs `cmd` in the container over `transport`; panics with the transport in the message.
async fn run_exec(
    berthd: &Berthd,
    id: &str,
    cmd: &[&str],
    transport: Transport,
    options: ExecOptions,
) -> berth_e2e::streaming::ExecOutput {
    let url = exec_url(berthd, id, cmd, options.streams())
        .await
        .unwrap_or_else(|e| panic!("Exec {cmd:?}: {e:?}"));
    exec(&url, transport, options)
        .await
        .unwrap_or_else(|e| panic!("exec {cmd:?} over {transport:?}: {e:#}"))
}

async fn cleanup(berthd: &Berthd, pod: &Pod, ids: &[&str]) {
    for id in ids {
        stop_and_remove(berthd, id).await;
    }
    pod.remove(berthd).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_reports_output_and_exit_statuses_over_every_protocol() {
    let berthd = Berthd::start("stexec").await.expect("starting berthd");
    let (pod, id, _) = sleeper(&berthd, "exec").await;
    let transports = [
        SPDY,
        WS,
        Transport::Ws(WsVersion::V4Base64),
        Transport::Spdy(SpdyVersion::V2),
        Transport::Ws(WsVersion::V1),
    ];
    for transport in transports {
        let json = !matches!(
            transport,
            Transport::Spdy(SpdyVersion::V2) | Transport::Ws(WsVersion::V1)
        );
        let out = run_exec(
            &berthd,
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            transport,
            ExecOptions::default(),
        )
        .await;
        assert_eq!(out.protocol, transport.protocol(), "{}", out.summary());
        assert_eq!(
            out.stdout_str(),
            "out\n",
            "{transport:?}: {}",
            out.summary()
        );
        assert_eq!(
            out.stderr_str(),
            "err\n",
            "{transport:?}: {}",
            out.summary()
        );
        if json {
            assert_eq!(
                out.status,
                ExecStatus::Exited(3),
                "{transport:?}: {}",
                out.summary()
            );
            let status: serde_json::Value =
                serde_json::from_slice(&out.raw_status).unwrap_or_else(|e| {
                    panic!("{transport:?}: Status is not JSON ({e}): {}", out.summary())
                });
            assert_eq!(status["status"], "Failure", "{status}");
            assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
        } else {
            // v1-v3 error streams carry text; a non-zero exit is an error message.
            assert!(
                matches!(&out.status, ExecStatus::Error(text) if text.contains('3')),
                "{transport:?}: {}",
                out.summary()
            );
        }

        let out = run_exec(
            &berthd,
            &id,
            &["echo", "fine"],
            transport,
            ExecOptions::default(),
        )
        .await;
        assert_eq!(
            out.status,
            ExecStatus::Exited(0),
            "{transport:?}: {}",
            out.summary()
        );
        assert_eq!(
            out.stdout_str(),
            "fine\n",
            "{transport:?}: {}",
            out.summary()
        );
        if json {
            let status: serde_json::Value =
                serde_json::from_slice(&out.raw_status).unwrap_or_else(|e| {
                    panic!("{transport:?}: no Success Status ({e}): {}", out.summary())
                });
            assert_eq!(status["status"], "Success", "{status}");
        }
    }
    // The command runs in the container: its root, hostname and environment.
    let out = run_exec(
        &berthd,
        &id,
        &["sh", "-c", "hostname; echo $PATH; ls /bin/busybox"],
        SPDY,
        ExecOptions::default(),
    )
    .await;
    let lines: Vec<_> = out.stdout_str().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{}", out.summary());
    assert_eq!(lines[0], "exec", "hostname is the pod's: {}", out.summary());
    assert!(lines[1].contains("/bin"), "image PATH: {}", out.summary());
    // A command that does not exist: an error status, not a hang.
    let url = exec_url(
        &berthd,
        &id,
        &["/no/such/command"],
        StreamOptions::default(),
    )
    .await
    .expect("Exec");
    let out = exec(&url, SPDY, ExecOptions::default())
        .await
        .expect("exec of a missing command");
    assert_ne!(out.status, ExecStatus::Exited(0), "{}", out.summary());
    cleanup(&berthd, &pod, &[&id]).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_tty_has_one_output_and_follows_resizes() {
    let berthd = Berthd::start("sttty").await.expect("starting berthd");
    let (pod, id, _) = sleeper(&berthd, "tty").await;
    for transport in [SPDY, WS] {
        let options = ExecOptions {
            tty: true,
            ..Default::default()
        };
        let out = run_exec(
            &berthd,
            &id,
            &["sh", "-c", "tty; echo to-stderr >&2; exit 4"],
            transport,
            options,
        )
        .await;
        let text = out.stdout_str();
        assert!(
            text.contains("/dev/pts/"),
            "{transport:?}: {}",
            out.summary()
        );
        assert!(
            text.contains("to-stderr\r\n"),
            "stderr goes to the terminal: {}",
            out.summary()
        );
        assert!(out.stderr.is_empty(), "{}", out.summary());
        assert_eq!(
            out.status,
            ExecStatus::Exited(4),
            "{transport:?}: {}",
            out.summary()
        );

        // A size sent before the command looks, then another one.
        let streams = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        let url = exec_url(
            &berthd,
            &id,
            &["sh", "-c", "read a; stty size; read b; stty size"],
            streams,
        )
        .await
        .expect("Exec");
        let mut session = ExecSession::open(&url, transport, streams)
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: {e:#}"));
        session.resize(100, 30).await.expect("resize");
        tokio::time::sleep(Duration::from_millis(200)).await;
        session.send_stdin(b"a\n").await.expect("stdin");
        session
            .read_until("30 100", LONG)
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: first size: {e:#}"));
        session.resize(132, 43).await.expect("resize");
        tokio::time::sleep(Duration::from_millis(200)).await;
        session.send_stdin(b"b\n").await.expect("stdin");
        session
            .read_until("43 132", LONG)
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: second size: {e:#}"));
        let out = session.wait(LONG).await.expect("end of the session");
        assert_eq!(out.status, ExecStatus::Exited(0), "{}", out.summary());
    }
    cleanup(&berthd, &pod, &[&id]).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_is_piped_in_and_large_transfers_flow_both_ways() {
    let berthd = Berthd::start("ststdin").await.expect("starting berthd");
    let (pod, id, _) = sleeper(&berthd, "stdin").await;
    // Well past SPDY's 64 KiB windows: both sides must send WINDOW_UPDATEs.
    let data: Vec<u8> = (0..3 << 20).map(|i| (i * 7 % 251) as u8).collect();
    for transport in [SPDY, WS] {
        let options = ExecOptions {
            stdin: Some(data.clone()),
            ..Default::default()
        };
        let begin = Instant::now();
        let out = run_exec(&berthd, &id, &["cat"], transport, options).await;
        assert_eq!(
            out.status,
            ExecStatus::Exited(0),
            "{transport:?}: {}",
            out.summary()
        );
        assert!(
            out.stdout == data,
            "{transport:?}: 3 MiB through cat came back as {} bytes",
            out.stdout.len()
        );
        println!("{transport:?}: 3 MiB through cat in {:?}", begin.elapsed());

        let options = ExecOptions {
            stdin: Some(b"hello stdin\n".to_vec()),
            ..Default::default()
        };
        let out = run_exec(
            &berthd,
            &id,
            &["sh", "-c", "read l; echo \"got $l\"; wc -c"],
            transport,
            options,
        )
        .await;
        assert_eq!(
            out.stdout_str(),
            "got hello stdin\n0\n",
            "{transport:?}: {}",
            out.summary()
        );

        let out = run_exec(
            &berthd,
            &id,
            &["head", "-c", "8000000", "/dev/zero"],
            transport,
            ExecOptions::default(),
        )
        .await;
        assert_eq!(
            out.stdout.len(),
            8_000_000,
            "{transport:?}: {}",
            out.summary()
        );
        assert_eq!(out.status, ExecStatus::Exited(0), "{}", out.summary());
    }
    // Interactive: each line answered before the next is sent; stdin closed ends the command.
    let streams = StreamOptions {
        stdin: true,
        ..Default::default()
    };
    for transport in [SPDY, WS, Transport::Ws(WsVersion::V4Base64)] {
        let url = exec_url(
            &berthd,
            &id,
            &[
                "sh",
                "-c",
                "while read l; do echo \"echo $l\"; done; echo closed",
            ],
            streams,
        )
        .await
        .expect("Exec");
        let mut session = ExecSession::open(&url, transport, streams)
            .await
            .expect("exec session");
        for word in ["one", "two", "three"] {
            session
                .send_stdin(format!("{word}\n").as_bytes())
                .await
                .expect("stdin");
            session
                .read_until(&format!("echo {word}\n"), LONG)
                .await
                .unwrap_or_else(|e| panic!("{transport:?}: {e:#}"));
        }
        if transport.can_close_stdin() {
            session.close_stdin().await.expect("closing stdin");
            session
                .read_until("closed\n", LONG)
                .await
                .expect("the loop ends on EOF");
            let out = session.wait(LONG).await.expect("end");
            assert_eq!(out.status, ExecStatus::Exited(0), "{}", out.summary());
        } else {
            session.disconnect();
        }
    }
    cleanup(&berthd, &pod, &[&id]).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_reads_a_running_containers_output_and_writes_its_stdin() {
    let berthd = Berthd::start("stattach").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "attach").await;
    let mut config = shell(
        "reader",
        "echo started; while read l && [ \"$l\" != quit ]; do echo \"got $l\"; echo \"err $l\" >&2; done",
    );
    config.stdin = true;
    let log = pod.log_file(&config);
    let id = run(&berthd, &pod, config).await;
    wait_log_line(&log, "started", LONG).await;
    for (transport, word) in [
        (SPDY, "one"),
        (WS, "two"),
        (Transport::Ws(WsVersion::V4), "three"),
    ] {
        let streams = StreamOptions {
            stdin: true,
            ..Default::default()
        };
        let url = attach_url(&berthd, &id, streams).await.expect("Attach");
        let mut session = ExecSession::open(&url, transport, streams)
            .await
            .unwrap_or_else(|e| panic!("attach over {transport:?}: {e:#}"));
        session
            .send_stdin(format!("{word}\n").as_bytes())
            .await
            .expect("stdin");
        session
            .read_stdout_until(&format!("got {word}\n"), LONG)
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: {e:#}"));
        session
            .read_stderr_until(&format!("err {word}\n"), LONG)
            .await
            .unwrap_or_else(|e| panic!("{transport:?}: stderr: {e:#}"));
        session.disconnect();
        // The log still gets everything, attached or not.
        wait_log_line(&log, &format!("got {word}"), LONG).await;
    }
    // Two attachments at once both see the output; only one writes.
    let watcher_url = attach_url(&berthd, &id, StreamOptions::default())
        .await
        .expect("Attach");
    let mut watcher = ExecSession::open(&watcher_url, SPDY, StreamOptions::default())
        .await
        .expect("watcher");
    let streams = StreamOptions {
        stdin: true,
        ..Default::default()
    };
    let writer_url = attach_url(&berthd, &id, streams).await.expect("Attach");
    let mut writer = ExecSession::open(&writer_url, WS, streams)
        .await
        .expect("writer");
    writer.send_stdin(b"both\n").await.expect("stdin");
    writer
        .read_until("got both\n", LONG)
        .await
        .expect("the writer sees its answer");
    watcher
        .read_until("got both\n", LONG)
        .await
        .expect("the watcher sees it too");
    // Without stdin_once, an attachment closing its stdin leaves the container's open (others may
    // write); the container ends on `quit`, and attachments end with it.
    writer
        .close_stdin()
        .await
        .expect("closing the attachment's stdin (v5)");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        state(&berthd, &id).await,
        RUNNING,
        "stdin closed by one attachment"
    );
    let streams = StreamOptions {
        stdin: true,
        ..Default::default()
    };
    let url = attach_url(&berthd, &id, streams).await.expect("Attach");
    let mut quitter = ExecSession::open(&url, SPDY, streams)
        .await
        .expect("attach");
    quitter.send_stdin(b"quit\n").await.expect("stdin");
    let out = watcher
        .wait(LONG)
        .await
        .expect("the attachment ends when the container exits");
    assert!(
        matches!(out.status, ExecStatus::Exited(_)),
        "{}",
        out.summary()
    );
    let status = wait_exited(&berthd, &id, LONG).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");

    // A tty container: the terminal echoes input and runs the shell's commands.
    let mut config = container_config("term", &busybox(), &["sh"]);
    config.stdin = true;
    config.tty = true;
    let term = run(&berthd, &pod, config).await;
    let streams = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let url = attach_url(&berthd, &term, streams).await.expect("Attach");
    let mut session = ExecSession::open(&url, SPDY, streams)
        .await
        .expect("tty attach");
    session.resize(90, 25).await.expect("resize");
    session
        .send_stdin(b"echo sum-$((40+2)); stty size\n")
        .await
        .expect("stdin");
    session
        .read_until("sum-42", LONG)
        .await
        .expect("the shell answers");
    session
        .read_until("25 90", LONG)
        .await
        .expect("the size was applied");
    session.disconnect();
    cleanup(&berthd, &pod, &[&term]).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_once_closes_the_containers_stdin_when_the_first_attach_ends() {
    let berthd = Berthd::start("stonce").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "once").await;
    let mut config = shell(
        "once",
        "while read l; do echo \"got $l\"; done; echo stdin-closed",
    );
    config.stdin = true;
    config.stdin_once = true;
    let log = pod.log_file(&config);
    let id = run(&berthd, &pod, config).await;
    let streams = StreamOptions {
        stdin: true,
        ..Default::default()
    };
    let url = attach_url(&berthd, &id, streams).await.expect("Attach");
    let mut session = ExecSession::open(&url, SPDY, streams)
        .await
        .expect("attach");
    session.send_stdin(b"only\n").await.expect("stdin");
    session
        .read_until("got only\n", LONG)
        .await
        .expect("answer");
    // Still open while attached.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        state(&berthd, &id).await,
        RUNNING,
        "stdin closed while still attached"
    );
    session.disconnect();
    let status = wait_exited(&berthd, &id, LONG).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    let lines = read_log(&log).expect("log");
    assert_eq!(
        stream_lines(&lines, "stdout"),
        ["got only", "stdin-closed"],
        "{lines:?}"
    );
    remove(&berthd, &id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_returns_output_and_exit_codes_and_needs_a_running_container() {
    let berthd = Berthd::start("stsync").await.expect("starting berthd");
    let (pod, id, _) = sleeper(&berthd, "sync").await;
    let out = exec_sync(
        &berthd,
        &id,
        &["sh", "-c", "echo out; echo err >&2; exit 7"],
        10,
    )
    .await
    .expect("ExecSync");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n", "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n", "{out:?}");
    assert_eq!(out.exit_code, 7, "{out:?}");
    let out = exec_sync(&berthd, &id, &["echo", "fine"], 0)
        .await
        .expect("ExecSync without timeout");
    assert_eq!(
        (out.exit_code, out.stdout.as_slice()),
        (0, &b"fine\n"[..]),
        "{out:?}"
    );
    let out = exec_sync(&berthd, &id, &["head", "-c", "2000000", "/dev/zero"], 10)
        .await
        .expect("ExecSync");
    assert_eq!(out.stdout.len(), 2_000_000, "2 MB of stdout");

    // Stopped: a precondition failure for every way in.
    stop(&berthd, &id, 0).await.expect("StopContainer");
    let err = exec_sync(&berthd, &id, &["true"], 5)
        .await
        .expect_err("ExecSync into a stopped container");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = exec_url(&berthd, &id, &["true"], StreamOptions::default())
        .await
        .expect_err("Exec into a stopped container");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = attach_url(&berthd, &id, StreamOptions::default())
        .await
        .expect_err("Attach to a stopped container");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let err = exec_sync(&berthd, "no-such-container", &["true"], 5)
        .await
        .expect_err("unknown container");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let err = exec_url(&berthd, &id, &[], StreamOptions::default())
        .await
        .expect_err("no command");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_times_out_and_leaves_no_process() {
    let berthd = Berthd::start("sttimeout").await.expect("starting berthd");
    let (pod, id, main_pid) = sleeper(&berthd, "timeout").await;
    // A background child keeps the pipes open after the shell is killed: the timeout must still
    // answer within seconds, and no process may stay behind.
    let begin = Instant::now();
    let err = exec_sync(&berthd, &id, &["sh", "-c", "sleep 100 & sleep 100"], 1)
        .await
        .expect_err("ExecSync past its timeout");
    let took = begin.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(err.message().contains("timed out"), "{err:?}");
    assert!(
        took < Duration::from_secs(5),
        "the timeout of 1 s answered after {took:?}"
    );
    wait_alone(main_pid, Duration::from_secs(10)).await;

    // The container itself is untouched.
    let out = exec_sync(&berthd, &id, &["echo", "after"], 10)
        .await
        .expect("ExecSync after a timeout");
    assert_eq!(out.stdout, b"after\n");
    cleanup(&berthd, &pod, &[&id]).await;
    berthd.finish();
}
