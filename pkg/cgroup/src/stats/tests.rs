//! The readers on fake v1, v2 and hybrid trees in a tempdir, in the kernel's file formats.

use std::path::{Path, PathBuf};

use super::*;
use crate::hierarchy::{Hierarchy, Kind};
use crate::{Driver, Layout};

/// A `Cgroups` over explicit hierarchies: detection needs real cgroup mounts (statfs magic).
fn cgroups(driver: Driver, layout: Layout, root: &Path, hierarchies: Vec<Hierarchy>) -> Cgroups {
    Cgroups {
        driver,
        layout,
        root: root.to_path_buf(),
        hierarchies,
        default_parent: match driver {
            Driver::Cgroupfs => crate::DEFAULT_CGROUPFS_PARENT,
            Driver::Systemd => crate::DEFAULT_SYSTEMD_PARENT,
        }
        .to_owned(),
        systemd_running: false,
    }
}

fn v1(root: &Path, name: &str, controllers: &[&str]) -> Hierarchy {
    Hierarchy {
        mount: root.join(name),
        kind: Kind::V1 {
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
        },
    }
}

fn write(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

const CG: &str = "/berth/pod1/c1";
const PAGE_ROUNDED_MAX: &str = "9223372036854771712\n";

const V1_MEMORY_STAT: &str = "\
cache 4096
rss 8192
inactive_file 4096
total_cache 2097152
total_rss 4194304
total_rss_huge 0
total_shmem 0
total_mapped_file 1048576
total_pgpgin 100
total_pgfault 5000
total_pgmajfault 7
total_inactive_anon 0
total_active_anon 4194304
total_inactive_file 1572864
total_active_file 524288
total_unevictable 0
";

/// Separate cpu and cpuacct hierarchies (as on this project's hosts), memory, pids, the named
/// systemd one and a controller-less unified one. `unified` holds a garbage cpu.stat that must
/// never be read.
fn v1_tree(root: &Path) -> Cgroups {
    let rel = CG.trim_start_matches('/');
    write(
        &root.join("cpu").join(rel),
        &[(
            "cpu.stat",
            "nr_periods 40\nnr_throttled 3\nthrottled_time 1500000\nnr_bursts 0\nburst_time 0\n",
        )],
    );
    write(
        &root.join("cpuacct").join(rel),
        &[
            ("cpuacct.usage", "123456789\n"),
            ("cpuacct.stat", "user 7\nsystem 3\n"),
        ],
    );
    write(
        &root.join("memory").join(rel),
        &[
            ("memory.usage_in_bytes", "8388608\n"),
            ("memory.limit_in_bytes", "16777216\n"),
            ("memory.failcnt", "2\n"),
            ("memory.stat", V1_MEMORY_STAT),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
            ),
            ("memory.memsw.usage_in_bytes", "9437184\n"),
            ("memory.memsw.limit_in_bytes", "33554432\n"),
        ],
    );
    write(
        &root.join("pids").join(rel),
        &[("pids.current", "3\n"), ("pids.max", "100\n")],
    );
    write(&root.join("systemd").join(rel), &[]);
    write(&root.join("unified").join(rel), &[("cpu.stat", "garbage")]);
    cgroups(
        Driver::Cgroupfs,
        Layout::Hybrid,
        root,
        vec![
            v1(root, "cpu", &["cpu"]),
            v1(root, "cpuacct", &["cpuacct"]),
            v1(root, "memory", &["memory"]),
            v1(root, "pids", &["pids"]),
            v1(root, "systemd", &["name=systemd"]),
            Hierarchy {
                mount: root.join("unified"),
                kind: Kind::V2 { managed: false },
            },
        ],
    )
}

fn file(root: &Path, hierarchy: &str, name: &str) -> PathBuf {
    root.join(hierarchy)
        .join(CG.trim_start_matches('/'))
        .join(name)
}

#[test]
fn v1_all_controllers() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = v1_tree(tmp.path());
    let s = cg.stats_at(CG).unwrap();
    assert_eq!(
        s.cpu,
        Some(CpuStats {
            usage_ns: 123_456_789,
            user_ns: 70_000_000,
            system_ns: 30_000_000,
            periods: 40,
            throttled_periods: 3,
            throttled_ns: 1_500_000,
        })
    );
    let m = s.memory.unwrap();
    assert_eq!(
        m,
        MemoryStats {
            usage_bytes: 8 << 20,
            working_set_bytes: (8 << 20) - 1_572_864,
            rss_bytes: 4 << 20,
            cache_bytes: 2 << 20,
            mapped_file_bytes: 1 << 20,
            page_faults: 5000,
            major_page_faults: 7,
            limit_bytes: Some(16 << 20),
            swap_usage_bytes: Some(1 << 20),
            swap_limit_bytes: Some(16 << 20),
            failcnt: 2,
            oom_kills: 1,
        }
    );
    assert_eq!(m.available_bytes(), Some((16 << 20) - m.working_set_bytes));
    assert_eq!(
        s.pids,
        Some(PidsStats {
            current: 3,
            limit: Some(100)
        })
    );
}

