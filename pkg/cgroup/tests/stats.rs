//! Cgroup statistics read from this host's real cgroups (root required): a pod cgroup with one
//! container cgroup holding a busy shell, in every hierarchy the crate uses; and the cgroup v2
//! readers on a cgroup2 mount (the controller-less unified one on hybrid hosts).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use berth_cgroup::{CgroupError, CgroupStats, Cgroups, Driver, Layout, PodCgroup, PodResources};
use common::{Guard, read_trim, token, v2_root};

/// A shell that waits for a line on stdin (so it can be moved into the cgroups first), then
/// burns some CPU and becomes `sleep` (`exec`, so killing its pid leaves nothing behind).
fn gated_shell() -> (Child, ChildStdin) {
    gated("read go; i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 5")
}

fn gated(script: &str) -> (Child, ChildStdin) {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let stdin = child.stdin.take().expect("stdin");
    (child, stdin)
}

fn join(dirs: &[PathBuf], pid: u32) {
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .unwrap_or_else(|e| panic!("write {}: {e}", procs.display()));
    }
}

/// A fresh v1 cpuset cgroup must get cpus/mems before a task can join it (as container.rs does).
fn mkdir_child(parent: &Path, name: &str) -> PathBuf {
    let child = parent.join(name);
    std::fs::create_dir(&child).unwrap_or_else(|e| panic!("mkdir {}: {e}", child.display()));
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if child.join(f).exists() && read_trim(child.join(f)).is_empty() {
            std::fs::write(child.join(f), read_trim(parent.join(f))).unwrap();
        }
    }
    child
}

