//! `berth logs` against a real berthd: every flag (--since/--until as times and durations, --tail,
//! -t, --stream, --limit-bytes, -p), partial lines put back together, and -f that keeps
//! following while the log is rotated the way kubelet rotates it (rename, then CRI
//! ReopenContainerLog) and truncated in place.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::{self, Pod, busybox, pull, read_log, shell};

/// kubelet's log layout: `<pod log dir>/<container name>/<attempt>.log`.
fn attempt_config(name: &str, attempt: u32, script: &str) -> cri::ContainerConfig {
    let mut config = shell(name, script);
    config.metadata = Some(cri::ContainerMetadata {
        name: name.to_string(),
        attempt,
    });
    config.log_path = format!("{name}/{attempt}.log");
    config
}

#[tokio::test]
async fn cli_logs_selects_by_time_stream_tail_and_bytes() {
    let berthd = Berthd::start("clilogs").await.unwrap();
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "logs").await;
    let cli = |args: &[&str]| berthd.cli(args).unwrap();

    // Two bursts a second apart, a line longer than the runtime's 16 KiB pieces (a `P` line,
    // then its `F`), and output on both streams.
    let config = attempt_config(
        "app",
        0,
        "echo one; echo two >&2; sleep 1.5; echo three; \
         yes x | head -n 20000 | tr -d '\\n'; echo END; echo four >&2",
    );
    let long = format!("{}END", "x".repeat(20000));
    let stdout_all = format!("one\nthree\n{long}\n");
    let (id, status, lines) = containers::run_to_exit(&berthd, &pod, config).await;
    assert_eq!(status.exit_code, 0);
    assert!(
        lines.iter().any(|l| l.tag == "P"),
        "the runtime wrote no partial line: {lines:?}"
    );

    let (ok, out, err) = cli(&["logs", &id]);
    assert!(ok, "{err}");
    assert_eq!(out, stdout_all);
    assert_eq!(err, "two\nfour\n");

    // --stream: one stream only.
    let (ok, out, err) = cli(&["logs", "--stream", "stderr", &id]);
    assert!(ok && out.is_empty(), "{out} {err}");
    assert_eq!(err, "two\nfour\n");
    let (_, out, err) = cli(&["logs", "--stream", "stdout", &id]);
    assert_eq!((out.as_str(), err.as_str()), (stdout_all.as_str(), ""));
    let (ok, _, err) = cli(&["logs", "--stream", "stdin", &id]);
    assert!(!ok && err.contains("stdin"), "{err}");

    // --since/--until at the times the runtime logged: RFC 3339 as in the file.
    let time_of = |content: &str| {
        lines
            .iter()
            .find(|l| l.content == content)
            .map(|l| l.time.clone())
            .unwrap_or_else(|| panic!("no {content:?} in {lines:?}"))
    };
    let three = time_of("three");
    let (ok, out, err) = cli(&["logs", "--since", &three, &id]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("three\n{long}\n"));
    assert_eq!(err, "four\n");
    let (_, out, err) = cli(&["logs", "--until", &time_of("two"), &id]);
    assert_eq!((out.as_str(), err.as_str()), ("one\n", "two\n"));
    let (_, out, err) = cli(&["logs", "--since", &three, "--until", &three, &id]);
    assert_eq!((out.as_str(), err.as_str()), ("three\n", ""));
    // Durations before now: everything is younger than an hour, nothing younger than 1ms.
    let (_, out, _) = cli(&["logs", "--since", "1h", &id]);
    assert_eq!(out, stdout_all);
    let (_, out, err) = cli(&["logs", "--since", "1ms", &id]);
    assert_eq!((out.as_str(), err.as_str()), ("", ""));
    let (_, out, _) = cli(&["logs", "--until", "1h30m", &id]);
    assert_eq!(out, "");
    let (ok, _, err) = cli(&["logs", "--since", "yesterday", &id]);
    assert!(!ok && err.contains("RFC 3339"), "{err}");

    // --tail counts the lines selected.
    let (_, out, err) = cli(&["logs", "--tail", "2", &id]);
    assert_eq!(out, format!("{long}\n"));
    assert_eq!(err, "four\n");
    let (_, out, _) = cli(&["logs", "--tail", "1", "--stream", "stdout", &id]);
    assert_eq!(out, format!("{long}\n"));

    // -t: the time the runtime logged each line, in front of it.
    let (_, out, _) = cli(&["logs", "-t", "--stream", "stdout", &id]);
    let stamped: Vec<(&str, &str)> = out
        .lines()
        .map(|l| l.split_once(' ').expect("a timestamp"))
        .collect();
    // A line put together from pieces carries the time of its first piece.
    let first_piece = lines.iter().find(|l| l.tag == "P").unwrap().time.clone();
    assert_eq!(
        stamped,
        [
            (time_of("one").as_str(), "one"),
            (three.as_str(), "three"),
            (first_piece.as_str(), long.as_str()),
        ]
    );

    // --limit-bytes stops mid-line; timestamps count.
    let (ok, out, _) = cli(&["logs", "--stream", "stdout", "--limit-bytes", "6", &id]);
    assert!(ok);
    assert_eq!(out, "one\nth");
    let (_, out, _) = cli(&[
        "logs",
        "-t",
        "--stream",
        "stdout",
        "--limit-bytes",
        "4",
        &id,
    ]);
    assert_eq!(out, time_of("one")[..4]);

    containers::remove(&berthd, &id).await.unwrap();
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn cli_logs_previous_reads_the_attempt_before() {
    let berthd = Berthd::start("clilogsprev").await.unwrap();
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "prev").await;
    let cli = |args: &[&str]| berthd.cli(args).unwrap();

    // kubelet restarts a failed container as a new one with the next attempt number.
    let (first, status, _) = containers::run_to_exit(
        &berthd,
        &pod,
        attempt_config("app", 0, "echo first; exit 1"),
    )
    .await;
    assert_eq!(status.exit_code, 1);
    let (second, _, _) =
        containers::run_to_exit(&berthd, &pod, attempt_config("app", 1, "echo second")).await;
    // Another container of the pod with a lower attempt is not "the previous one".
    let (other, _, _) =
        containers::run_to_exit(&berthd, &pod, attempt_config("other", 0, "echo other")).await;

    let (ok, out, err) = cli(&["logs", &second]);
    assert!(ok && out == "second\n", "{out} {err}");
    let (ok, out, err) = cli(&["logs", "-p", &second]);
    assert!(ok, "{err}");
    assert_eq!(out, "first\n");
    let (ok, out, err) = cli(&["logs", "--previous", "-t", &second[..12]]);
    assert!(ok && out.ends_with(" first\n"), "{out} {err}");
    // Attempt 0 has no previous attempt: berth's error, docker's 125.
    let out = Command::new(berth_e2e::berth_binary().unwrap())
        .args(["-H", &format!("unix://{}", berthd.socket.display())])
        .args(["logs", "-p", &first])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("previous terminated container"), "{err}");
    let (ok, _, err) = cli(&["logs", "-p", &other]);
    assert!(!ok && err.contains("not found"), "{err}");

    // Once the runtime no longer has the previous container, its log file is found by kubelet's
    // naming, as crictl finds it (kubelet keeps the file until the pod goes).
    containers::remove(&berthd, &first).await.unwrap();
    let (ok, out, err) = cli(&["logs", "-p", &second]);
    assert!(ok && out == "first\n", "{out} {err}");

    for id in [&second, &other] {
        containers::remove(&berthd, id).await.unwrap();
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

/// Lines a child prints, as they come, on a channel.
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits for lines until one equals `wanted`; returns all seen.
fn until_line(rx: &mpsc::Receiver<String>, seen: &mut Vec<String>, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen.iter().any(|l| l == wanted) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(e) => panic!("no {wanted:?} ({e}); got {seen:?}"),
        }
    }
}

