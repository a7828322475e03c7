//! berth-init, PID 1 of a pod's shared PID namespace, lives in the pod's cgroup.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_e2e::pods::*;
use berth_e2e::{Berthd, Options};

/// Each line of /proc/<pid>/cgroup as (hierarchy, path).
fn cgroups_of(pid: i64) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?;
            let controllers = parts.next()?;
            Some((format!("{id}:{controllers}"), parts.next()?.to_string()))
        })
        .collect()
}

/// Runs a pod with a shared PID namespace, checks that its init sits in `<pod>/berth-init` in
/// every hierarchy (and so nowhere in berthd's cgroup), then removes it right away: removal must
/// wait for the init to die before it removes the cgroup, and leave nothing behind.
async fn init_is_in_the_pod_cgroup(berthd: Berthd, mut config: cri::PodSandboxConfig) {
    namespace_options(&mut config).pid = cri::NamespaceMode::Pod as i32;
    let id = run_pod(&berthd, config).await.unwrap();
    let info = pod_info(&berthd, &id).await;
    let pid = info["init"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("{info}"));
    let pod_path = info["cgroup"]["path"]
        .as_str()
        .unwrap_or_else(|| panic!("{info}"));
    let expected = format!("{pod_path}/berth-init");
    let cgroups = cgroups_of(pid);
    assert!(!cgroups.is_empty());
    let berthd_cgroups = cgroups_of(i64::from(berthd.pid().unwrap()));
    for (hierarchy, path) in &cgroups {
        // Hierarchies berth does not manage (none on the hosts we test) would stay where
        // berthd is; every one it manages must hold the init in the pod's cgroup.
        if berthd_cgroups.contains(&(hierarchy.clone(), path.clone())) {
            panic!("berth-init is still in berthd's cgroup {hierarchy}:{path}: {cgroups:?}");
        }
        assert_eq!(path, &expected, "{hierarchy} in {cgroups:?}");
    }
    // Remove without stopping first (kubelet may do that): the init is killed and its cgroup
    // removed with the pod's.
    remove_pod(&berthd, &id).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z")) {
        assert!(
            std::time::Instant::now() < deadline,
            "init still running after removal"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    berthd.finish();
}

#[tokio::test]
async fn pod_init_runs_in_the_pod_cgroup_cgroupfs() {
    let berthd = Berthd::start("initcg").await.unwrap();
    let config = pod_config(&berthd, "initcg");
    init_is_in_the_pod_cgroup(berthd, config).await;
}

#[tokio::test]
async fn pod_init_runs_in_the_pod_cgroup_systemd() {
    let options = Options {
        dropin: "[cgroup]\ndriver = \"systemd\"\n".into(),
        ..Options::default()
    };
    let berthd = Berthd::start_with("initslice", options).await.unwrap();
    let mut config = pod_config(&berthd, "initslice");
    let uid = berthd.test_id();
    config.linux.as_mut().unwrap().cgroup_parent = format!("berthe2e-pod{uid}.slice");
    init_is_in_the_pod_cgroup(berthd, config).await;
}
