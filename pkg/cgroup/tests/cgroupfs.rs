//! cgroupfs driver against the real cgroups of this host (root required).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use berth_cgroup::{CgroupError, Cgroups, Driver, Layout, PodResources};
use common::{Guard, dir_in, read_trim, token};

fn cgroups() -> Cgroups {
    Cgroups::new(Driver::Cgroupfs).expect("detect cgroups")
}

fn res(shares: u64, quota: i64, mem: i64) -> PodResources {
    PodResources {
        cpu_shares: Some(shares),
        cpu_quota: Some(quota),
        cpu_period: Some(100_000),
        memory_limit: Some(mem),
        ..Default::default()
    }
}

/// All directories under `rel` in every hierarchy, for "nothing left" checks.
fn leftovers(rel: &str) -> Vec<PathBuf> {
    common::hierarchy_mounts()
        .into_iter()
        .map(|m| m.join(rel))
        .filter(|p| p.exists())
        .collect()
}

#[test]
fn create_apply_overhead_remove() {
    assert!(common::is_root(), "these tests need root");
    let cg = cgroups();
    let top = format!("berth-cgtest-{}", token());
    let _guard = Guard::new(top.clone());
    let mut pod = cg
        .pod_cgroup(&format!("/{top}/pod{}", token()), "unused")
        .unwrap();
    let paths = pod.fs_paths();
    assert!(!cg.exists(&pod));

    let resources = res(512, 50_000, 64 << 20).with_overhead(&res(100, 10_000, 16 << 20));
    let created = cg.ensure(&mut pod, &resources).expect("ensure");
    assert!(created && pod.created_by_berth());
    assert!(cg.exists(&pod));
    for p in &paths {
        assert!(p.is_dir(), "{} missing", p.display());
    }
    // The created ancestors are recorded too.
    assert!(pod.created_dirs().iter().any(|d| d.ends_with(&top)));

    match cg.layout() {
        Layout::V1 | Layout::Hybrid => {
            // Like runc's fs manager: the name=systemd hierarchy, and on hybrid the unified one.
            assert!(dir_in(&paths, "systemd").is_some());
            if cg.layout() == Layout::Hybrid {
                assert!(dir_in(&paths, "unified").is_some(), "{paths:?}");
            }
            let cpu = dir_in(&paths, "cpu").expect("cpu hierarchy");
            assert_eq!(read_trim(cpu.join("cpu.shares")), "612");
            assert_eq!(read_trim(cpu.join("cpu.cfs_quota_us")), "60000");
            assert_eq!(read_trim(cpu.join("cpu.cfs_period_us")), "100000");
            let mem = dir_in(&paths, "memory").expect("memory hierarchy");
            assert_eq!(
                read_trim(mem.join("memory.limit_in_bytes")),
                (80u64 << 20).to_string()
            );
            // A fresh v1 cpuset cgroup got its parent's cpus/mems, so runc can put tasks in it.
            if let Some(cpuset) = dir_in(&paths, "cpuset") {
                assert!(!read_trim(cpuset.join("cpuset.cpus")).is_empty());
                assert!(!read_trim(cpuset.join("cpuset.mems")).is_empty());
            }
        }
        Layout::V2 => {
            let dir = &paths[0];
            if dir.join("cpu.max").exists() {
                assert_eq!(read_trim(dir.join("cpu.max")), "60000 100000");
            }
            if dir.join("memory.max").exists() {
                assert_eq!(read_trim(dir.join("memory.max")), (80u64 << 20).to_string());
            }
        }
    }

    // ensure again: idempotent, creates nothing new.
    let before = pod.created_dirs().to_vec();
    assert!(!cg.ensure(&mut pod, &resources).unwrap());
    assert_eq!(pod.created_dirs(), before.as_slice());

    // The sandbox record persists the PodCgroup; removal works from the reloaded record.
    let json = serde_json::to_string(&pod).unwrap();
    let pod: berth_cgroup::PodCgroup = serde_json::from_str(&json).unwrap();
    assert!(pod.created_by_berth());
    cg.remove(&pod).expect("remove");
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
    assert!(!cg.exists(&pod));
    cg.remove(&pod).expect("remove twice");
}

