//! Create, start, stop and remove on the fakes, and what each asks of the runtime, the monitor and
//! the mounts.

use std::time::{Duration, Instant};

use super::{Harness, POD, config, eventually, phase_of, runtime};
use crate::{ContainerState, Phase};

#[test]
fn create_start_stop_remove() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        let record = service.get(&id).expect("listed");
        assert_eq!(record.state(), ContainerState::Created);
        assert!(
            record.bundle.join("config.json").is_file(),
            "bundle written"
        );
        assert!(h.world.state().mounted.contains(&record.rootfs()));
        assert_eq!(h.stored()[0].phase, Phase::Created);
        // A retry of the same CreateContainer (kubelet's, after a timeout) gets the same one.
        assert_eq!(service.create(POD, config("app")).await.expect("retry"), id);

        service.start(&id).await.expect("started");
        let running = service.get(&id).expect("listed");
        assert_eq!(running.state(), ContainerState::Running);
        assert!(running.pid > 0 && running.started_at_ns >= running.created_at_ns);
        assert_eq!(h.stored()[0].phase, Phase::Running);
        assert_eq!(
            h.calls(&["monitor.create"]),
            [format!("monitor.create {id}")]
        );

        service
            .stop(&id, Duration::from_secs(10))
            .await
            .expect("stopped");
        let stopped = service.get(&id).expect("listed");
        assert_eq!(stopped.state(), ContainerState::Exited);
        assert_eq!(stopped.exit_code, 128 + libc::SIGTERM);
        assert_eq!(
            h.calls(&["runtime.kill"]),
            [format!("runtime.kill {id} {}", libc::SIGTERM)]
        );
        // The exited container's runtime state goes in the background.
        eventually("runtime state deleted", || {
            !h.world.state().runtime_state.contains(&id)
        })
        .await;
        // Stopping again changes nothing.
        service.stop(&id, Duration::ZERO).await.expect("idempotent");

        service.remove(&id).await.expect("removed");
        assert!(service.get(&id).is_err(), "gone for CRI at once");
        service.drain_removals(Duration::from_secs(5)).await;
        h.assert_nothing_left();
        // Its pod's last container: the monitor was told so, and exited.
        assert!(
            h.calls(&["monitor.forget"])
                .contains(&format!("monitor.forget {id} last=true"))
        );
        assert!(h.world.state().monitors.is_empty());
        // Removing it again is no error.
        service.remove(&id).await.expect("idempotent");
    });
}

#[test]
fn an_exit_is_recorded_by_the_watcher() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        service.start(&id).await.expect("started");
        h.world.exit(&id, 3, 0);
        eventually("exit recorded", || phase_of(&service, &id) == Phase::Exited).await;
        assert_eq!(service.get(&id).expect("listed").exit_code, 3);
        assert_eq!(h.stored()[0].phase, Phase::Exited);
    });
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service
            .create(POD, config("stubborn"))
            .await
            .expect("created");
        service.start(&id).await.expect("started");
        h.world.state().ignore_sigterm.insert(id.clone());
        let timeout = Duration::from_millis(50);
        let began = Instant::now();
        service.stop(&id, timeout).await.expect("stopped");
        let took = began.elapsed();
        assert!(took >= timeout, "SIGKILL only after the timeout ({took:?})");
        assert!(took < timeout + Duration::from_secs(2), "{took:?}");
        assert_eq!(
            h.calls(&["runtime.kill"]),
            [
                format!("runtime.kill {id} {}", libc::SIGTERM),
                format!("runtime.kill {id} {}", libc::SIGKILL)
            ]
        );
        assert_eq!(
            service.get(&id).expect("listed").exit_code,
            128 + libc::SIGKILL
        );
    });
}

#[test]
fn a_zero_timeout_kills_at_once() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        service.start(&id).await.expect("started");
        service.stop(&id, Duration::ZERO).await.expect("stopped");
        assert_eq!(
            h.calls(&["runtime.kill"]),
            [format!("runtime.kill {id} {}", libc::SIGKILL)]
        );
    });
}

#[test]
fn removing_a_running_container_kills_it_and_cleans_up() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let id = service.create(POD, config("app")).await.expect("created");
        service.start(&id).await.expect("started");
        service.remove(&id).await.expect("removed");
        assert_eq!(
            h.calls(&["runtime.kill"]),
            [format!("runtime.kill {id} {}", libc::SIGKILL)]
        );
        service.drain_removals(Duration::from_secs(5)).await;
        h.assert_nothing_left();
    });
}

#[test]
fn the_monitor_stays_while_another_container_of_the_pod_needs_it() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let one = service.create(POD, config("one")).await.expect("created");
        let two = service.create(POD, config("two")).await.expect("created");
        service.start(&one).await.expect("started");
        service.start(&two).await.expect("started");
        service.remove(&one).await.expect("removed");
        service.drain_removals(Duration::from_secs(5)).await;
        assert!(
            h.calls(&["monitor.forget"])
                .contains(&format!("monitor.forget {one} last=false"))
        );
        assert!(h.world.state().monitors.contains_key(POD), "still needed");
        service.remove(&two).await.expect("removed");
        service.drain_removals(Duration::from_secs(5)).await;
        assert!(h.world.state().monitors.is_empty(), "the last one took it");
        h.assert_nothing_left();
    });
}

#[test]
fn pod_removal_removes_every_container_and_retires_the_monitor() {
    let h = Harness::new();
    runtime().block_on(async {
        let service = h.open();
        let one = service.create(POD, config("one")).await.expect("created");
        let _two = service.create(POD, config("two")).await.expect("created");
        service.start(&one).await.expect("started");
        let hook = service.pod_hook();
        hook.stop_all(POD).await.expect("pod stopped");
        assert_eq!(phase_of(&service, &one), Phase::Exited);
        hook.remove_all(POD).await.expect("pod removed");
        assert!(
            h.calls(&["monitor.retire"])
                .contains(&format!("monitor.retire {POD}"))
        );
        h.assert_nothing_left();
    });
}