#[test]
fn v1_combined_cpu_cpuacct_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let dir = root.join("cpu,cpuacct").join(CG.trim_start_matches('/'));
    write(
        &dir,
        &[
            (
                "cpu.stat",
                "nr_periods 1\nnr_throttled 0\nthrottled_time 0\n",
            ),
            ("cpuacct.usage", "5\n"),
            ("cpuacct.stat", "user 0\nsystem 0\n"),
        ],
    );
    let cg = cgroups(
        Driver::Cgroupfs,
        Layout::V1,
        root,
        vec![v1(root, "cpu,cpuacct", &["cpu", "cpuacct"])],
    );
    let s = cg.stats_at(CG).unwrap();
    let cpu = s.cpu.unwrap();
    assert_eq!((cpu.usage_ns, cpu.periods), (5, 1));
    assert_eq!((s.memory, s.pids), (None, None));
}

#[test]
fn v1_unlimited_and_working_set_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v1_tree(root);
    std::fs::write(
        file(root, "memory", "memory.limit_in_bytes"),
        PAGE_ROUNDED_MAX,
    )
    .unwrap();
    std::fs::write(
        file(root, "memory", "memory.memsw.limit_in_bytes"),
        PAGE_ROUNDED_MAX,
    )
    .unwrap();
    // More inactive file pages than usage (the two are read at different moments).
    std::fs::write(
        file(root, "memory", "memory.stat"),
        "total_inactive_file 99999999\n",
    )
    .unwrap();
    std::fs::write(file(root, "pids", "pids.max"), "max\n").unwrap();
    let s = cg.stats_at(CG).unwrap();
    let m = s.memory.unwrap();
    assert_eq!(m.working_set_bytes, 0);
    assert_eq!((m.limit_bytes, m.swap_limit_bytes), (None, None));
    assert_eq!(m.available_bytes(), None);
    assert_eq!(s.pids.unwrap().limit, None);
}

#[test]
fn v1_optional_files_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut cg = v1_tree(root);
    // No swap accounting, an old kernel without oom_kill, and no pids hierarchy at all.
    std::fs::remove_file(file(root, "memory", "memory.memsw.usage_in_bytes")).unwrap();
    std::fs::remove_file(file(root, "memory", "memory.memsw.limit_in_bytes")).unwrap();
    std::fs::write(
        file(root, "memory", "memory.oom_control"),
        "oom_kill_disable 0\nunder_oom 0\n",
    )
    .unwrap();
    cg.hierarchies.retain(|h| !h.has_controller("pids"));
    let s = cg.stats_at(CG).unwrap();
    let m = s.memory.unwrap();
    assert_eq!((m.swap_usage_bytes, m.swap_limit_bytes), (None, None));
    assert_eq!(m.oom_kills, 0);
    assert_eq!(s.pids, None);
    assert!(s.cpu.is_some());
}

#[test]
fn v1_root_like_cgroup_without_pids_counter() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v1_tree(root);
    std::fs::remove_file(file(root, "pids", "pids.current")).unwrap();
    std::fs::remove_file(file(root, "pids", "pids.max")).unwrap();
    assert_eq!(cg.stats_at(CG).unwrap().pids, None);
}

#[test]
fn garbage_is_an_error_naming_the_file() {
    let cases: &[(&str, &str, &str)] = &[
        ("memory", "memory.stat", "garbage"),
        ("memory", "memory.stat", "total_rss lots\n"),
        ("memory", "memory.stat", "total_rss 1 2\n"),
        ("memory", "memory.usage_in_bytes", "abc\n"),
        ("memory", "memory.usage_in_bytes", ""),
        ("memory", "memory.oom_control", "oom_kill -1\n"),
        ("cpu", "cpu.stat", "nr_periods x\n"),
        ("cpuacct", "cpuacct.stat", "user\n"),
        ("pids", "pids.max", "unlimited\n"),
        ("pids", "pids.current", "\u{fffd}"),
    ];
    for (hierarchy, name, text) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let cg = v1_tree(root);
        let path = file(root, hierarchy, name);
        std::fs::write(&path, text).unwrap();
        match cg.stats_at(CG) {
            Err(CgroupError::StatsFile { file, .. }) => assert_eq!(file, path, "{name} {text:?}"),
            other => panic!("{name} {text:?}: {other:?}"),
        }
    }
}

