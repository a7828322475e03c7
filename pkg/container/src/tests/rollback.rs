//! A failure at each step of CreateContainer and StartContainer undoes what the steps before it
//! did.

use std::time::Duration;

use super::{Harness, POD, config, phase_of, runtime};
use crate::{ContainerError, ContainerState, Phase, PidMode};

/// Create fails at `op`: no record, bundle, writable layer or mount stays, and the error is the
/// caller's.
fn create_fails_at(op: &str) -> Harness {
    let h = Harness::new();
    h.world.fail(op);
    runtime().block_on(async {
        let service = h.open();
        let err = service
            .create(POD, config("app"))
            .await
            .expect_err("create fails");
        assert!(err.to_string().contains(op), "{err}");
        assert!(service.list(&Default::default()).is_empty());
    });
    h.assert_nothing_left();
    h
}

#[test]
fn create_rolls_back_a_failed_rootfs_mount() {
    let h = create_fails_at("rootfs.mount");
    // The rollback goes by path, not by what was done: the rootfs dir exists, so it is
    // unmounted (a no-op when nothing is mounted there) before it is removed.
    let calls = h.calls(&["rootfs."]);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls[1].starts_with("rootfs.unmount "), "{calls:?}");
}

#[test]
fn create_rolls_back_a_mounted_rootfs() {
    // Fails after the overlay is mounted (the image volumes are next): the rollback unmounts it.
    let h = create_fails_at("rootfs.mount_image_volumes");
    let calls = h.calls(&["rootfs."]);
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls[0].starts_with("rootfs.mount "), "{calls:?}");
    assert!(calls[2].starts_with("rootfs.unmount "), "{calls:?}");
}

#[test]
fn create_rolls_back_a_refused_spec_after_the_record() {
    // The record is written before the spec is built; a request the spec refuses takes it along.
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let mut cfg = config("app");
        cfg.security.pid_mode = PidMode::Target("no-such-container".into());
        let err = service.create(POD, cfg).await.expect_err("refused");
        assert!(matches!(err, ContainerError::InvalidConfig(_)), "{err}");
    });
    h.assert_nothing_left();
}

#[test]
fn create_in_an_unknown_pod_changes_nothing() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let err = service
            .create("nope", config("app"))
            .await
            .expect_err("refused");
        assert!(matches!(err, ContainerError::SandboxNotFound(_)), "{err}");
    });
    assert!(h.world.calls().is_empty());
    h.assert_nothing_left();
}

#[test]
fn start_without_a_monitor_leaves_the_container_created() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        // CreateContainer's head start spawned the monitor: it dies before the start.
        super::eventually("monitor spawned ahead", || {
            h.world.state().monitors.contains_key(POD)
        })
        .await;
        h.world.state().monitors.clear();
        h.world.fail("monitor.spawn");
        h.world.clear_calls();
        service.start(&id).await.expect_err("no monitor");
        assert_eq!(phase_of(&service, &id), Phase::Created, "kubelet may retry");
        assert_eq!(h.stored()[0].phase, Phase::Created);
        assert!(h.calls(&["runtime.", "rootfs.unmount"]).is_empty());
    });
}

#[test]
fn a_failed_runtime_start_is_rolled_back() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        let rootfs = service.get(&id).expect("listed").rootfs();
        // CreateContainer's head start has spawned the monitor (were it later, it would spawn a
        // new one after the failed start let the first go: retired with the pod, like any
        // monitor spawned ahead for a container that never started).
        super::eventually("monitor spawned ahead", || {
            h.world.state().monitors.contains_key(POD)
        })
        .await;
        h.world.fail("monitor.create");
        let err = service.start(&id).await.expect_err("the runtime fails");
        assert!(err.to_string().contains("injected"), "{err}");
        // Runtime state deleted, the monitor (started for nothing) told to go, rootfs unmounted.
        assert!(
            h.calls(&["runtime.delete"])
                .contains(&format!("runtime.delete {id}"))
        );
        assert!(
            h.calls(&["monitor.forget"])
                .contains(&format!("monitor.forget {id} last=true"))
        );
        assert!(
            h.calls(&["rootfs.unmount"])
                .contains(&format!("rootfs.unmount {}", rootfs.display()))
        );
        {
            let state = h.world.state();
            assert!(state.runtime_state.is_empty() && state.mounted.is_empty());
            assert!(state.monitors.is_empty());
        }
        // The container stays, EXITED with StartError, durably.
        let record = service.get(&id).expect("listed");
        assert_eq!(record.state(), ContainerState::Exited);
        assert_eq!(
            (record.exit_code, record.reason.as_str()),
            (128, "StartError")
        );
        assert_eq!(h.stored()[0].reason, "StartError");
        // Removing it leaves nothing.
        service.remove(&id).await.expect("removed");
        service.drain_removals(Duration::from_secs(5)).await;
    });
    h.assert_nothing_left();
}

#[test]
fn a_failed_start_keeps_the_monitor_another_container_uses() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let one = service.create(POD, config("one")).await.expect("created");
        let two = service.create(POD, config("two")).await.expect("created");
        service.start(&one).await.expect("started");
        h.world.fail("monitor.create");
        service.start(&two).await.expect_err("fails");
        assert!(
            h.calls(&["monitor.forget"]).is_empty(),
            "one still runs in it"
        );
        assert!(h.world.state().monitors.contains_key(POD));
        assert_eq!(phase_of(&service, &one), Phase::Running);
    });
}

#[test]
fn only_a_created_container_starts() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        service.start(&id).await.expect("started");
        let err = service.start(&id).await.expect_err("twice");
        assert!(matches!(err, ContainerError::WrongState { .. }), "{err}");
        assert_eq!(h.calls(&["monitor.create"]).len(), 1);
    });
}

#[test]
fn a_failed_cleanup_is_finished_by_pod_removal() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        h.world.fail("rootfs.unmount");
        service
            .remove(&id)
            .await
            .expect("answered before the cleanup");
        service.drain_removals(Duration::from_secs(5)).await;
        assert_eq!(h.stored()[0].phase, Phase::Removing, "kept for a retry");
        // The failure goes away; RemovePodSandbox finishes the removal.
        h.world.heal("rootfs.unmount");
        service
            .pod_hook()
            .remove_all(POD)
            .await
            .expect("pod removed");
    });
    h.assert_nothing_left();
}
