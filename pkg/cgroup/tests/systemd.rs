//! systemd driver: slice naming, and on a host without systemd (like CI's) the filesystem
//! fallback creating and removing the expanded slice path for real.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use berth_cgroup::{CgroupError, Cgroups, Driver, Layout, PodResources};
use common::{Guard, dir_in, read_trim, token};

fn cgroups() -> Cgroups {
    Cgroups::new(Driver::Systemd).expect("detect cgroups")
}

#[test]
fn driver_from_config() {
    assert_eq!("systemd".parse::<Driver>().unwrap(), Driver::Systemd);
    assert_eq!("cgroupfs".parse::<Driver>().unwrap(), Driver::Cgroupfs);
    assert!(matches!(
        "Systemd".parse::<Driver>(),
        Err(CgroupError::InvalidDriver { .. })
    ));
    assert_eq!(Driver::Systemd.to_string(), "systemd");
}

#[test]
fn slice_names_expand_like_systemd() {
    let cg = cgroups();
    let table = [
        (
            "kubepods-burstable-pod1.slice",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice",
        ),
        ("kubepods-pod2.slice", "/kubepods.slice/kubepods-pod2.slice"),
        ("single.slice", "/single.slice"),
    ];
    for (slice, path) in table {
        let pod = cg.pod_cgroup(slice, "id").expect(slice);
        assert_eq!(pod.path, path);
        assert_eq!(pod.slice.as_deref(), Some(slice));
    }
    for bad in [
        "/kubepods/burstable/pod1",
        "kubepods",
        "kubepods--pod1.slice",
        "-kubepods.slice",
        "kubepods-.slice",
        "-.slice",
        ".slice",
        "kube/pods.slice",
        "kube\0pods.slice",
    ] {
        let err = cg.pod_cgroup(bad, "id").expect_err(bad);
        assert!(
            matches!(err, CgroupError::InvalidParent { .. }),
            "{bad:?}: {err}"
        );
    }
    let pod = cg.pod_cgroup("", "abc").unwrap();
    assert_eq!(pod.path, "/berth.slice/berth-abc.slice");
    assert_eq!(pod.slice.as_deref(), Some("berth-abc.slice"));
}

#[test]
fn fallback_creates_and_removes_slice_path() {
    let cg = cgroups();
    let t = token();
    // `-` nests slices, so the test's own level is `berth-cgtest<t>.slice` under `berth.slice`.
    let own = format!("berth.slice/berth-cgtest{t}.slice");
    let mut guard = Guard::new(own.clone());
    guard.parents_if_empty.push("berth.slice".into());
    let slice = format!("berth-cgtest{t}-pod1.slice");
    let mut pod = cg.pod_cgroup(&slice, "sb").unwrap();
    assert_eq!(pod.path, format!("/{own}/{slice}"));

    let systemd_running = std::path::Path::new("/run/systemd/system").is_dir();
    assert_eq!(pod.runc_systemd, systemd_running);
    if !systemd_running {
        assert_eq!(
            pod.container_cgroups_path("c-1"),
            format!("/{own}/{slice}/berth-c\\x2d1.scope")
        );
    } else {
        assert_eq!(
            pod.container_cgroups_path("c1"),
            format!("{slice}:berth:c1")
        );
    }

    let resources = PodResources {
        cpu_shares: Some(300),
        memory_limit: Some(32 << 20),
        ..Default::default()
    };
    assert!(cg.ensure(&mut pod, &resources).unwrap());
    let paths = pod.fs_paths();
    for p in &paths {
        assert!(p.is_dir(), "{}", p.display());
    }
    if cg.layout() != Layout::V2 {
        let cpu = dir_in(&paths, "cpu").unwrap();
        assert!(cpu.ends_with(format!("{own}/{slice}")));
        assert_eq!(read_trim(cpu.join("cpu.shares")), "300");
    }
    cg.remove(&pod).unwrap();
    let left: Vec<PathBuf> = common::hierarchy_mounts()
        .into_iter()
        .map(|m| m.join(&own))
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    cg.remove(&pod).unwrap();
}
