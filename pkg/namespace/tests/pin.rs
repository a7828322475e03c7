//! pin/unpin/run_in_netns against the real kernel (run as root).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use berth_namespace::{NamespaceError, NsKind, PinRequest, is_pinned, pin, run_in_netns, unpin};
use common::*;

const PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
const SHMMNI: &str = "/proc/sys/kernel/shmmni";
const MSGMAX: &str = "/proc/sys/kernel/msgmax";

fn hostname() -> String {
    nix::unistd::gethostname()
        .expect("gethostname")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn pin_all_three_then_unpin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sandboxes/pod1/ns");
    let host_port = read_trimmed(PORT_START);
    let host_shmmni = read_trimmed(SHMMNI);
    let host_msgmax = read_trimmed(MSGMAX);
    let host_name = hostname();
    let port = other_value(&host_port, 80);
    let shmmni = other_value(&host_shmmni, 1234);
    let msgmax = other_value(&host_msgmax, 4321);

    let sysctls = BTreeMap::from([
        (
            "net.ipv4.ip_unprivileged_port_start".to_owned(),
            port.clone(),
        ),
        ("kernel.shmmni".to_owned(), shmmni.clone()),
        // '/' separators work too.
        ("kernel/msgmax".to_owned(), msgmax.clone()),
    ]);
    let pinned = pin(&PinRequest {
        dir: &dir,
        kinds: &[NsKind::Uts, NsKind::Net, NsKind::Ipc],
        hostname: Some("berth-test-pod"),
        sysctls: &sysctls,
        userns: None,
    })
    .expect("pin");

    assert_eq!(pinned.dir(), dir);
    assert_eq!(pinned.kinds().collect::<Vec<_>>(), NsKind::ALL);
    for kind in NsKind::ALL {
        let p = pinned.path(kind).expect("pinned path");
        assert_eq!(p, dir.join(kind.file_name()));
        assert!(is_pinned(p), "{} is not an nsfs mount", p.display());
        let host = Path::new("/proc/self/ns").join(kind.file_name());
        assert_ne!(ns_inode(p), ns_inode(&host), "{kind} ns is the host's");
    }
    let net = pinned
        .path(NsKind::Net)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let ipc = pinned
        .path(NsKind::Ipc)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let uts = pinned
        .path(NsKind::Uts)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();

    // Only lo, and it is up (pods need 127.0.0.1 without a CNI loopback plugin).
    let links = nsenter(&[&format!("--net={net}"), "ip", "-o", "link"]);
    assert_eq!(links.lines().count(), 1, "{links}");
    assert!(links.contains(": lo:") && links.contains("UP"), "{links}");
    assert_eq!(
        nsenter(&[&format!("--uts={uts}"), "hostname"]),
        "berth-test-pod"
    );
    assert_eq!(nsenter(&[&format!("--net={net}"), "cat", PORT_START]), port);
    assert_eq!(nsenter(&[&format!("--ipc={ipc}"), "cat", SHMMNI]), shmmni);
    assert_eq!(nsenter(&[&format!("--ipc={ipc}"), "cat", MSGMAX]), msgmax);

    // The host saw none of it.
    assert_eq!(read_trimmed(PORT_START), host_port);
    assert_eq!(read_trimmed(SHMMNI), host_shmmni);
    assert_eq!(read_trimmed(MSGMAX), host_msgmax);
    assert_eq!(hostname(), host_name);

    // Inside run_in_netns: /proc/thread-self/net and /proc/sys/net follow the *thread's* netns,
    // /proc/self/net follows the thread-group leader's (the host's).
    let (inside_dev, inside_port, leader_dev) =
        run_in_netns(pinned.path(NsKind::Net).unwrap(), || {
            (
                read_trimmed("/proc/thread-self/net/dev"),
                read_trimmed(PORT_START),
                read_trimmed("/proc/self/net/dev"),
            )
        })
        .expect("run_in_netns");
    assert_eq!(interfaces(&inside_dev), ["lo"]);
    assert_eq!(
        inside_port, port,
        "/proc/sys/net must follow the thread's netns"
    );
    assert_eq!(
        interfaces(&leader_dev),
        interfaces(&read_trimmed("/proc/thread-self/net/dev")),
        "/proc/self/net shows the leader's (host) netns"
    );
    assert_eq!(read_trimmed(PORT_START), host_port);

    unpin(&dir).expect("unpin");
    unpin(&dir).expect("unpin again");
    assert!(!dir.exists());
    assert_eq!(mounts_under(tmp.path()), Vec::<std::path::PathBuf>::new());
}

