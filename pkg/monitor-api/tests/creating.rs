//! Creates in flight: the monitor lists them (so a restarted berthd can wait for them), and a
//! Forget while the runtime still runs makes the monitor kill the container once it is made and
//! then exit. Needs root, runc and a built monitor, like tests/monitor.rs.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)]
mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Fixture, eventually, prerequisites};

/// A runc that sleeps `secs` before a `run`, after touching `<dir>/started`.
fn slow_runc(dir: &Path, runc: &Path, secs: u32) -> PathBuf {
    let wrapper = dir.join("slow-runc");
    let script = format!(
        "#!/bin/sh\nfor a in \"$@\"; do\n  case \"$a\" in\n    run) touch {marker}; sleep {secs}; break ;;\n  esac\ndone\nexec {runc} \"$@\"\n",
        marker = dir.join("started").display(),
        runc = runc.display(),
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    wrapper
}

#[test]
fn a_create_in_flight_is_listed_then_running() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let slow = slow_runc(fx.tmp.path(), &runc, 1);
    let id = fx.new_id();
    let mut req = fx.request(&id, &["sleep", "100"], false);
    req.runtime_path = slow;
    let monitor = fx.monitor.clone();
    let create = std::thread::spawn(move || monitor.create(&req));
    let marker = fx.tmp.path().join("started");
    assert!(
        eventually(Duration::from_secs(10), || marker.exists()),
        "the runtime never started"
    );
    let listed = fx.monitor.list().unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(listed[0].creating && listed[0].pid == 0 && listed[0].exit.is_none());

    let pid = create.join().unwrap().expect("create");
    let listed = fx.monitor.list().unwrap();
    assert!(!listed[0].creating && listed[0].pid == pid, "{listed:?}");
    fx.kill(&id);
    fx.wait_exit(&id);
    fx.delete(&id);
    fx.monitor.forget(&id, false).unwrap();
    assert_eq!(fx.wait_monitor_exit(), 0);
}

#[test]
fn a_container_forgotten_while_being_created_is_killed_and_the_monitor_exits() {
    let Some((bin, runc)) = prerequisites() else {
        return;
    };
    let mut fx = Fixture::new(&bin, &runc);
    let slow = slow_runc(fx.tmp.path(), &runc, 1);
    let id = fx.new_id();
    let mut req = fx.request(&id, &["sleep", "100"], false);
    req.runtime_path = slow;
    let monitor = fx.monitor.clone();
    // The requester goes away, as a SIGKILLed berthd does.
    let create = std::thread::spawn(move || monitor.create(&req));
    let marker = fx.tmp.path().join("started");
    assert!(
        eventually(Duration::from_secs(10), || marker.exists()),
        "the runtime never started"
    );

    fx.monitor
        .forget(&id, false)
        .expect("forgetting a create in flight");
    // No longer listed: it is as good as gone.
    assert!(fx.monitor.list().unwrap().is_empty());
    // The requester learns that the container is gone.
    assert!(create.join().unwrap().is_err());
    assert_eq!(fx.wait_monitor_exit(), 0);
    // The container the runtime made was killed.
    let killed = eventually(Duration::from_secs(10), || {
        let out = fx.runc(&["state", &id]);
        !out.status.success() || String::from_utf8_lossy(&out.stdout).contains("stopped")
    });
    assert!(killed, "the container still runs");
}
