//! Pod cgroups, resources and traffic shaping, with the cgroupfs and systemd drivers.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use berth_cri_api::v1 as cri;
use berth_e2e::pods::*;
use berth_e2e::{Berthd, Options};

/// The pod's cgroup in one v1 controller (this host is hybrid) or the unified hierarchy.
fn cgroup_file(info: &serde_json::Value, controller: &str, file: &str) -> Option<String> {
    let path = info["cgroup"]["path"]
        .as_str()?
        .trim_start_matches('/')
        .to_string();
    [
        format!("/sys/fs/cgroup/{controller}/{path}/{file}"),
        format!("/sys/fs/cgroup/{path}/{file}"),
    ]
    .iter()
    .find_map(|p| std::fs::read_to_string(p).ok())
    .map(|s| s.trim().to_string())
}

#[tokio::test]
async fn pod_resources_overhead_and_bandwidth_are_applied() {
    let berthd = Berthd::start("podres").await.unwrap();
    let mut config = pod_config(&berthd, "res");
    let linux = config.linux.as_mut().unwrap();
    linux.resources = Some(cri::LinuxContainerResources {
        cpu_shares: 512,
        cpu_period: 100_000,
        cpu_quota: 50_000,
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    });
    linux.overhead = Some(cri::LinuxContainerResources {
        cpu_shares: 100,
        cpu_period: 100_000,
        cpu_quota: 10_000,
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    });
    config
        .annotations
        .insert("kubernetes.io/ingress-bandwidth".into(), "10M".into());
    let id = run_pod(&berthd, config).await.unwrap();
    let info = pod_info(&berthd, &id).await;
    assert_eq!(
        cgroup_file(&info, "cpu", "cpu.shares").as_deref(),
        Some("612"),
        "{info}"
    );
    assert_eq!(
        cgroup_file(&info, "cpu", "cpu.cfs_quota_us").as_deref(),
        Some("60000")
    );
    assert_eq!(
        cgroup_file(&info, "memory", "memory.limit_in_bytes"),
        Some((80u64 << 20).to_string())
    );
    // The bandwidth plugin shapes the pod's traffic on the host side of its veth.
    let qdiscs = std::process::Command::new("tc")
        .args(["qdisc", "show"])
        .output()
        .unwrap();
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(
        qdiscs.contains("tbf") && qdiscs.contains("rate 10Mbit"),
        "{qdiscs}"
    );
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}

#[tokio::test]
async fn systemd_driver_puts_the_pod_in_its_slice() {
    let options = Options {
        dropin: "[cgroup]\ndriver = \"systemd\"\n".into(),
        ..Options::default()
    };
    let berthd = Berthd::start_with("podslice", options).await.unwrap();
    let mut config = pod_config(&berthd, "slice");
    let uid = berthd.test_id();
    config.linux.as_mut().unwrap().cgroup_parent = format!("berthe2e-pod{uid}.slice");
    let id = run_pod(&berthd, config).await.unwrap();
    let info = pod_info(&berthd, &id).await;
    assert_eq!(
        info["cgroup"]["path"],
        format!("/berthe2e.slice/berthe2e-pod{uid}.slice"),
        "{info}"
    );
    assert!(cgroup_file(&info, "cpu", "cpu.shares").is_some(), "{info}");
    // kubelet asks the runtime which driver to use.
    let mut rt = berthd.runtime().await.unwrap();
    let driver = rt
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner()
        .linux
        .unwrap()
        .cgroup_driver;
    assert_eq!(driver, cri::CgroupDriver::Systemd as i32);
    stop_pod(&berthd, &id).await.unwrap();
    remove_pod(&berthd, &id).await.unwrap();
    berthd.finish();
}