#[tokio::test]
async fn cli_logs_follow_survives_rotation_and_truncation() {
    let berthd = Berthd::start("clilogsf").await.unwrap();
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "follow").await;

    // Numbered lines, slowly, until /tmp/stop appears (the test says when it has seen enough).
    let config = attempt_config(
        "ticker",
        0,
        "i=0; while [ ! -e /tmp/stop ]; do echo line$i; i=$((i+1)); sleep 0.05; done; echo done",
    );
    let log = pod.log_file(&config);
    let id = containers::run(&berthd, &pod, config).await;

    let mut child = Command::new(berth_e2e::berth_binary().unwrap())
        .args(["-H", &format!("unix://{}", berthd.socket.display())])
        .args(["logs", "-f", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    until_line(&rx, &mut seen, "line10");

    // kubelet's rotation: rename the file, then ReopenContainerLog makes the runtime open a new
    // one at the same path. Lines written to the old file meanwhile must not be lost.
    let rotated = log.with_extension("log.20240501-100000");
    std::fs::rename(&log, &rotated).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    containers::reopen_log(&berthd, &id).await.unwrap();
    let n = read_log(&rotated).unwrap().len();
    until_line(&rx, &mut seen, &format!("line{}", n + 20));
    assert!(
        read_log(&log).unwrap().len() >= 20,
        "the new file got no lines"
    );

    // Rotated twice: the follower moves on again.
    std::fs::rename(&log, log.with_extension("log.20240501-100001")).unwrap();
    containers::reopen_log(&berthd, &id).await.unwrap();
    let next = seen.len() + 20;
    until_line(&rx, &mut seen, &format!("line{next}"));

    // copytruncate: emptied in place (the runtime appends, so it writes at the new end). Lines
    // written after berth's last look and before the cut are gone with it, as with any reader.
    let cut = seen.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let next = seen.len() + 20;
    until_line(&rx, &mut seen, &format!("line{next}"));

    // -f stops by itself once --limit-bytes is used up, or once --until has passed.
    let (ok, out, err) = berthd
        .cli(&["logs", "-f", "--limit-bytes", "12", &id])
        .unwrap();
    assert!(ok && out.len() == 12, "{out:?} {err}");
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        + 1.0;
    let started = Instant::now();
    let (ok, out, err) = berthd
        .cli(&["logs", "-f", "--until", &format!("{soon:.3}"), &id])
        .unwrap();
    assert!(ok, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(out.lines().all(|l| l.starts_with("line")), "{out}");
    assert_eq!(containers::state(&berthd, &id).await, containers::RUNNING);

    let (ok, _, err) = berthd.cli(&["exec", &id, "touch", "/tmp/stop"]).unwrap();
    assert!(ok, "{err}");
    until_line(&rx, &mut seen, "done");
    let status = berth_e2e::wait_timeout(&mut child, Duration::from_secs(20)).unwrap();
    assert!(status.success(), "berth logs -f: {status}");

    // Every line once, in order, across both rotations; after the truncation, on from where
    // the file was cut.
    let last = seen.len() - 1;
    assert_eq!(seen[last], "done");
    let numbers: Vec<usize> = seen[..last]
        .iter()
        .map(|l| l.strip_prefix("line").and_then(|n| n.parse().ok()))
        .collect::<Option<_>>()
        .unwrap_or_else(|| panic!("not a numbered line in {seen:?}"));
    assert_eq!(numbers[..cut], (0..cut).collect::<Vec<_>>()[..], "{seen:?}");
    let after = numbers[cut];
    assert!(after >= cut, "{seen:?}");
    assert_eq!(
        numbers[cut..],
        (after..after + last - cut).collect::<Vec<_>>()[..]
    );

    containers::remove(&berthd, &id).await.unwrap();
    pod.remove(&berthd).await;
    berthd.finish();
}

/// The same flags on logs containerd 1.6 wrote (its own CRI log writer and kubelet's layout),
/// through berth pointed at containerd's socket: the previous attempt found by listing
/// containerd's containers, the long line containerd split into `P` pieces put back together,
/// and -f across a rotation containerd's ReopenContainerLog does. Needs the private containerd:
/// `hack/bench/containerd.sh start`, then `cargo test -p berth-e2e --test cli_logs -- --ignored`.
#[tokio::test]
#[ignore = "needs containerd 1.6 running (hack/bench/containerd.sh start)"]
async fn cli_logs_reads_what_containerd_wrote() {
    use berth_e2e::containerd::{Checks, ReferencePod};

    let endpoint = format!("unix://{}", berth_e2e::containerd::socket().display());
    let cli = move |args: &[&str]| {
        let out = Command::new(berth_e2e::berth_binary().unwrap())
            .args(["-H", &endpoint])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let ensure = |ok: bool, what: String| {
        if ok {
            Ok(())
        } else {
            Err(anyhow::anyhow!(what))
        }
    };
    let checks = async |r: &mut ReferencePod, c: &mut Checks| {
        let script =
            "echo first; yes x | head -n 20000 | tr -d '\\n'; echo END; echo oops >&2; exit 1";
        let first = r.run_container(attempt_config("app", 0, script)).await;
        exited(r, &first).await;
        let second = r
            .run_container(attempt_config("app", 1, "echo second"))
            .await;
        exited(r, &second).await;
        let long = format!("{}END", "x".repeat(20000));

        let (ok, out, err) = cli(&["logs", &first]);
        c.check(
            "logs joins containerd's P pieces",
            ensure(
                ok && out == format!("first\n{long}\n") && err == "oops\n",
                format!("{ok} {err}"),
            ),
        );
        let (ok, out, err) = cli(&["logs", "-p", &second]);
        c.check(
            "logs -p finds attempt 0 among containerd's containers",
            ensure(
                ok && out == format!("first\n{long}\n"),
                format!("{out:.40} {err}"),
            ),
        );
        let (ok, out, err) = cli(&["logs", "--stream", "stderr", "-t", "--tail", "1", &first]);
        c.check(
            "logs --stream -t --tail",
            ensure(
                ok && out.is_empty() && err.ends_with(" oops\n"),
                format!("{out:.40} {err}"),
            ),
        );
        // containerd writes each stream from its own goroutine, so "oops" may land in the file
        // before the long line's last piece: the limit counts both streams, in file order.
        let (ok, out, err) = cli(&["logs", "--limit-bytes", "8", &first]);
        c.check(
            "logs --limit-bytes",
            ensure(
                ok && out.starts_with("first\n") && out.len() + err.len() == 8,
                format!("{out:?} {err:?}"),
            ),
        );

        let ticker = r
            .run_container(attempt_config(
                "ticker",
                0,
                "i=0; while [ $i -lt 200 ]; do echo line$i; i=$((i+1)); sleep 0.02; done",
            ))
            .await;
        let log = std::path::Path::new(&r.config.log_directory).join("ticker/0.log");
        let mut child = Command::new(berth_e2e::berth_binary().unwrap())
            .args([
                "-H",
                &format!("unix://{}", berth_e2e::containerd::socket().display()),
            ])
            .args(["logs", "-f", &ticker])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let rx = lines_of(child.stdout.take().unwrap());
        let mut seen = Vec::new();
        until_line(&rx, &mut seen, "line20");
        std::fs::rename(&log, log.with_extension("log.1")).unwrap();
        let reopened =
            r.rt.reopen_container_log(berth_cri_api::v1::ReopenContainerLogRequest {
                container_id: ticker.clone(),
            })
            .await;
        c.check(
            "ReopenContainerLog",
            reopened.map(|_| ()).map_err(Into::into),
        );
        until_line(&rx, &mut seen, "line199");
        let status = berth_e2e::wait_timeout(&mut child, Duration::from_secs(20)).unwrap();
        let expected: Vec<String> = (0..200).map(|i| format!("line{i}")).collect();
        c.check(
            "logs -f across containerd's rotation",
            ensure(
                status.success() && seen == expected,
                format!("{status} {seen:?}"),
            ),
        );
    };
    ReferencePod::run("clilogs-ref", &[busybox()])
        .await
        .check_then_remove(Duration::from_secs(120), checks)
        .await;
}

/// Waits (up to 10 s) for a container of the reference pod to exit.
async fn exited(r: &mut berth_e2e::containerd::ReferencePod, id: &str) {
    for _ in 0..500 {
        if r.state(id).await.is_ok_and(|s| s.0 == containers::EXITED) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