#[test]
fn not_utf8_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v1_tree(root);
    let path = file(root, "cpuacct", "cpuacct.stat");
    std::fs::write(&path, b"user \xff\n").unwrap();
    let err = cg.stats_at(CG).unwrap_err();
    assert!(
        matches!(&err, CgroupError::StatsFile { file, .. } if *file == path),
        "{err}"
    );
}

#[test]
fn files_larger_than_the_first_buffer() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v1_tree(root);
    let mut stat: String = (0..2000).map(|i| format!("padding_{i} {i}\n")).collect();
    stat.push_str("total_rss 777\n");
    assert!(stat.len() > 3 * KEYED_CAPACITY);
    std::fs::write(file(root, "memory", "memory.stat"), stat).unwrap();
    // A one-number file longer than its buffer still parses (or fails) on the whole text.
    std::fs::write(
        file(root, "memory", "memory.failcnt"),
        format!("{}9\n", " ".repeat(VALUE_CAPACITY * 2)),
    )
    .unwrap();
    let m = cg.stats_at(CG).unwrap().memory.unwrap();
    assert_eq!((m.rss_bytes, m.failcnt), (777, 9));
}

#[test]
fn required_file_missing_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v1_tree(root);
    let path = file(root, "memory", "memory.stat");
    std::fs::remove_file(&path).unwrap();
    let err = cg.stats_at(CG).unwrap_err();
    assert!(
        matches!(&err, CgroupError::StatsFile { file, .. } if *file == path),
        "{err}"
    );
}

#[test]
fn missing_cgroup_is_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v1_tree(root);
    let err = cg.stats_at("/berth/pod1/nope").unwrap_err();
    assert!(matches!(err, CgroupError::NotFound { .. }), "{err}");
    // Gone from one hierarchy only (removed while we read, or half-deleted): not found too.
    std::fs::remove_dir_all(root.join("memory/berth")).unwrap();
    match cg.stats_at(CG) {
        Err(CgroupError::NotFound { path }) => {
            assert_eq!(path, root.join("memory").join(CG.trim_start_matches('/')))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn not_found_without_any_stats_hierarchy() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    write(&root.join("systemd/berth/x"), &[]);
    let cg = cgroups(
        Driver::Cgroupfs,
        Layout::V1,
        root,
        vec![v1(root, "systemd", &["name=systemd"])],
    );
    assert_eq!(cg.stats_at("/berth/x").unwrap(), CgroupStats::default());
    assert!(matches!(
        cg.stats_at("/berth/y"),
        Err(CgroupError::NotFound { .. })
    ));
}

#[test]
fn paths_are_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = v1_tree(tmp.path());
    for bad in ["berth/pod1", "/berth/../../etc", "/berth/./pod1", "/a\0b"] {
        let err = cg.stats_at(bad).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidParent { .. }),
            "{bad:?}: {err}"
        );
    }
    // A trailing slash is the same cgroup.
    assert!(cg.stats_at(&format!("{CG}/")).is_ok());
}

#[test]
fn pod_and_container_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v1_tree(root);
    let pod = cg.pod_cgroup("/berth/pod1", "unused").unwrap();
    assert_eq!(
        cg.container_stats(&pod, "c1").unwrap(),
        cg.stats_at(CG).unwrap()
    );
    // The pod directories exist but hold no counter files in this fixture: nothing to report,
    // which is not an error (a real pod cgroup has them all).
    assert_eq!(cg.pod_stats(&pod).unwrap(), CgroupStats::default());
    assert!(matches!(
        cg.container_stats(&pod, "c2"),
        Err(CgroupError::NotFound { .. })
    ));

    // systemd driver: containers are `berth-<id>.scope` in the expanded pod slice.
    let mut cg = cg;
    cg.driver = Driver::Systemd;
    let pod = cg.pod_cgroup("berth-pod1.slice", "unused").unwrap();
    let scope = "/berth.slice/berth-pod1.slice/berth-c1.scope";
    for h in ["cpu", "cpuacct", "memory", "pids"] {
        let from = root.join(h).join(CG.trim_start_matches('/'));
        let to = root.join(h).join(scope.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::rename(from, to).unwrap();
    }
    let s = cg.container_stats(&pod, "c1").unwrap();
    assert_eq!(s.cpu.unwrap().usage_ns, 123_456_789);
}