#[test]
fn kubelet_precreated_cgroup_is_kept() {
    let cg = cgroups();
    let top = format!("berth-cgtest-{}", token());
    let _guard = Guard::new(top.clone());
    let mut pod = cg.pod_cgroup(&format!("/{top}/podk"), "x").unwrap();
    for p in pod.fs_paths() {
        std::fs::create_dir_all(&p).unwrap();
    }
    let created = cg.ensure(&mut pod, &res(256, 0, 0)).unwrap();
    assert!(!created && !pod.created_by_berth());
    assert!(pod.created_dirs().is_empty());
    if let Some(cpu) = dir_in(&pod.fs_paths(), "cpu") {
        assert_eq!(read_trim(cpu.join("cpu.shares")), "256");
    }
    cg.remove(&pod).unwrap();
    assert!(cg.exists(&pod), "kubelet's cgroup must survive remove");
}

#[test]
fn non_empty_cgroup_is_busy_and_kept() {
    let cg = cgroups();
    let top = format!("berth-cgtest-{}", token());
    let mut guard = Guard::new(top.clone());
    let mut pod = cg.pod_cgroup(&format!("/{top}/podb"), "x").unwrap();
    cg.ensure(&mut pod, &PodResources::default()).unwrap();
    let paths = pod.fs_paths();
    let target = dir_in(&paths, "pids")
        .or_else(|| dir_in(&paths, "memory"))
        .unwrap_or_else(|| paths[0].clone());

    // A process inside.
    let child = Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id();
    guard.children.push(child);
    std::fs::write(target.join("cgroup.procs"), pid.to_string()).expect("move sleep");
    match cg.remove(&pod) {
        Err(CgroupError::Busy { path, detail }) => {
            assert_eq!(path, target);
            assert!(detail.contains(&pid.to_string()), "{detail}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    for p in &paths {
        assert!(p.is_dir(), "{} was deleted", p.display());
    }
    for mut c in guard.children.drain(..) {
        c.kill().unwrap();
        c.wait().unwrap();
    }

    // A child cgroup (a container runc has not deleted) is refused as well.
    let sub = target.join("leftover-container");
    std::fs::create_dir(&sub).unwrap();
    let err = cg.remove(&pod).unwrap_err();
    assert!(matches!(err, CgroupError::Busy { .. }), "{err}");
    assert!(err.to_string().contains("leftover-container"), "{err}");
    std::fs::remove_dir(&sub).unwrap();

    cg.remove(&pod).unwrap();
    assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
}

/// What RemovePodSandbox does before it removes the pod cgroup: an init a crash left unrecorded
/// (in the berth-init child, in every hierarchy) and a stray process in the pod cgroup Berth
/// made are killed, and then the removal succeeds.
#[test]
fn leftovers_are_killed_so_the_cgroup_can_go() {
    let cg = cgroups();
    let top = format!("berth-cgtest-{}", token());
    let mut guard = Guard::new(top.clone());
    let mut pod = cg.pod_cgroup(&format!("/{top}/podk"), "x").unwrap();
    cg.ensure(&mut pod, &PodResources::default()).unwrap();
    assert_eq!(cg.kill_leftovers(&pod).unwrap(), Vec::<i32>::new());

    let mut spawn = || {
        let child = Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        guard.children.push(child);
        pid
    };
    let init = spawn();
    for procs in cg.init_procs_files(&pod).unwrap() {
        std::fs::write(procs, init.to_string()).expect("move into berth-init");
    }
    let stray = spawn();
    std::fs::write(pod.fs_paths()[0].join("cgroup.procs"), stray.to_string()).expect("move");
    assert!(matches!(cg.remove(&pod), Err(CgroupError::Busy { .. })));

    let mut killed = cg.kill_leftovers(&pod).unwrap();
    killed.sort_unstable();
    let mut expected = vec![init as i32, stray as i32];
    expected.sort_unstable();
    assert_eq!(killed, expected);
    for mut child in guard.children.drain(..) {
        let status = child.wait().unwrap();
        assert!(!status.success(), "{status:?}");
    }
    cg.remove(&pod).unwrap();
    assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
}

#[test]
fn shared_created_ancestor_stays_while_in_use() {
    let cg = cgroups();
    let top = format!("berth-cgtest-{}", token());
    let _guard = Guard::new(top.clone());
    let mut a = cg.pod_cgroup(&format!("/{top}/poda"), "a").unwrap();
    let mut b = cg.pod_cgroup(&format!("/{top}/podb"), "b").unwrap();
    assert!(cg.ensure(&mut a, &PodResources::default()).unwrap());
    assert!(cg.ensure(&mut b, &PodResources::default()).unwrap());
    cg.remove(&a).unwrap();
    assert!(cg.exists(&b) && !cg.exists(&a));
    cg.remove(&b).unwrap();
    assert!(!cg.exists(&b));
}

#[test]
fn failed_apply_rolls_back_and_unsupported_creates_nothing() {
    let cg = cgroups();
    let top = format!("berth-cgtest-{}", token());
    let _guard = Guard::new(top.clone());
    let mut pod = cg.pod_cgroup(&format!("/{top}/podf"), "x").unwrap();
    let bad = PodResources {
        cpuset_cpus: Some("4095".into()),
        ..Default::default()
    };
    let err = cg.ensure(&mut pod, &bad).unwrap_err();
    assert!(matches!(err, CgroupError::Libcgroups { .. }), "{err}");
    assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
    assert!(pod.created_dirs().is_empty());

    if cg.layout() != Layout::V2 {
        let mut unified = PodResources::default();
        unified.unified.insert("memory.high".into(), "max".into());
        let err = cg.ensure(&mut pod, &unified).unwrap_err();
        assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
        assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
        if !std::path::Path::new("/sys/fs/cgroup/hugetlb").exists() {
            let huge = PodResources {
                hugepage_limits: vec![("2MB".into(), 2 << 20)],
                ..Default::default()
            };
            let err = cg.ensure(&mut pod, &huge).unwrap_err();
            assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
        }
    }
}

#[test]
fn default_parent_and_configured_parent() {
    let cg = cgroups();
    assert_eq!(cg.pod_cgroup("", "abc").unwrap().path, "/berth/abc");
    let top = format!("berth-cgtest-{}", token());
    let _guard = Guard::new(top.clone());
    let cg = cg.with_default_parent(&format!("/{top}/pods")).unwrap();
    let mut pod = cg.pod_cgroup("", "sb1").unwrap();
    assert_eq!(pod.path, format!("/{top}/pods/sb1"));
    assert_eq!(
        pod.container_cgroups_path("c1"),
        format!("/{top}/pods/sb1/c1")
    );
    assert!(cg.ensure(&mut pod, &PodResources::default()).unwrap());
    cg.remove(&pod).unwrap();
    assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
    assert!(cgroups().with_default_parent("relative").is_err());
}

#[test]
fn parent_validation_table() {
    let cg = cgroups();
    for ok in ["/kubepods/burstable/pod1", "/kubepods/pod2/"] {
        cg.pod_cgroup(ok, "id").expect(ok);
    }
    for bad in [
        "kubepods",
        "kubepods-pod1.slice",
        "/",
        "/kubepods/../../etc",
        "/kubepods/./x",
        "/kube\0pods",
        "/a//b",
    ] {
        let err = cg.pod_cgroup(bad, "id").expect_err(bad);
        assert!(
            matches!(err, CgroupError::InvalidParent { .. }),
            "{bad:?}: {err}"
        );
    }
    for bad_id in ["", "..", "a/b"] {
        assert!(matches!(
            cg.pod_cgroup("", bad_id),
            Err(CgroupError::InvalidSandboxId { .. })
        ));
    }
}

/// What `plan` records before any mkdir is exactly what `ensure` then makes, and `remove` of a
/// plan whose directories were made only in part (a crash inside `ensure`) removes what exists.
#[test]
fn plan_records_the_directories_before_they_exist() {
    let cg = cgroups();
    let top = format!("berth-cgtest-{}", token());
    let _guard = Guard::new(top.clone());
    let mut pod = cg.pod_cgroup(&format!("/{top}/podp"), "p").unwrap();
    assert!(cg.plan(&mut pod).unwrap());
    let planned = pod.created_dirs().to_vec();
    assert!(!planned.is_empty() && planned.iter().all(|d| !d.exists()));
    assert!(planned.iter().any(|d| d.ends_with(&top)));
    // As if berthd died after the first hierarchy's mkdirs.
    let first = &planned[..2];
    for d in first {
        std::fs::create_dir(d).unwrap();
    }
    cg.remove(&pod).unwrap();
    assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
    // A full plan + ensure: ensure makes exactly what was planned.
    let mut pod = cg.pod_cgroup(&format!("/{top}/podq"), "q").unwrap();
    cg.plan(&mut pod).unwrap();
    let planned = pod.created_dirs().to_vec();
    assert!(cg.ensure(&mut pod, &PodResources::default()).unwrap());
    assert_eq!(pod.created_dirs(), planned.as_slice());
    // Nothing left to plan once it exists.
    let mut again = cg.pod_cgroup(&format!("/{top}/podq"), "q").unwrap();
    assert!(!cg.plan(&mut again).unwrap());
    cg.remove(&pod).unwrap();
    assert_eq!(leftovers(&top), Vec::<PathBuf>::new());
}
