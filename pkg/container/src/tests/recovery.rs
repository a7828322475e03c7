//! A berthd that crashes at each step of a container's life leaves records and host state that
//! the next one's `recover()` reconciles. The crashed berthd is a runtime dropped with all its
//! tasks; what it left is then set to what a crash at the step leaves (steps are named as the
//! failpoints the chaos e2e tests crash at).

use std::time::Duration;

use berth_monitor_api::ContainerInfo;

use super::{Harness, POD, config, eventually, phase_of, runtime};
use crate::record::unknown_exit;
use crate::{ContainerRecord, ContainerService, Phase};

/// The first berthd: runs `work` on a service, then crashes (its runtime and tasks are gone).
fn crashed<T: Send + 'static>(h: &Harness, work: impl AsyncFnOnce(&ContainerService) -> T) -> T {
    let rt = runtime();
    let out = rt.block_on(async {
        let service = h.open();
        work(&service).await
    });
    rt.shutdown_background();
    out
}

/// The next berthd: opens the service, recovers, then runs `check`.
fn restarted(h: &Harness, check: impl AsyncFnOnce(&ContainerService)) {
    runtime().block_on(async {
        let service = h.open();
        service.recover().await;
        check(&service).await
    })
}

/// A container created (and started, with `start`) by a berthd that then crashed.
fn made(h: &Harness, start: bool) -> ContainerRecord {
    crashed(h, async |service| {
        let id = service.create(POD, config("app")).await.expect("created");
        if start {
            service.start(&id).await.expect("started");
        }
        service.get(&id).expect("listed")
    })
}

#[test]
fn a_create_interrupted_at_any_step_is_rolled_back() {
    for step in [
        "after-record",
        "after-rootfs",
        "after-bundle",
        "before-final-save",
    ] {
        let h = Harness::new();
        let mut record = made(&h, false);
        record.phase = Phase::Creating;
        h.put(&record);
        match step {
            "after-record" => {
                h.world.state().mounted.clear();
                std::fs::remove_dir_all(&record.bundle).expect("bundle removed");
                std::fs::remove_dir_all(&record.rw_dir).expect("layer removed");
            }
            "after-rootfs" => {
                std::fs::remove_file(record.bundle.join("config.json")).expect("spec removed")
            }
            _ => {}
        }
        h.world.clear_calls();
        restarted(&h, async |service| {
            assert!(service.list(&Default::default()).is_empty(), "{step}");
        });
        h.assert_nothing_left();
        assert!(
            h.calls(&["runtime.", "monitor.create"]).is_empty(),
            "{step}"
        );
    }
}

#[test]
fn a_start_interrupted_before_the_runtime_leaves_it_created() {
    // container/start/after-monitor and before-runtime: STARTING is never written, the monitor
    // runs but never got the container.
    let h = Harness::new();
    let record = made(&h, false);
    h.world.state().monitors.entry(POD.to_string()).or_default();
    h.world.clear_calls();
    restarted(&h, async |service| {
        assert_eq!(phase_of(service, &record.id), Phase::Created);
        assert!(h.calls(&["runtime."]).is_empty());
        // kubelet's retry of StartContainer runs it.
        service.start(&record.id).await.expect("started");
        assert_eq!(phase_of(service, &record.id), Phase::Running);
    });
}

/// A start whose runtime finished but whose RUNNING record was never written
/// (container/start/after-runtime): the store says CREATED.
fn started_but_unrecorded(h: &Harness) -> ContainerRecord {
    let mut record = made(h, true);
    record.phase = Phase::Created;
    record.pid = 0;
    record.pid_start_time = 0;
    record.started_at_ns = 0;
    h.put(&record);
    record
}

#[test]
fn a_start_interrupted_after_the_runtime_is_adopted() {
    let h = Harness::new();
    let record = started_but_unrecorded(&h);
    let pid = h.world.state().monitors[POD][&record.id].pid;
    restarted(&h, async |service| {
        let adopted = service.get(&record.id).expect("listed");
        assert_eq!((adopted.phase, adopted.pid), (Phase::Running, pid));
        assert!(adopted.started_at_ns > 0);
        // Watched again: its exit is recorded.
        h.world.exit(&record.id, 7, 0);
        eventually("exit recorded", || {
            phase_of(service, &record.id) == Phase::Exited
        })
        .await;
        assert_eq!(service.get(&record.id).expect("listed").exit_code, 7);
    });
}

#[test]
fn a_start_interrupted_after_the_runtime_whose_process_exited_meanwhile() {
    let h = Harness::new();
    let record = started_but_unrecorded(&h);
    h.world.exit(&record.id, 2, 0);
    restarted(&h, async |service| {
        let exited = service.get(&record.id).expect("listed");
        assert_eq!((exited.phase, exited.exit_code), (Phase::Exited, 2));
    });
    // The monitor died too, leaving only the exit file: the same outcome.
    let h = Harness::new();
    let record = started_but_unrecorded(&h);
    h.world.exit(&record.id, 2, 0);
    h.world.state().monitors.clear();
    restarted(&h, async |service| {
        let exited = service.get(&record.id).expect("listed");
        assert_eq!((exited.phase, exited.exit_code), (Phase::Exited, 2));
    });
}

