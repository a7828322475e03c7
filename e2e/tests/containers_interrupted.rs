//! Removal always converges: a berthd killed while a container's runtime was still starting it
//! finds the start in flight after the restart, waits for it, and the container and its pod can
//! then be removed without leaving the pod's monitor (or its cgroup) behind; a pod monitor that
//! does not exit is killed by RemovePodSandbox; and logs in Berth's own log directories go with
//! their container and pod, while kubelet's are left to kubelet.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::containers::*;
use berth_e2e::pods::{pod_config, remove_pod, stop_pod};
use berth_e2e::{Berthd, Options};

const LONG: Duration = Duration::from_secs(30);
const REAL_RUNC: &str = "/usr/sbin/runc";

/// A runc that holds `run` (and `create`) back for 3 s after touching `<dir>/started`, so that
/// berthd can be killed while its pod monitor is still starting the container.
fn slow_runc(dir: &Path) -> String {
    let wrapper = dir.join("runc");
    let marker = dir.join("started");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do\n  case \"$a\" in\n    run|create) touch {marker}; sleep 3; break ;;\n  esac\ndone\nexec {REAL_RUNC} \"$@\"\n",
            marker = marker.display()
        ),
    )
    .expect("writing the runc wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
        .expect("chmod the runc wrapper");
    format!(
        "[runtime.handlers.runc]\npath = \"{}\"\n",
        wrapper.display()
    )
}

/// The pod's monitor processes: their `--dir` names the first 32 characters of the pod id.
fn pod_monitors(pod: &Pod) -> Vec<(i32, String)> {
    monitor_processes(&pod.id[..pod.id.len().min(32)])
}

async fn wait_no_monitor(pod: &Pod) {
    poll(LONG, "the pod's monitor gone", async || {
        pod_monitors(pod).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_start_interrupted_by_a_crash_is_finished_and_the_pod_removed() {
    let wrapper_dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        dropin: slow_runc(wrapper_dir.path()),
        ..Options::default()
    };
    let mut berthd = Berthd::start_with("startcrash", options)
        .await
        .expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "startcrash").await;
    let config = shell("slow", "echo up; sleep 1000");
    let log = pod.log_file(&config);
    let id = create(&berthd, &pod, config)
        .await
        .expect("CreateContainer");

    let mut rt = berthd.runtime().await.expect("runtime client");
    let request = cri::StartContainerRequest {
        container_id: id.clone(),
    };
    let starting = tokio::spawn(async move { rt.start_container(request).await });
    let marker = wrapper_dir.path().join("started");
    poll(LONG, "the monitor running the runtime", async || {
        marker.exists().then_some(())
    })
    .await;
    // The monitor is inside `runc run` now (its wrapper sleeps): berthd dies in the middle.
    berthd.kill().expect("kill -9 berthd");
    assert!(starting.await.expect("start task").is_err());
    berthd.launch().await.expect("restarting berthd");

    // Recovery waited for the start in flight instead of deleting it under the runtime.
    poll(LONG, "the interrupted start to finish", async || {
        (state(&berthd, &id).await == RUNNING).then_some(())
    })
    .await;
    wait_log_line(&log, "up", LONG).await;
    assert_eq!(pod_monitors(&pod).len(), 1, "{:?}", pod_monitors(&pod));

    stop(&berthd, &id, 0).await.expect("StopContainer");
    remove(&berthd, &id).await.expect("RemoveContainer");
    // The monitor forgot its last container and exited.
    wait_no_monitor(&pod).await;
    pod.remove(&berthd).await;
    berthd.finish();
}

#[tokio::test]
async fn a_container_removed_while_its_start_was_in_flight_lets_the_monitor_go() {
    let wrapper_dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        dropin: slow_runc(wrapper_dir.path()),
        ..Options::default()
    };
    let mut berthd = Berthd::start_with("startcrashrm", options)
        .await
        .expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "startcrashrm").await;
    let id = create(&berthd, &pod, shell("slow", "sleep 1000"))
        .await
        .expect("CreateContainer");
    let mut rt = berthd.runtime().await.expect("runtime client");
    let request = cri::StartContainerRequest {
        container_id: id.clone(),
    };
    let starting = tokio::spawn(async move { rt.start_container(request).await });
    let marker = wrapper_dir.path().join("started");
    poll(LONG, "the monitor running the runtime", async || {
        marker.exists().then_some(())
    })
    .await;
    berthd.kill().expect("kill -9 berthd");
    let _ = starting.await;
    berthd.launch().await.expect("restarting berthd");

    // Removed at once after the restart: waits for the start's outcome, then removes it all.
    stop(&berthd, &id, 0).await.expect("StopContainer");
    remove(&berthd, &id).await.expect("RemoveContainer");
    wait_no_monitor(&pod).await;
    stop_pod(&berthd, &pod.id).await.expect("StopPodSandbox");
    remove_pod(&berthd, &pod.id)
        .await
        .expect("RemovePodSandbox");
    berthd.finish();
}

