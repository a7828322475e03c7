//! The pure cgroup v2 code path. On a hybrid host (like this project's machines) the cgroup2
//! mount at /sys/fs/cgroup/unified stands in for a v2 root; on a pure v2 host the real root is
//! used. Skipped on pure v1.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use berth_cgroup::{Cgroups, Driver, Layout, PodResources};
use common::{Guard, read_trim, token, v2_root};

#[test]
fn v2_create_apply_remove() {
    let Some(root) = v2_root() else {
        eprintln!("no cgroup2 mount: skipped");
        return;
    };
    let cg = Cgroups::with_root(Driver::Cgroupfs, root).unwrap();
    assert_eq!(cg.layout(), Layout::V2);
    let top = format!("berth-cgtest-{}", token());
    let mut guard = Guard::new(top.clone());
    // Enabling controllers touches the root's subtree_control: put it back afterwards.
    common::restore_subtree_control(&mut guard, root);

    let mut pod = cg.pod_cgroup(&format!("/{top}/pod1"), "x").unwrap();
    let paths = pod.fs_paths();
    assert_eq!(paths, vec![Path::new(root).join(&top).join("pod1")]);
    let available = read_trim(Path::new(root).join("cgroup.controllers"));
    let has = |c: &str| available.split_whitespace().any(|a| a == c);
    let huge = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists() && has("hugetlb");

    let mut resources = PodResources {
        cpu_quota: has("cpu").then_some(50_000),
        cpu_period: has("cpu").then_some(100_000),
        memory_limit: has("memory").then_some(64 << 20),
        ..Default::default()
    };
    if huge {
        resources.hugepage_limits = vec![("2MB".into(), 4 << 21)];
    }
    if has("memory") {
        resources.unified.insert("memory.high".into(), "max".into());
    }
    assert!(cg.ensure(&mut pod, &resources).unwrap());
    let dir = &paths[0];
    assert!(dir.is_dir());
    // Controllers are enabled down to the pod cgroup's parent.
    let parent_subtree = read_trim(Path::new(root).join(&top).join("cgroup.subtree_control"));
    for c in available.split_whitespace() {
        assert!(
            parent_subtree.contains(c),
            "{c} not enabled: {parent_subtree:?}"
        );
    }
    if has("cpu") {
        assert_eq!(read_trim(dir.join("cpu.max")), "50000 100000");
    }
    if has("memory") {
        assert_eq!(read_trim(dir.join("memory.max")), (64u64 << 20).to_string());
    }
    if huge {
        assert_eq!(
            read_trim(dir.join("hugetlb.2MB.max")),
            (4u64 << 21).to_string()
        );
    } else {
        eprintln!("hugetlb not available on {root}: hugepage limit not checked");
    }

    cg.remove(&pod).unwrap();
    assert!(!Path::new(root).join(&top).exists());
    cg.remove(&pod).unwrap();
}
