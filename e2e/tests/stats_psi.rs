//! Pressure stall information in ContainerStats and PodSandboxStats (cri-api 1.34+): CPU,
//! memory and IO PSI of the container's and the pod's cgroup2 directory (on this hybrid host,
//! the unified hierarchy), checked against the kernel's own pressure files read around the RPC.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use berth_cri_api::v1 as cri;
use berth_e2e::containers::*;
use berth_e2e::workload::*;

/// The cgroup2 directory of `pid` (its `0::` line), if the host has PSI there.
fn cgroup2_dir(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(|root| PathBuf::from(root).join(rel.trim_start_matches('/')))
        .find(|dir| dir.join("cpu.pressure").is_file())
}

/// `some` total of a pressure file, microseconds.
fn some_total_us(file: PathBuf) -> u64 {
    let text = std::fs::read_to_string(&file).unwrap();
    text.lines()
        .find(|l| l.starts_with("some "))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no some total in {}: {text}", file.display()))
}

fn check_psi(what: &str, psi: Option<&cri::PsiStats>) -> u64 {
    let psi = psi.unwrap_or_else(|| panic!("{what}: no PSI"));
    for data in [psi.some.as_ref(), psi.full.as_ref()] {
        let d = data.unwrap_or_else(|| panic!("{what}: {psi:?}"));
        for avg in [d.avg10, d.avg60, d.avg300] {
            assert!((0.0..=100.0).contains(&avg), "{what}: {psi:?}");
        }
    }
    psi.some.as_ref().map(|d| d.total).unwrap_or_default()
}

#[tokio::test]
async fn container_and_pod_stats_carry_the_kernels_pressure() {
    let berthd = Rig::start("statspsi").await;
    pull(&berthd, &busybox()).await;
    let pod = Pod::run(&berthd, "statspsi").await;
    // CPU for pressure and a file written and synced for IO.
    let id = run(
        &berthd,
        &pod,
        shell(
            "pressured",
            "while true; do dd if=/dev/zero of=/f bs=64k count=16 conv=fsync 2>/dev/null; done",
        ),
    )
    .await;
    let pid = pid(&berthd, &id).await;
    let Some(dir) = cgroup2_dir(pid) else {
        // No PSI on this kernel: the fields must then be absent, not made up.
        let stats = container_stats(&berthd, &id).await.unwrap();
        assert!(stats.cpu.as_ref().and_then(|c| c.psi.as_ref()).is_none());
        assert!(stats.io.is_none());
        stop_and_remove(&berthd, &id).await;
        pod.remove(&berthd).await;
        berthd.finish();
        return;
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let before = some_total_us(dir.join("cpu.pressure"));
    let stats = container_stats(&berthd, &id).await.unwrap();
    let after = some_total_us(dir.join("cpu.pressure"));
    let cpu_total = check_psi("cpu", stats.cpu.as_ref().and_then(|c| c.psi.as_ref()));
    eprintln!(
        "{}: cpu some {before}..{after} µs, CRI {cpu_total} ns",
        dir.display()
    );
    // CRI counts nanoseconds, the kernel microseconds; the RPC read between the two.
    assert!(
        (before * 1000..=after * 1000).contains(&cpu_total),
        "cpu some total {cpu_total} ns, kernel {before}..{after} µs"
    );
    check_psi("memory", stats.memory.as_ref().and_then(|m| m.psi.as_ref()));
    let io = stats.io.as_ref().expect("io usage");
    assert!(io.timestamp > 0);
    check_psi("io", io.psi.as_ref());

    let pod_stats = pod_stats(&berthd, &pod.id).await.unwrap();
    let linux = pod_stats.linux.as_ref().expect("linux pod stats");
    let pod_cpu = check_psi("pod cpu", linux.cpu.as_ref().and_then(|c| c.psi.as_ref()));
    // The pod's cgroup contains the container's: its stall time is at least the container's
    // as read just before.
    assert!(
        pod_cpu > 0 || cpu_total == 0,
        "pod {pod_cpu} container {cpu_total}"
    );
    check_psi("pod io", linux.io.as_ref().and_then(|i| i.psi.as_ref()));

    stop_and_remove(&berthd, &id).await;
    pod.remove(&berthd).await;
    berthd.finish();
}