const V2_MEMORY_STAT: &str = "\
anon 3145728
file 2097152
kernel 262144
kernel_stack 16384
sock 0
shmem 0
file_mapped 1048576
file_dirty 0
inactive_anon 0
active_anon 3145728
inactive_file 1048576
active_file 1048576
pgfault 4242
pgmajfault 12
";

fn v2_tree(root: &Path) -> Cgroups {
    write(
        &root.join(CG.trim_start_matches('/')),
        &[
            (
                "cpu.stat",
                "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\ncore_sched.force_idle_usec 0\n\
                 nr_periods 10\nnr_throttled 2\nthrottled_usec 300\nnr_bursts 0\nburst_usec 0\n",
            ),
            ("memory.current", "6291456\n"),
            ("memory.max", "67108864\n"),
            ("memory.stat", V2_MEMORY_STAT),
            (
                "memory.events",
                "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
            ),
            ("memory.swap.current", "4096\n"),
            ("memory.swap.max", "max\n"),
            ("pids.current", "2\n"),
            ("pids.max", "max\n"),
        ],
    );
    cgroups(
        Driver::Cgroupfs,
        Layout::V2,
        root,
        vec![Hierarchy {
            mount: root.to_path_buf(),
            kind: Kind::V2 { managed: true },
        }],
    )
}

#[test]
fn v2_all_controllers() {
    let tmp = tempfile::tempdir().unwrap();
    let cg = v2_tree(tmp.path());
    let s = cg.stats_at(CG).unwrap();
    assert_eq!(
        s.cpu,
        Some(CpuStats {
            usage_ns: 2_500_000,
            user_ns: 2_000_000,
            system_ns: 500_000,
            periods: 10,
            throttled_periods: 2,
            throttled_ns: 300_000,
        })
    );
    assert_eq!(
        s.memory,
        Some(MemoryStats {
            usage_bytes: 6 << 20,
            working_set_bytes: 5 << 20,
            rss_bytes: 3 << 20,
            cache_bytes: 2 << 20,
            mapped_file_bytes: 1 << 20,
            page_faults: 4242,
            major_page_faults: 12,
            limit_bytes: Some(64 << 20),
            swap_usage_bytes: Some(4096),
            swap_limit_bytes: None,
            failcnt: 5,
            oom_kills: 1,
        })
    );
    assert_eq!(s.memory.unwrap().available_bytes(), Some(59 << 20));
    assert_eq!(
        s.pids,
        Some(PidsStats {
            current: 2,
            limit: None
        })
    );
}

#[test]
fn v2_unlimited_no_swap_floor() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v2_tree(root);
    let dir = root.join(CG.trim_start_matches('/'));
    std::fs::write(dir.join("memory.max"), "max\n").unwrap();
    std::fs::write(dir.join("memory.stat"), "inactive_file 7340032\n").unwrap();
    std::fs::remove_file(dir.join("memory.swap.current")).unwrap();
    std::fs::remove_file(dir.join("memory.swap.max")).unwrap();
    let m = cg.stats_at(CG).unwrap().memory.unwrap();
    assert_eq!(m.working_set_bytes, 0);
    assert_eq!(m.limit_bytes, None);
    assert_eq!(m.available_bytes(), None);
    assert_eq!((m.swap_usage_bytes, m.swap_limit_bytes), (None, None));
}

#[test]
fn v2_controllers_not_enabled() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v2_tree(root);
    let dir = root.join(CG.trim_start_matches('/'));
    // Only the core files: no memory/pids controller, cpu.stat without throttling keys.
    for f in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    write(
        &dir,
        &[(
            "cpu.stat",
            "usage_usec 10\nuser_usec 6\nsystem_usec 4\ncore_sched.force_idle_usec 0\n",
        )],
    );
    let s = cg.stats_at(CG).unwrap();
    let cpu = s.cpu.unwrap();
    assert_eq!(
        (cpu.usage_ns, cpu.periods, cpu.throttled_ns),
        (10_000, 0, 0)
    );
    assert_eq!((s.memory, s.pids), (None, None));
}

#[test]
fn v2_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let cg = v2_tree(root);
    assert!(matches!(
        cg.stats_at("/berth/pod1/gone"),
        Err(CgroupError::NotFound { .. })
    ));
    let events = root.join(CG.trim_start_matches('/')).join("memory.events");
    std::fs::write(&events, "max five\n").unwrap();
    match cg.stats_at(CG) {
        Err(CgroupError::StatsFile { file, reason }) => {
            assert_eq!(file, events);
            assert!(reason.contains("five"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn available_bytes_saturates() {
    let m = MemoryStats {
        working_set_bytes: 10,
        limit_bytes: Some(4),
        ..Default::default()
    };
    assert_eq!(m.available_bytes(), Some(0));
}