/// Polls until `ready` holds for the stats (the shell needs a moment to run and fault pages in).
fn wait_for(read: impl Fn() -> CgroupStats, ready: impl Fn(&CgroupStats) -> bool) -> CgroupStats {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = read();
        if ready(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn leftovers(rel: &str) -> Vec<PathBuf> {
    common::hierarchy_mounts()
        .into_iter()
        .map(|m| m.join(rel))
        .filter(|p| p.exists())
        .collect()
}

/// Time per call of `f` over 300 calls (one ListContainerStats of 300 containers).
fn time_per_call(mut f: impl FnMut()) -> Duration {
    f(); // warm the dentry cache like a long-running berthd would have it
    let start = Instant::now();
    for _ in 0..300 {
        f();
    }
    start.elapsed() / 300
}

#[test]
fn real_pod_and_container_stats() {
    assert!(common::is_root(), "these tests need root");
    let cg = Cgroups::new(Driver::Cgroupfs).expect("detect cgroups");
    let top = format!("berth-stats-test-{}", token());
    let mut guard = Guard::new(top.clone());
    let mut pod = cg.pod_cgroup(&format!("/{top}"), "unused").unwrap();
    cg.ensure(&mut pod, &PodResources::default())
        .expect("ensure");
    let pod_dirs = pod.fs_paths();
    if cg.layout() == Layout::V2 {
        // A pure v2 host: give the container cgroup the pod's controllers.
        let dir = &pod_dirs[0];
        for c in read_trim(dir.join("cgroup.controllers")).split_whitespace() {
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
    let container_dirs: Vec<PathBuf> = pod_dirs.iter().map(|d| mkdir_child(d, "c1")).collect();
    assert_eq!(container_dirs, cg.container_dirs(&pod, "c1"));

    let (child, mut gate) = gated_shell();
    let pid = child.id();
    guard.children.push(child);
    join(&container_dirs, pid);
    gate.write_all(b"go\n").unwrap();

    let has_memory = match cg.layout() {
        Layout::V2 => read_trim(container_dirs[0].join("cgroup.controllers")).contains("memory"),
        _ => common::dir_in(&pod_dirs, "memory").is_some(),
    };
    let has_pids = match cg.layout() {
        Layout::V2 => read_trim(container_dirs[0].join("cgroup.controllers")).contains("pids"),
        _ => common::dir_in(&pod_dirs, "pids").is_some(),
    };
    let ready = |s: &CgroupStats| {
        s.cpu.as_ref().is_some_and(|c| c.usage_ns > 0)
            && (!has_memory || s.memory.as_ref().is_some_and(|m| m.usage_bytes > 0))
    };
    let s = wait_for(|| cg.container_stats(&pod, "c1").expect("stats"), ready);
    eprintln!("container stats: {s:#?}");
    let cpu = s.cpu.as_ref().expect("cpu stats");
    assert!(cpu.usage_ns > 0, "{cpu:?}");
    assert!(cpu.user_ns + cpu.system_ns <= cpu.usage_ns + 100_000_000);
    if has_memory {
        let m = s.memory.as_ref().expect("memory stats");
        assert!(
            m.usage_bytes > 0 && m.working_set_bytes <= m.usage_bytes,
            "{m:?}"
        );
        assert_eq!(m.limit_bytes, None, "no limit was set");
        assert_eq!(m.available_bytes(), None);
    }
    if has_pids {
        let p = s.pids.as_ref().expect("pids stats");
        assert!(p.current >= 1, "{p:?}");
        assert_eq!(p.limit, None);
    }

    // The pod cgroup is hierarchical: it counts its container.
    let p = cg.pod_stats(&pod).expect("pod stats");
    assert!(p.cpu.as_ref().unwrap().usage_ns >= cpu.usage_ns);
    if has_pids {
        assert!(p.pids.as_ref().unwrap().current >= 1);
    }
    assert!(cg.stats_at(&format!("/{top}/c1")).unwrap().cpu.is_some());

    // The root cgroup: no pids counter there (v1 and v2), no memory.current on v2.
    let root = cg.stats_at("/").expect("root stats");
    assert!(root.cpu.is_some_and(|c| c.usage_ns >= cpu.usage_ns));
    assert_eq!(root.pids, None);

    // Missing cgroups are NotFound, never an I/O error.
    let err = cg.stats_at(&format!("/{top}/nope")).unwrap_err();
    assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
    assert!(matches!(
        cg.container_stats(&pod, "nope"),
        Err(CgroupError::NotFound { .. })
    ));
    assert!(matches!(
        cg.stats_at(&format!("/berth-stats-absent-{}", token())),
        Err(CgroupError::NotFound { .. })
    ));

    let per_call = time_per_call(|| {
        cg.container_stats(&pod, "c1").expect("stats");
    });
    eprintln!("container_stats: {per_call:?} per call ({})", cg.layout());

    // Clean up by hand (the guard is only the safety net) and check nothing is left.
    for mut c in guard.children.drain(..) {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    for dir in &container_dirs {
        std::fs::remove_dir(dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", dir.display()));
    }
    cg.remove(&pod).expect("remove pod cgroup");
    assert!(leftovers(&top).is_empty(), "{:?}", leftovers(&top));
    assert!(matches!(
        cg.pod_stats(&pod),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn real_v2_stats() {
    let Some(root) = v2_root() else {
        eprintln!("no cgroup2 mount: skipped");
        return;
    };
    let cg = Cgroups::with_root(Driver::Cgroupfs, root).unwrap();
    assert_eq!(cg.layout(), Layout::V2);
    let top = format!("berth-stats-test-{}", token());
    let mut guard = Guard::new(top.clone());
    // ensure() enables controllers in the root's subtree_control: put it back afterwards.
    common::restore_subtree_control(&mut guard, root);

    let mut pod = cg.pod_cgroup(&format!("/{top}"), "unused").unwrap();
    cg.ensure(&mut pod, &PodResources::default())
        .expect("ensure");
    let dir = pod.fs_paths().remove(0);
    let controllers = read_trim(dir.join("cgroup.controllers"));
    let (child, mut gate) = gated_shell();
    let pid = child.id();
    guard.children.push(child);
    join(std::slice::from_ref(&dir), pid);
    gate.write_all(b"go\n").unwrap();

    let s = wait_for(
        || cg.pod_stats(&pod).expect("stats"),
        |s| s.cpu.as_ref().is_some_and(|c| c.usage_ns > 0),
    );
    eprintln!("v2 stats under {root}: {s:#?}");
    assert!(s.cpu.as_ref().unwrap().usage_ns > 0);
    // Present exactly when the controller is enabled for this cgroup (never on the
    // controller-less unified hierarchy of a hybrid host).
    assert_eq!(s.memory.is_some(), controllers.contains("memory"));
    assert_eq!(s.pids.is_some(), controllers.contains("pids"));
    assert!(matches!(
        cg.stats_at(&format!("/{top}/nope")),
        Err(CgroupError::NotFound { .. })
    ));
    let per_call = time_per_call(|| {
        cg.pod_stats(&pod).expect("stats");
    });
    eprintln!("v2 stats_at: {per_call:?} per call (controllers: {controllers:?})");

    for mut c in guard.children.drain(..) {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    cg.remove(&pod).expect("remove");
    assert!(leftovers(&top).is_empty(), "{:?}", leftovers(&top));
}

/// What reading the same cgroup through libcgroups' v1 manager (`Manager::new` + `stats()`)
/// would cost, next to `container_stats`. Not run by default (`--ignored --nocapture`).
#[test]
#[ignore = "benchmark; run with --ignored --nocapture"]
fn bench_against_libcgroups_manager() {
    use libcgroups::common::CgroupManager;

    let cg = Cgroups::new(Driver::Cgroupfs).expect("detect cgroups");
    if cg.layout() == Layout::V2 {
        eprintln!("pure v2 host: the comparison is for v1 only");
        return;
    }
    let top = format!("berth-stats-test-{}", token());
    let mut guard = Guard::new(top.clone());
    let mut pod: PodCgroup = cg.pod_cgroup(&format!("/{top}"), "unused").unwrap();
    cg.ensure(&mut pod, &PodResources::default())
        .expect("ensure");
    let dirs: Vec<PathBuf> = pod
        .fs_paths()
        .iter()
        .map(|d| mkdir_child(d, "c1"))
        .collect();
    // An idle process: a busy one would compete with the timing loop for the CPU.
    let (child, mut gate) = gated("read go; exec sleep 30");
    let pid = child.id();
    guard.children.push(child);
    join(&dirs, pid);
    gate.write_all(b"go\n").unwrap();

    let ours = time_per_call(|| {
        cg.container_stats(&pod, "c1").expect("stats");
    });
    let path = PathBuf::from(pod.container_fs_path("c1"));
    let manager = libcgroups::v1::manager::Manager::new(&path).expect("v1 manager");
    let lib_stats = time_per_call(|| match manager.stats() {
        Ok(_) => {}
        Err(e) => panic!("libcgroups stats: {e}"),
    });
    let lib_new_and_stats = time_per_call(|| {
        let m = libcgroups::v1::manager::Manager::new(&path).expect("v1 manager");
        m.stats().expect("libcgroups stats");
    });
    eprintln!(
        "per cgroup: container_stats {ours:?}; libcgroups v1 Manager::stats {lib_stats:?}; \
         Manager::new + stats {lib_new_and_stats:?}"
    );

    for mut c in guard.children.drain(..) {
        let _ = c.kill();
        let _ = c.wait();
    }
    for d in &dirs {
        let _ = std::fs::remove_dir(d);
    }
    cg.remove(&pod).expect("remove");
}
