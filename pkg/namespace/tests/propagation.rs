//! prepare_ns_root: pins under a shared state dir appear once, not once per peer.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use berth_namespace::{NsKind, PinRequest, is_pinned, pin, prepare_ns_root, unpin};
use common::mounts_under;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

fn make_shared_mount(dir: &Path) {
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_SHARED,
        None::<&str>,
    )
    .expect("shared");
}

fn pin_net(dir: &Path) {
    let p = pin(&PinRequest {
        dir,
        kinds: &[NsKind::Net],
        hostname: None,
        sysctls: &BTreeMap::new(),
        userns: None,
    })
    .expect("pin");
    assert!(is_pinned(p.path(NsKind::Net).unwrap()));
}

#[test]
fn prepared_root_under_shared_mount_has_no_duplicates() {
    let tmp = tempfile::tempdir().unwrap();
    // A shared "/run" stand-in, and a state dir below it.
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    make_shared_mount(&run);

    // What a naive self-bind does: the state dir joins run's peer group, so every pin below it
    // is propagated back into run's mount too and listed twice.
    let naive = run.join("naive");
    std::fs::create_dir(&naive).unwrap();
    mount(
        Some(&naive),
        &naive,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .expect("bind");
    pin_net(&naive.join("pod/ns"));
    let naive_net = std::fs::canonicalize(&naive).unwrap().join("pod/ns/net");
    let dups = mounts_under(&naive_net).len();
    assert_eq!(dups, 2, "expected the naive layout to duplicate the pin");
    unpin(&naive.join("pod/ns")).expect("unpin naive");
    assert_eq!(
        mounts_under(&naive_net).len(),
        0,
        "unmount propagates to the copy too"
    );

    // prepare_ns_root: its own peer group, pins appear exactly once.
    let root = run.join("berth/sandboxes");
    prepare_ns_root(&root).expect("prepare");
    prepare_ns_root(&root).expect("prepare is idempotent");
    let root_c = std::fs::canonicalize(&root).unwrap();
    assert_eq!(
        mounts_under(&root_c)
            .iter()
            .filter(|m| **m == root_c)
            .count(),
        1,
        "root must be mounted exactly once"
    );
    pin_net(&root.join("pod/ns"));
    assert_eq!(mounts_under(&root_c.join("pod/ns/net")).len(), 1);
    unpin(&root.join("pod/ns")).expect("unpin");
    assert_eq!(mounts_under(&root_c.join("pod")).len(), 0);

    // A plain (non-mount-point) root works too.
    let plain = tmp.path().join("plain");
    prepare_ns_root(&plain).expect("prepare plain");
    assert_eq!(mounts_under(&plain).len(), 1);

    umount2(&run, MntFlags::MNT_DETACH).expect("umount run");
    umount2(&plain, MntFlags::MNT_DETACH).expect("umount plain");
    assert!(mounts_under(tmp.path()).is_empty());
}
