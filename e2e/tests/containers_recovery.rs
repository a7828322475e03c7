//! Containers outlive berthd: after `kill -9` and a restart on the same dirs, running containers
//! are still running, and exits (also those while berthd was down) are reported with their codes.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use berth_e2e::Berthd;
use berth_e2e::containers::*;

const LONG: Duration = Duration::from_secs(20);

#[tokio::test]
async fn containers_survive_a_berthd_crash_and_exits_are_not_lost() {
    let mut berthd = Berthd::start("ctrcrash").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "crash").await;
    let runner_config = shell("runner", "while true; do echo alive; sleep 0.2; done");
    let runner_log = pod.log_file(&runner_config);
    let runner = run(&berthd, &pod, runner_config).await;
    let exited = run(&berthd, &pod, shell("exited", "exit 5")).await;
    let late_config = shell("late", "echo started; sleep 2; exit 7");
    let late_log = pod.log_file(&late_config);
    let late = run(&berthd, &pod, late_config).await;
    let never_started = create(&berthd, &pod, shell("created", "true"))
        .await
        .expect("CreateContainer");
    wait_exited(&berthd, &exited, LONG).await;
    wait_log_line(&late_log, "started", LONG).await;
    wait_log_line(&runner_log, "alive", LONG).await;
    let runner_pid = pid(&berthd, &runner).await;
    let late_pid = pid(&berthd, &late).await;
    let before = status(&berthd, &late).await;
    assert_eq!(before.state, RUNNING, "{before:?}");

    berthd.kill().expect("kill -9 berthd");
    // `late` exits while berthd is down; its monitor records the exit.
    wait_gone(late_pid, LONG).await;
    berthd.launch().await.expect("restarting berthd");

    let s = status(&berthd, &runner).await;
    assert_eq!(s.state, RUNNING, "{s:?}");
    assert_eq!(pid(&berthd, &runner).await, runner_pid, "the same process");
    let s = status(&berthd, &exited).await;
    assert_eq!(
        (s.state, s.exit_code, s.reason.as_str()),
        (EXITED, 5, "Error"),
        "{s:?}"
    );
    let s = wait_exited(&berthd, &late, LONG).await;
    assert_eq!(s.exit_code, 7, "the exit while berthd was down: {s:?}");
    assert_eq!(s.started_at, before.started_at, "{s:?}");
    assert!(s.finished_at > s.started_at, "{s:?}");
    assert_eq!(state(&berthd, &never_started).await, CREATED);
    assert_eq!(list(&berthd, None).await.len(), 4);

    // The runner's output still reaches its log.
    let lines = read_log(&runner_log).expect("runner log").len();
    poll(
        LONG,
        "the runner still logging after the restart",
        async || (read_log(&runner_log).ok()?.len() > lines + 1).then_some(()),
    )
    .await;

    // Everything can be stopped and removed by the new berthd.
    stop(&berthd, &runner, 0).await.expect("StopContainer");
    wait_gone(runner_pid, LONG).await;
    let s = status(&berthd, &runner).await;
    assert_eq!((s.state, s.exit_code), (EXITED, 137), "{s:?}");
    for id in [&runner, &exited, &late, &never_started] {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn a_clean_restart_keeps_containers_running() {
    let mut berthd = Berthd::start("ctrrestart").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "restart").await;
    let id = run(
        &berthd,
        &pod,
        shell("keep", "while true; do sleep 0.1; done"),
    )
    .await;
    let pid = pid(&berthd, &id).await;
    let stopped = berthd.stop().expect("stopping berthd");
    assert!(stopped.success(), "berthd exited with {stopped}");
    assert!(!gone(pid), "the container outlives berthd");
    berthd.launch().await.expect("restarting berthd");
    assert_eq!(state(&berthd, &id).await, RUNNING);
    stop_and_remove(&berthd, &id).await;
    wait_gone(pid, LONG).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
// kill(2) of the pod's monitor by pid.
#[allow(unsafe_code)]
async fn a_container_whose_monitor_dies_is_reported_failed_and_cleaned_up() {
    let berthd = Berthd::start("ctrmondie").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "mondie").await;
    let id = run(
        &berthd,
        &pod,
        shell("orphan", "while true; do sleep 0.1; done"),
    )
    .await;
    let container_pid = pid(&berthd, &id).await;
    let dir = info(&berthd, &id).await["monitorDir"]
        .as_str()
        .expect("monitorDir in the verbose info")
        .to_string();
    let monitor_pid: i32 = std::fs::read_to_string(format!("{dir}/monitor.pid"))
        .expect("monitor.pid")
        .trim()
        .parse()
        .expect("a pid");
    // SAFETY: kill(2) with a pid read from the monitor's own pid file.
    assert_eq!(unsafe { libc::kill(monitor_pid, libc::SIGKILL) }, 0);

    let s = wait_exited(&berthd, &id, LONG).await;
    assert_eq!(s.exit_code, 255, "{s:?}");
    assert!(s.message.contains("monitor died"), "{s:?}");
    // Counted for the node operator's alert (charts/berth: BerthMonitorsLost).
    let metrics = berthd.metrics().expect("scraping /metrics");
    assert_eq!(
        berth_e2e::workload::metric_value(&metrics, "berth_container_monitors_lost_total"),
        Some(1.0),
        "{metrics}"
    );
    wait_gone(container_pid, LONG).await;
    remove(&berthd, &id).await.expect("RemoveContainer");
    pod.remove(&berthd).await;
    berthd.finish();
}