/// The monitor reports the container's create still in flight; `finish` ends it after a while.
fn in_flight(h: &Harness, record: &ContainerRecord) {
    let info = ContainerInfo {
        container_id: record.id.clone(),
        pid: 0,
        exit: None,
        log_bytes: 0,
        creating: true,
    };
    let mut state = h.world.state();
    let pod = state.monitors.entry(POD.to_string()).or_default();
    pod.insert(record.id.clone(), info);
}

#[test]
fn a_start_in_flight_in_the_monitor_is_waited_for() {
    let h = Harness::new();
    let record = started_but_unrecorded(&h);
    in_flight(&h, &record);
    restarted(&h, async |service| {
        assert_eq!(
            service.get(&record.id).expect("listed").phase,
            Phase::Created
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        if let Some(c) = h
            .world
            .state()
            .monitors
            .get_mut(POD)
            .and_then(|p| p.get_mut(&record.id))
        {
            c.creating = false;
            c.pid = 4242;
        }
        eventually("adopted", || {
            phase_of(service, &record.id) == Phase::Running
        })
        .await;
        assert_eq!(service.get(&record.id).expect("listed").pid, 4242);
    });
}

#[test]
fn a_start_that_fails_in_flight_is_a_start_error() {
    let h = Harness::new();
    let record = started_but_unrecorded(&h);
    in_flight(&h, &record);
    h.world.clear_calls();
    restarted(&h, async |service| {
        tokio::time::sleep(Duration::from_millis(150)).await;
        // The runtime failed: the monitor drops the container.
        if let Some(p) = h.world.state().monitors.get_mut(POD) {
            p.remove(&record.id);
        }
        eventually("failed", || phase_of(service, &record.id) == Phase::Exited).await;
        let failed = service.get(&record.id).expect("listed");
        assert_eq!(failed.reason, "StartError");
        assert!(
            h.calls(&["runtime.delete"])
                .contains(&format!("runtime.delete {}", record.id))
        );
        assert!(
            !h.world.state().mounted.contains(&record.rootfs()),
            "rootfs unmounted"
        );
    });
}

#[test]
fn a_running_container_whose_monitor_died_is_lost() {
    let h = Harness::new();
    let record = made(&h, true);
    h.world.state().monitors.clear();
    h.world.clear_calls();
    restarted(&h, async |service| {
        let lost = service.get(&record.id).expect("listed");
        assert_eq!(lost.phase, Phase::Exited);
        assert_eq!(lost.exit_code, unknown_exit().exit_code);
        assert!(lost.message.contains("monitor is gone"), "{}", lost.message);
        assert_eq!(
            h.calls(&["runtime."]),
            [
                format!("runtime.kill {} {}", record.id, libc::SIGKILL),
                format!("runtime.delete {}", record.id)
            ]
        );
    });
}

#[test]
fn a_stop_interrupted_after_the_kill_records_the_exit() {
    // container/stop/after-kill: the process is dead, the store still says RUNNING.
    let h = Harness::new();
    let record = made(&h, true);
    h.world.exit(&record.id, 128 + libc::SIGTERM, libc::SIGTERM);
    restarted(&h, async |service| {
        let stopped = service.get(&record.id).expect("listed");
        assert_eq!(
            (stopped.phase, stopped.exit_code),
            (Phase::Exited, 128 + libc::SIGTERM)
        );
        assert_eq!(h.stored()[0].phase, Phase::Exited);
    });
}

#[test]
fn a_remove_interrupted_at_any_step_is_finished() {
    for step in [
        "remove/after-kill",
        "remove/after-tombstone",
        "cleanup/after-runtime-delete",
        "cleanup/after-monitor",
        "cleanup/after-files",
    ] {
        let h = Harness::new();
        let mut record = made(&h, true);
        h.world.exit(&record.id, 137, libc::SIGKILL);
        let exit = h.world.state().exit_files[&record.id].clone();
        record.set_exited(&exit);
        if step != "remove/after-kill" {
            record.phase = Phase::Removing;
        }
        h.put(&record);
        if step.starts_with("cleanup/") {
            h.world.state().runtime_state.clear();
        }
        if matches!(step, "cleanup/after-monitor" | "cleanup/after-files") {
            h.world.state().monitors.clear();
        }
        if step == "cleanup/after-files" {
            h.world.state().mounted.clear();
            std::fs::remove_dir_all(&record.bundle).expect("bundle removed");
            std::fs::remove_dir_all(&record.rw_dir).expect("layer removed");
        }
        restarted(&h, async |service| {
            assert!(service.get(&record.id).is_err() || step == "remove/after-kill");
            if step == "remove/after-kill" {
                // Not removed yet for CRI: exited, and kubelet's retry removes it.
                assert_eq!(phase_of(service, &record.id), Phase::Exited);
                service.remove(&record.id).await.expect("removed");
            }
            service.drain_removals(Duration::from_secs(5)).await;
        });
        h.assert_nothing_left();
        assert!(h.world.state().monitors.is_empty(), "{step}: monitor left");
    }
}
