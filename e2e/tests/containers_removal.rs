//! RemoveContainer answers once the container is gone for CRI, and its cleanup (runtime state,
//! the pod monitor, the rootfs mount, the writable layer) follows in the background; the pod's
//! monitor is spawned ahead at CreateContainer and released with the pod's last container, also
//! when that one never started; RemovePodSandbox waits for the cleanups of its containers.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_e2e::Berthd;
use berth_e2e::containers::*;
use berth_e2e::leaks;

const LONG: Duration = Duration::from_secs(30);
const LOOP: &str = "trap 'exit 0' TERM; while :; do sleep 1; done";

/// The pod's monitor processes: their `--dir` names the first 32 characters of the pod id.
fn pod_monitors(pod: &Pod) -> Vec<(i32, String)> {
    monitor_processes(&pod.id[..pod.id.len().min(32)])
}

async fn wait_monitors(pod: &Pod, want: usize, what: &str) {
    poll(LONG, what, async || {
        (pod_monitors(pod).len() == want).then_some(())
    })
    .await;
}

fn rootfs_of(berthd: &Berthd, id: &str) -> PathBuf {
    berthd.state.join("containers").join(id).join("rootfs")
}

fn mounted(path: &Path) -> bool {
    !leaks::mounts_under(path).is_empty()
}

#[tokio::test]
async fn remove_answers_first_and_the_cleanup_follows() {
    let berthd = Berthd::start("rmbg").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "rmbg").await;

    // CreateContainer starts the pod's monitor ahead of StartContainer.
    let id = create(&berthd, &pod, shell("main", LOOP))
        .await
        .expect("CreateContainer");
    wait_monitors(&pod, 1, "the monitor spawned at CreateContainer").await;
    start(&berthd, &id).await.expect("StartContainer");
    assert_eq!(state(&berthd, &id).await, RUNNING);
    let rootfs = rootfs_of(&berthd, &id);
    assert!(mounted(&rootfs), "the rootfs is mounted while it runs");

    // Removed while running: killed, and gone for CRI as soon as the call returns.
    remove(&berthd, &id).await.expect("RemoveContainer");
    assert!(list(&berthd, None).await.is_empty(), "listed after removal");
    assert_eq!(
        status_response(&berthd, &id, false)
            .await
            .expect_err("status of a removed container")
            .code(),
        tonic::Code::NotFound
    );
    // A retried removal is fine.
    remove(&berthd, &id).await.expect("RemoveContainer again");
    // The rest follows: the monitor (its last container) exits, the rootfs is unmounted and the
    // container's directories go.
    wait_monitors(&pod, 0, "the monitor gone after its last container").await;
    poll(LONG, "the rootfs unmounted and removed", async || {
        (!mounted(&rootfs) && !rootfs.exists()).then_some(())
    })
    .await;
    poll(LONG, "the writable layer removed", async || {
        (!berthd.root.join("containers").join(&id).exists()).then_some(())
    })
    .await;

    // A container created and removed without ever starting takes its monitor along too.
    let never = create(&berthd, &pod, shell("never", LOOP))
        .await
        .expect("CreateContainer");
    wait_monitors(&pod, 1, "the monitor spawned at CreateContainer").await;
    remove(&berthd, &never).await.expect("RemoveContainer");
    wait_monitors(&pod, 0, "the monitor of a never-started container gone").await;

    pod.remove(&berthd).await;
    berthd.finish();
}

/// kubelet's restart of a container: the replacement is created before the old one is removed.
/// Removing the old one (the monitor's only container) must not take the monitor from under the
/// replacement about to start.
#[tokio::test]
async fn a_created_sibling_keeps_the_monitor_through_a_removal() {
    let berthd = Berthd::start("rmsib").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "rmsib").await;
    for round in 0..5 {
        let old = run(&berthd, &pod, shell(&format!("old{round}"), LOOP)).await;
        let new = create(&berthd, &pod, shell(&format!("new{round}"), LOOP))
            .await
            .expect("CreateContainer");
        stop(&berthd, &old, 10).await.expect("StopContainer");
        remove(&berthd, &old).await.expect("RemoveContainer");
        start(&berthd, &new)
            .await
            .unwrap_or_else(|e| panic!("round {round}: StartContainer after a removal: {e}"));
        assert_eq!(state(&berthd, &new).await, RUNNING);
        assert_eq!(pod_monitors(&pod).len(), 1, "one monitor for the pod");
        stop_and_remove(&berthd, &new).await;
        wait_monitors(&pod, 0, "the monitor gone with the last container").await;
    }
    pod.remove(&berthd).await;
    berthd.finish();
}

/// RemovePodSandbox right after RemoveContainer: the pod waits for its containers' cleanups, and
/// nothing is left behind.
#[tokio::test]
async fn pod_removal_waits_for_container_cleanups() {
    let berthd = Berthd::start("rmpod").await.expect("starting berthd");
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "rmpod").await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(run(&berthd, &pod, shell(&format!("c{i}"), LOOP)).await);
    }
    for id in &ids {
        remove(&berthd, id).await.expect("RemoveContainer");
    }
    pod.remove(&berthd).await;
    assert!(
        pod_monitors(&pod).is_empty(),
        "monitor left after RemovePodSandbox"
    );
    for id in &ids {
        assert!(!rootfs_of(&berthd, id).exists(), "rootfs of {id} left");
    }
    berthd.finish();
}