#[tokio::test]
// kill(2) with SIGSTOP of the pod's monitor.
#[allow(unsafe_code)]
async fn remove_pod_sandbox_kills_a_monitor_that_does_not_exit() {
    let berthd = Berthd::start("monstop").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "monstop").await;
    let id = run(&berthd, &pod, shell("sleeper", "sleep 1000")).await;
    stop_pod(&berthd, &pod.id).await.expect("StopPodSandbox");
    assert_eq!(state(&berthd, &id).await, EXITED);
    let monitors = pod_monitors(&pod);
    assert_eq!(monitors.len(), 1, "{monitors:?}");
    let monitor = monitors[0].0;
    // A monitor that never answers nor exits by itself.
    // SAFETY: kill(2) has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(monitor, libc::SIGSTOP) }, 0);

    remove_pod(&berthd, &pod.id)
        .await
        .expect("RemovePodSandbox");
    wait_gone(monitor, LONG).await;
    assert!(pod_monitors(&pod).is_empty());
    // Idempotent, as kubelet retries it.
    remove_pod(&berthd, &pod.id)
        .await
        .expect("RemovePodSandbox again");
    berthd.finish();
}

/// Berth's CLI log root and the annotation by which it marks the directories it made there.
const CLI_LOG_ROOT: &str = "/var/log/berth/pods";
const CLI_LOG_DIR_ANNOTATION: &str = "io.berth.cli/log-directory";

#[tokio::test]
async fn logs_in_berths_own_log_directories_go_with_their_container_and_pod() {
    let berthd = Berthd::start("ownlogs").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;

    // A pod as `berth runp` makes it.
    let mut config = pod_config(&berthd, "ownlogs");
    let meta = config.metadata.clone().expect("metadata");
    let dir = format!(
        "{CLI_LOG_ROOT}/{}_{}_{}",
        meta.namespace, meta.name, meta.uid
    );
    config.log_directory = dir.clone();
    config
        .annotations
        .insert(CLI_LOG_DIR_ANNOTATION.to_string(), dir.clone());
    let own = Pod::run_with(&berthd, config).await;
    // And one as kubelet makes it.
    let kubelet = Pod::run(&berthd, "kubeletlogs").await;

    let mut ids = Vec::new();
    for pod in [&own, &kubelet] {
        let config = shell("echo", "echo hello");
        let log = pod.log_file(&config);
        let id = run(&berthd, pod, config).await;
        wait_exited(&berthd, &id, LONG).await;
        wait_log_line(&log, "hello", LONG).await;
        let rotated = log.with_file_name(format!(
            "{}.20260101-000000",
            log.file_name().unwrap().to_string_lossy()
        ));
        std::fs::write(&rotated, "rotated").expect("a rotated log");
        ids.push((id, log, rotated));
    }
    // A second container of Berth's pod keeps its log until the pod goes.
    let keeper = shell("keeper", "echo kept");
    let keeper_log = own.log_file(&keeper);
    let keeper_id = run(&berthd, &own, keeper).await;
    wait_log_line(&keeper_log, "kept", LONG).await;

    for (id, _, _) in &ids {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    let (_, own_log, own_rotated) = &ids[0];
    assert!(!own_log.exists() && !own_rotated.exists());
    assert!(keeper_log.exists(), "another container's log stays");
    let (_, kubelet_log, kubelet_rotated) = &ids[1];
    assert!(kubelet_log.exists() && kubelet_rotated.exists());

    stop_and_remove(&berthd, &keeper_id).await;
    own.remove(&berthd).await;
    kubelet.remove(&berthd).await;
    assert!(!Path::new(&dir).exists(), "Berth's pod log directory stays");
    assert!(
        kubelet.log_dir().exists(),
        "kubelet's pod log directory is kubelet's"
    );
    berthd.finish();
}
