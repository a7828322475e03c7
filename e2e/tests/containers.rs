//! Containers in pods, as kubelet runs them: CRI logs, exit codes and reasons, OOM kills, graceful
//! and forced stops, ttys, and the image config (entrypoint, cmd, env, user, working dir).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use berth_cri_api::v1 as cri;
use berth_e2e::Berthd;
use berth_e2e::containers::*;
use tonic::Code;

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn output_goes_to_the_cri_log_and_long_lines_are_split() {
    let berthd = Berthd::start("ctrlog").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "log").await;

    let config = shell("echo", "echo out; echo err >&2");
    let log = pod.log_file(&config);
    let (id, status, lines) = run_to_exit(&berthd, &pod, config).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    assert_eq!(
        status.log_path,
        log.to_string_lossy(),
        "log_path is the full path"
    );
    assert_eq!(stream_lines(&lines, "stdout"), ["out"], "{lines:?}");
    assert_eq!(stream_lines(&lines, "stderr"), ["err"], "{lines:?}");
    assert!(lines.iter().all(|l| l.tag == "F"), "{lines:?}");

    // A line over 16 KiB is written as 16 KiB partial chunks and a full last one. The log path
    // `<name>/0.log` is kubelet's layout; kubelet creates the container's directory, crictl users
    // often don't: Berth creates it, as containerd does.
    let mut config = shell(
        "long",
        "head -c 40000 /dev/zero | tr '\\0' a; echo; echo after",
    );
    config.log_path = "long/0.log".into();
    std::fs::remove_dir_all(pod.log_dir()).expect("removing the pod's log directory");
    let (long, status, lines) = run_to_exit(&berthd, &pod, config).await;
    assert_eq!(status.exit_code, 0, "{status:?}");
    let chunks: Vec<_> = lines
        .iter()
        .map(|l| (l.stream.as_str(), l.tag.as_str(), l.content.len()))
        .collect();
    assert_eq!(
        chunks,
        [
            ("stdout", "P", 16384),
            ("stdout", "P", 16384),
            ("stdout", "F", 7232),
            ("stdout", "F", 5)
        ]
    );
    assert_eq!(
        stream_lines(&lines, "stdout"),
        ["a".repeat(40000), "after".to_string()]
    );

    // A log path that cannot be created is the request's mistake: FAILED_PRECONDITION, and the
    // container stays CREATED, startable once the path is fixed.
    std::fs::write(pod.log_dir().join("blocked"), b"a file").expect("blocking file");
    let mut config = shell("blocked", "echo ok");
    config.log_path = "blocked/0.log".into();
    let blocked = create(&berthd, &pod, config)
        .await
        .expect("CreateContainer");
    let err = start(&berthd, &blocked)
        .await
        .expect_err("start under a file");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("log directory"), "{err:?}");
    assert_eq!(
        state(&berthd, &blocked).await,
        cri::ContainerState::ContainerCreated as i32
    );
    std::fs::remove_file(pod.log_dir().join("blocked")).expect("unblocking");
    start(&berthd, &blocked).await.expect("start after the fix");
    let status = wait_exited(&berthd, &blocked, LONG).await;
    assert_eq!(status.exit_code, 0, "{status:?}");

    for id in [&id, &long, &blocked] {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn exit_codes_reasons_and_timestamps_are_reported() {
    let berthd = Berthd::start("ctrexit").await.expect("starting berthd");
    let image_ref = pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "exit").await;
    let ok = run(&berthd, &pod, shell("ok", "exit 0")).await;
    let bad = run(&berthd, &pod, shell("bad", "echo failing >&2; exit 3")).await;
    for (id, code, reason) in [(&ok, 0, "Completed"), (&bad, 3, "Error")] {
        let s = wait_exited(&berthd, id, LONG).await;
        assert_eq!(s.exit_code, code, "{s:?}");
        assert_eq!(s.reason, reason, "{s:?}");
        assert!(s.created_at > 0, "{s:?}");
        assert!(s.started_at > s.created_at, "{s:?}");
        assert!(s.finished_at > s.started_at, "{s:?}");
        assert_eq!(s.id, *id);
        // As containerd: PullImage answers the image ID, ContainerStatus has it as image_id and a
        // repo digest as image_ref.
        assert_eq!(s.image_id, image_ref, "{s:?}");
        assert!(
            s.image_ref == image_ref || s.image_ref.contains("/berth-test/busybox@sha256:"),
            "{s:?}"
        );
        let name = s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        assert_eq!(s.labels["container"], name, "{s:?}");
        assert_eq!(s.annotations["e2e/container"], name, "{s:?}");
    }
    let listed = list(&berthd, None).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|c| c.state == EXITED && c.pod_sandbox_id == pod.id),
        "{listed:?}"
    );
    for id in [&ok, &bad] {
        remove(&berthd, id).await.expect("RemoveContainer");
        assert_eq!(
            status_response(&berthd, id, false)
                .await
                .expect_err("removed")
                .code(),
            Code::NotFound
        );
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn a_container_over_its_memory_limit_is_oom_killed() {
    let berthd = Berthd::start("ctroom").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "oom").await;
    // `tail` keeps everything since the last newline, and /dev/zero has none.
    let mut config = container_config("hog", &busybox(), &["tail", "/dev/zero"]);
    resources(&mut config).memory_limit_in_bytes = 16 << 20;
    let (id, status, _) = run_to_exit(&berthd, &pod, config).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    assert_eq!(status.exit_code, 137, "SIGKILLed: {status:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    berthd.finish();
}

/// Runs `script` (which must print `ready` once its traps are set) and waits for `ready`.
async fn run_ready(berthd: &Berthd, pod: &Pod, config: cri::ContainerConfig) -> String {
    let log = pod.log_file(&config);
    let id = run(berthd, pod, config).await;
    wait_log_line(&log, "ready", LONG).await;
    id
}

/// StopContainer; returns how long it took.
async fn timed_stop(berthd: &Berthd, id: &str, timeout: i64) -> Duration {
    let begin = Instant::now();
    stop(berthd, id, timeout)
        .await
        .unwrap_or_else(|e| panic!("StopContainer {id} (timeout {timeout}): {e:?}"));
    begin.elapsed()
}

#[tokio::test]
async fn stop_signals_then_kills_after_the_timeout() {
    let berthd = Berthd::start("ctrstop").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    pull(&berthd, &config_image()).await;
    let pod = Pod::run(&berthd, "stop").await;
    let loop_ = "echo ready; while true; do sleep 0.1; done";
    let graceful_config = shell(
        "graceful",
        &format!("trap 'echo bye; exit 0' TERM; {loop_}"),
    );
    let graceful_log = pod.log_file(&graceful_config);
    let graceful = run_ready(&berthd, &pod, graceful_config).await;
    let stubborn = run_ready(
        &berthd,
        &pod,
        shell("stubborn", &format!("trap '' TERM; {loop_}")),
    )
    .await;
    let instant = run_ready(
        &berthd,
        &pod,
        shell("instant", &format!("trap '' TERM; {loop_}")),
    )
    .await;
    // config:latest says STOPSIGNAL SIGUSR1. Its entrypoint is `/bin/sh -c`, so args are a script.
    let mut usr1_config = container_config("usr1", &config_image(), &[]);
    usr1_config.args = vec![format!("trap 'echo got-usr1; exit 0' USR1; {loop_}")];
    let usr1_log = pod.log_file(&usr1_config);
    let usr1 = run_ready(&berthd, &pod, usr1_config).await;

    let (graceful_took, stubborn_took, instant_took, usr1_took) = tokio::join!(
        timed_stop(&berthd, &graceful, 10),
        timed_stop(&berthd, &stubborn, 2),
        timed_stop(&berthd, &instant, 0),
        timed_stop(&berthd, &usr1, 5),
    );
    eprintln!(
        "stop took: graceful {graceful_took:?}, stubborn {stubborn_took:?}, \
         instant {instant_took:?}, usr1 {usr1_took:?}"
    );

    let s = status(&berthd, &graceful).await;
    assert_eq!((s.state, s.exit_code), (EXITED, 0), "{s:?}");
    assert!(graceful_took < Duration::from_secs(5), "{graceful_took:?}");
    let lines = read_log(&graceful_log).expect("graceful log");
    assert!(all_lines(&lines).contains(&"bye".to_string()), "{lines:?}");

    let s = status(&berthd, &stubborn).await;
    assert_eq!((s.state, s.exit_code), (EXITED, 137), "SIGKILLed: {s:?}");
    assert!(
        stubborn_took >= Duration::from_secs(2) && stubborn_took < Duration::from_secs(6),
        "killed after the 2 s timeout, took {stubborn_took:?}"
    );

    let s = status(&berthd, &instant).await;
    assert_eq!((s.state, s.exit_code), (EXITED, 137), "SIGKILLed: {s:?}");
    assert!(
        instant_took < Duration::from_millis(1500),
        "timeout 0 kills at once, took {instant_took:?}"
    );

    let s = status(&berthd, &usr1).await;
    assert_eq!(
        (s.state, s.exit_code),
        (EXITED, 0),
        "the image's stop signal SIGUSR1 was sent: {s:?}"
    );
    let lines = read_log(&usr1_log).expect("usr1 log");
    assert!(
        all_lines(&lines).contains(&"got-usr1".to_string()),
        "{lines:?}"
    );

    // Stopping an exited container succeeds and changes nothing.
    let before = status(&berthd, &stubborn).await;
    stop(&berthd, &stubborn, 10)
        .await
        .expect("StopContainer on an exited container");
    let after = status(&berthd, &stubborn).await;
    assert_eq!(
        (after.state, after.exit_code, after.finished_at),
        (before.state, before.exit_code, before.finished_at)
    );

    for id in [&graceful, &stubborn, &instant, &usr1] {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn a_tty_container_gets_a_terminal() {
    let berthd = Berthd::start("ctrtty").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "tty").await;
    let mut config = shell("tty", "tty; echo tty-ok");
    config.tty = true;
    let (id, status, lines) = run_to_exit(&berthd, &pod, config).await;
    assert_eq!(status.exit_code, 0, "{status:?} {lines:?}");
    let out = stream_lines(&lines, "stdout");
    assert_eq!(out, ["/dev/pts/0", "tty-ok"], "{lines:?}");
    remove(&berthd, &id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    berthd.finish();
}

fn has(lines: &[String], line: &str) -> bool {
    lines.iter().any(|l| l == line)
}

#[tokio::test]
async fn the_image_config_applies_and_cri_overrides_it() {
    let berthd = Berthd::start("ctrimgcfg").await.expect("starting berthd");
    let image = config_image();
    pull(&berthd, &image).await;
    let pod = Pod::run(&berthd, "imgcfg").await;
    let plain = || container_config("plain", &image, &[]);

    let mut args = plain();
    args.metadata = Some(cri::ContainerMetadata {
        name: "args".into(),
        attempt: 0,
    });
    args.log_path = "args_0.log".into();
    args.args = vec!["echo args-ok; pwd".into()];
    let mut command = container_config("command", &image, &["/bin/echo", "cmd-ok"]);
    command.args = vec!["more".into()];
    let mut envs = container_config("envs", &image, &[]);
    envs.envs = vec![cri::KeyValue {
        key: "FOO".into(),
        value: "from-cri".into(),
    }];
    let mut workdir = container_config("workdir", &image, &[]);
    workdir.working_dir = "/tmp".into();
    let mut root = container_config("root", &image, &[]);
    security(&mut root).run_as_user = Some(cri::Int64Value { value: 0 });
    let mut nobody = container_config("nobody", &image, &[]);
    security(&mut nobody).run_as_username = "nobody".into();

    let configs = [plain(), args, command, envs, workdir, root, nobody];
    let mut ids = Vec::new();
    for config in configs.clone() {
        ids.push(run(&berthd, &pod, config).await);
    }
    let mut out = Vec::new();
    for (id, config) in ids.iter().zip(&configs) {
        let s = wait_exited(&berthd, id, LONG).await;
        let lines = read_log(&pod.log_file(config)).expect("reading the log");
        assert_eq!(s.exit_code, 0, "{s:?} {lines:?}");
        out.push(stream_lines(&lines, "stdout"));
    }
    let [plain, args, command, envs, workdir, root, nobody] = &out[..] else {
        unreachable!("seven containers");
    };
    assert!(has(plain, "entry-ok"), "{plain:?}");
    assert!(
        has(
            plain,
            "uid=1000(berth) gid=1000(berth) groups=1000(berth),2000(extra)"
        ),
        "image user berth with its groups: {plain:?}"
    );
    assert!(
        has(plain, "/work/dir"),
        "the image's working dir: {plain:?}"
    );
    assert!(has(plain, "FOO=from-image"), "{plain:?}");
    assert!(has(plain, "BAR=bar-image"), "{plain:?}");
    assert!(plain.iter().any(|l| l.starts_with("PATH=")), "{plain:?}");

    assert_eq!(
        args,
        &["args-ok", "/work/dir"],
        "args replace the image's cmd only"
    );
    assert_eq!(
        command,
        &["cmd-ok more"],
        "command replaces entrypoint and cmd"
    );
    assert!(has(envs, "FOO=from-cri"), "{envs:?}");
    assert!(!has(envs, "FOO=from-image"), "{envs:?}");
    assert!(has(envs, "BAR=bar-image"), "{envs:?}");
    assert!(has(workdir, "/tmp"), "{workdir:?}");
    assert!(!has(workdir, "/work/dir"), "{workdir:?}");
    assert!(
        root.iter()
            .any(|l| l.starts_with("uid=0(root) gid=0(root)")),
        "{root:?}"
    );
    assert!(
        nobody.iter().any(|l| l.starts_with("uid=65534(nobody)")),
        "{nobody:?}"
    );

    // A user the image does not know: refused up front, nothing created.
    let mut ghost = container_config("ghost", &image, &[]);
    security(&mut ghost).run_as_username = "ghost".into();
    let err = create(&berthd, &pod, ghost)
        .await
        .expect_err("CreateContainer with an unknown user");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("ghost"), "{err:?}");
    assert_eq!(list(&berthd, None).await.len(), ids.len());

    for id in &ids {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    berthd.finish();
}
