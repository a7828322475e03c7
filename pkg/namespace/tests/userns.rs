//! Pod user namespaces and idmapped mounts against the real kernel (run as root).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use berth_namespace::{
    IdMapping, NamespaceError, NsKind, PinRequest, USER_NS_FILE, UserNamespaceMappings, is_pinned,
    mount_idmapped, new_user_namespace, pin, probe_idmapped_mounts, read_id_map, unmount_all,
    unpin,
};
use common::*;

const HOST_ID: u32 = 65536 * 7;

fn ns_inode(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat ns").ino()
}

#[test]
fn pin_with_user_namespace_then_unpin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pod/ns");
    let maps = UserNamespaceMappings::single(HOST_ID, 65536);
    let sysctls = BTreeMap::from([(
        "net.ipv4.ip_unprivileged_port_start".to_owned(),
        "77".to_owned(),
    )]);
    let pinned = pin(&PinRequest {
        dir: &dir,
        kinds: &NsKind::ALL,
        hostname: Some("userns-pod"),
        sysctls: &sysctls,
        userns: Some(&maps),
    })
    .expect("pin with userns");
    let user = pinned.user().expect("user ns pinned").to_path_buf();
    assert_eq!(user, dir.join(USER_NS_FILE));
    assert!(is_pinned(&user));
    assert_ne!(ns_inode(&user), ns_inode(Path::new("/proc/self/ns/user")));
    for kind in NsKind::ALL {
        assert!(is_pinned(pinned.path(kind).unwrap()), "{kind}");
    }

    // A process that joins the pinned namespaces sees the mapping, the hostname, the sysctl
    // and a loopback that is up; its ids are the mapped ones.
    let user_arg = format!("--user={}", user.display());
    let net_arg = format!("--net={}", dir.join("net").display());
    let uts_arg = format!("--uts={}", dir.join("uts").display());
    let out = nsenter(&[
        &user_arg,
        &net_arg,
        &uts_arg,
        "--",
        "sh",
        "-c",
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; hostname; \
         cat /proc/sys/net/ipv4/ip_unprivileged_port_start; cat /sys/class/net/lo/operstate 2>/dev/null || ip -o link show lo",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let want = format!("0 {HOST_ID} 65536");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>().join(" "),
        want,
        "{out}"
    );
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>().join(" "),
        want,
        "{out}"
    );
    assert_eq!(lines[2], "0", "{out}");
    assert_eq!(lines[3], "userns-pod", "{out}");
    assert_eq!(lines[4], "77", "{out}");

    // The pinned net namespace is owned by the pinned user namespace: a child of it (spawned
    // by nsenter) reports the mapping through /proc/<pid>/uid_map, read from the host.
    let mut child = Command::new("nsenter")
        .args([&user_arg, &net_arg, "--", "sleep", "30"])
        .spawn()
        .expect("spawn");
    let mut seen = Vec::new();
    for _ in 0..100 {
        // nsenter execs sleep in place: same pid.
        let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap_or_default();
        if exe.ends_with("sleep") {
            seen = read_id_map(Path::new(&format!("/proc/{}/uid_map", child.id()))).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        seen,
        vec![IdMapping {
            container_id: 0,
            host_id: HOST_ID,
            length: 65536
        }]
    );
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains(&HOST_ID.to_string()), "{uid_line}");

    unpin(&dir).expect("unpin");
    assert!(!dir.exists());
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn user_namespace_needs_valid_mappings_and_other_kinds() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let bad = UserNamespaceMappings::single(0, 65536);
    let none = BTreeMap::new();
    let err = pin(&PinRequest {
        dir: &dir,
        kinds: &NsKind::ALL,
        hostname: None,
        sysctls: &none,
        userns: Some(&bad),
    })
    .unwrap_err();
    assert!(
        matches!(err, NamespaceError::InvalidIdMappings { .. }),
        "{err}"
    );
    let good = UserNamespaceMappings::single(HOST_ID, 65536);
    let err = pin(&PinRequest {
        dir: &dir,
        kinds: &[],
        hostname: None,
        sysctls: &none,
        userns: Some(&good),
    })
    .unwrap_err();
    assert!(
        matches!(err, NamespaceError::InconsistentNamespaces(_)),
        "{err}"
    );
    // A sysctl the kernel refuses fails the pin and rolls everything back, child included.
    let err = pin(&PinRequest {
        dir: &dir,
        kinds: &NsKind::ALL,
        hostname: None,
        sysctls: &BTreeMap::from([("net.ipv4.no_such_thing".to_owned(), "1".to_owned())]),
        userns: Some(&good),
    })
    .unwrap_err();
    assert!(matches!(err, NamespaceError::Sysctl { .. }), "{err}");
    assert!(!dir.exists());
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn idmapped_mount_shows_and_stores_mapped_ids() {
    probe_idmapped_mounts(Path::new("/var/tmp")).expect("idmapped mounts supported");
    let tmp = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::create_dir_all(&dst).unwrap();
    std::fs::write(src.join("f"), "x").unwrap();
    let userns = new_user_namespace(&UserNamespaceMappings::single(HOST_ID, 65536)).unwrap();
    mount_idmapped(&src, &dst, userns.as_fd(), true).expect("idmap");
    assert_eq!(std::fs::metadata(dst.join("f")).unwrap().uid(), HOST_ID);
    assert_eq!(std::fs::metadata(dst.join("f")).unwrap().gid(), HOST_ID);
    assert_eq!(std::fs::metadata(src.join("f")).unwrap().uid(), 0);
    // What the pod's root (host uid HOST_ID) creates through it is stored as uid 0.
    let created = dst.join("by-pod-root");
    // A process, not a fork of this multithreaded test binary (a forked child that allocates
    // can deadlock on a lock another test thread held).
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("echo z > {}", created.display()))
        .uid(HOST_ID)
        .gid(HOST_ID)
        .status()
        .expect("spawn sh");
    assert!(status.success(), "the pod's root could not create a file");
    assert_eq!(std::fs::metadata(&created).unwrap().uid(), HOST_ID);
    assert_eq!(std::fs::metadata(src.join("by-pod-root")).unwrap().uid(), 0);
    // Host root (uid 0) has no id in the mount's mapping: it cannot create files through it.
    assert!(std::fs::write(dst.join("g"), "y").is_err());
    unmount_all(&dst).unwrap();
    assert!(mounts_under(tmp.path()).is_empty());
}

/// Many threads creating user namespaces at once (as concurrent RunPodSandbox calls do) all
/// finish: no creator waits on a child that another creator's clone keeps alive.
#[test]
fn concurrent_creators_do_not_wait_on_each_other() {
    let (tx, rx) = std::sync::mpsc::channel();
    for t in 0..8u32 {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for i in 0..25u32 {
                let maps = UserNamespaceMappings::single(HOST_ID + 65536 * (1 + t * 25 + i), 65536);
                let r = new_user_namespace(&maps).map(drop);
                let _ = tx.send(r);
            }
        });
    }
    drop(tx);
    for n in 0..200 {
        match rx.recv_timeout(std::time::Duration::from_secs(30)) {
            Ok(r) => r.expect("new user namespace"),
            Err(e) => panic!("after {n} of 200 user namespaces: {e} (creators stuck)"),
        }
    }
}