#[test]
fn net_only_leaves_other_namespaces_to_the_host() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let pinned = pin(&PinRequest {
        dir: &dir,
        kinds: &[NsKind::Net, NsKind::Net],
        hostname: None,
        sysctls: &BTreeMap::new(),
        userns: None,
    })
    .expect("pin");
    assert!(pinned.path(NsKind::Ipc).is_none() && pinned.path(NsKind::Uts).is_none());
    assert!(is_pinned(pinned.path(NsKind::Net).unwrap()));
    assert!(!dir.join("ipc").exists() && !dir.join("uts").exists());
    assert_eq!(mounts_under(tmp.path()).len(), 1);
    unpin(&dir).expect("unpin");
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn kernel_rejected_sysctl_rolls_back() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let host_port = read_trimmed(PORT_START);
    let sysctls = BTreeMap::from([
        ("kernel.shmmni".to_owned(), "1000".to_owned()),
        (
            "net.ipv4.ip_unprivileged_port_start".to_owned(),
            "not-a-number".to_owned(),
        ),
    ]);
    let err = pin(&PinRequest {
        dir: &dir,
        kinds: &NsKind::ALL,
        hostname: Some("x"),
        sysctls: &sysctls,
        userns: None,
    })
    .expect_err("kernel must reject the value");
    match &err {
        NamespaceError::Sysctl { name, source, .. } => {
            assert_eq!(name, "net.ipv4.ip_unprivileged_port_start");
            assert_eq!(source.raw_os_error(), Some(libc::EINVAL));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(!dir.exists(), "pin dir must be removed on failure");
    assert!(mounts_under(tmp.path()).is_empty());
    assert_eq!(read_trimmed(PORT_START), host_port);

    // A sysctl that does not exist fails the same way (ENOENT), and a pre-existing dir is kept.
    std::fs::create_dir(&dir).unwrap();
    let err = pin(&PinRequest {
        dir: &dir,
        kinds: &[NsKind::Net],
        hostname: None,
        sysctls: &BTreeMap::from([("net.ipv4.no_such_thing".to_owned(), "1".to_owned())]),
        userns: None,
    })
    .expect_err("missing sysctl");
    assert!(matches!(err, NamespaceError::Sysctl { .. }), "{err:?}");
    assert!(dir.exists());
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn pin_onto_existing_pins_is_refused_and_keeps_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let req = PinRequest {
        dir: &dir,
        kinds: &[NsKind::Net, NsKind::Uts],
        hostname: Some("first"),
        sysctls: &BTreeMap::new(),
        userns: None,
    };
    let first = pin(&req).expect("pin");
    let inode = ns_inode(first.path(NsKind::Net).unwrap());
    let err = pin(&PinRequest {
        kinds: &NsKind::ALL,
        ..req
    })
    .expect_err("second pin");
    assert!(
        matches!(err, NamespaceError::AlreadyPinned { .. }),
        "{err:?}"
    );
    assert_eq!(ns_inode(first.path(NsKind::Net).unwrap()), inode);
    assert!(is_pinned(first.path(NsKind::Uts).unwrap()));
    assert!(
        !dir.join("ipc").exists(),
        "file created by the failed pin must be gone"
    );
    assert_eq!(mounts_under(tmp.path()).len(), 2);
    unpin(&dir).expect("unpin");
    assert!(mounts_under(tmp.path()).is_empty());
}

#[test]
fn unpin_tolerates_missing_dir_and_stale_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    unpin(&dir).expect("missing dir");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("net"), "").unwrap();
    std::fs::write(dir.join("uts"), "").unwrap();
    assert!(!is_pinned(&dir.join("net")));
    unpin(&dir).expect("stale files");
    assert!(!dir.exists());

    // Foreign content makes unpin fail instead of deleting it.
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("other"), "keep").unwrap();
    assert!(matches!(unpin(&dir), Err(NamespaceError::Io { .. })));
    assert!(dir.join("other").exists());
}

#[test]
fn request_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ns");
    let none = BTreeMap::new();
    let req = PinRequest {
        dir: &dir,
        kinds: &[NsKind::Net],
        hostname: Some("pod"),
        sysctls: &none,
        userns: None,
    };
    assert!(matches!(
        pin(&req),
        Err(NamespaceError::InconsistentNamespaces(_))
    ));
    let long = "a".repeat(65);
    let err = pin(&PinRequest {
        kinds: &[NsKind::Uts],
        hostname: Some(&long),
        ..req
    });
    assert!(matches!(err, Err(NamespaceError::InvalidHostname { .. })));
    let host_net_sysctl = BTreeMap::from([("net.ipv4.ip_forward".to_owned(), "1".to_owned())]);
    let err = pin(&PinRequest {
        kinds: &[NsKind::Ipc],
        hostname: None,
        sysctls: &host_net_sysctl,
        userns: None,
        ..req
    });
    assert!(matches!(err, Err(NamespaceError::InvalidSysctl { .. })));
    // All host namespaces: nothing to do, nothing touched.
    let empty = pin(&PinRequest {
        kinds: &[],
        hostname: None,
        ..req
    })
    .expect("empty pin");
    assert_eq!(empty.kinds().count(), 0);
    assert!(!dir.exists());
}

#[test]
fn run_in_netns_errors_and_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    assert!(matches!(
        run_in_netns(&missing, || ()),
        Err(NamespaceError::Io { .. })
    ));
    // The UTS ns file is not a network namespace: setns says EINVAL.
    let err = run_in_netns(Path::new("/proc/self/ns/uts"), || ()).expect_err("uts");
    assert!(matches!(err, NamespaceError::Setns { .. }), "{err:?}");
    // The host netns works and the closure may borrow.
    let greeting = String::from("hi");
    let got = run_in_netns(Path::new("/proc/self/ns/net"), || greeting.len()).unwrap();
    assert_eq!(got, 2);
    let caught = std::panic::catch_unwind(|| {
        run_in_netns(Path::new("/proc/self/ns/net"), || panic!("boom"))
    });
    assert!(caught.is_err());
}
