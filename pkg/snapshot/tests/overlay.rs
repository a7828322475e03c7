//! Real overlay mounts of snapshot chains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// unsafe: geteuid and lgetxattr, to check for root and read back xattrs.
#[allow(unsafe_code)]
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use berth_snapshot::{Snapshotter, unmount};
use common::*;

/// Unmounts on drop so a failed assertion never leaves a mount behind.
struct Mounted(PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn three_layer_stack_mounts_with_whiteouts_and_opaque_dirs() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    let chain = apply_chain(
        &s,
        &[
            Layer::new()
                .dir("data/")
                .file("data/keep", b"keep")
                .file("data/gone", b"gone")
                .dir("dir/")
                .file("dir/old-a", b"a")
                .file("dir/old-b", b"b")
                .build(),
            Layer::new()
                .dir("data/")
                .file("data/.wh.gone", b"")
                .dir("dir/")
                .file("dir/.wh..wh..opq", b"")
                .file("dir/new", b"new")
                .build(),
            Layer::new()
                .dir("data/")
                .file("data/added", b"added")
                .build(),
        ],
    );

    let rw = tmp.path().join("containers/c1");
    let rootfs = s.prepare_rootfs(&chain[2], &rw).unwrap();
    assert_eq!(rootfs.lowerdirs.len(), 3);
    assert_eq!(
        rootfs.lowerdirs[0],
        s.get(&chain[2]).unwrap().diff_dir,
        "top layer first"
    );
    assert_eq!(rootfs.lowerdirs[2], s.get(&chain[0]).unwrap().diff_dir);
    assert!(
        rootfs.options().contains("lowerdir="),
        "{}",
        rootfs.options()
    );

    let target = tmp.path().join("merged");
    fs::create_dir(&target).unwrap();
    rootfs.mount(&target, false).unwrap();
    let guard = Mounted(target.clone());
    assert!(is_mounted(&target));

    assert_eq!(names(&target.join("data")), ["added", "keep"]);
    assert_eq!(fs::read(target.join("data/keep")).unwrap(), b"keep");
    assert_eq!(
        names(&target.join("dir")),
        ["new"],
        "opaque dir hides the lower layer's entries"
    );

    fs::write(target.join("data/written"), b"by the container").unwrap();
    fs::remove_file(target.join("data/keep")).unwrap();
    assert_eq!(
        fs::read(rootfs.upperdir.join("data/written")).unwrap(),
        b"by the container"
    );
    assert!(
        !s.get(&chain[2])
            .unwrap()
            .diff_dir
            .join("data/written")
            .exists(),
        "lower layers untouched"
    );
    assert!(
        s.get(&chain[0])
            .unwrap()
            .diff_dir
            .join("data/keep")
            .exists(),
        "lower layers untouched"
    );

    unmount(&target).unwrap();
    assert!(!is_mounted(&target));
    unmount(&target).unwrap(); // not mounted: fine
    unmount(&tmp.path().join("does-not-exist")).unwrap();
    drop(guard);

    // A second prepare reuses the upper dir: the container's writes survive.
    let again = s.prepare_rootfs(&chain[2], &rw).unwrap();
    again.mount(&target, true).unwrap();
    let _guard = Mounted(target.clone());
    assert_eq!(
        fs::read(target.join("data/written")).unwrap(),
        b"by the container"
    );
    assert!(
        fs::write(target.join("data/ro"), b"x").is_err(),
        "read-only mount"
    );
    unmount(&target).unwrap();
    assert!(!is_mounted(&target));
}

#[test]
fn sixty_layer_stack_with_long_root_mounts_via_relative_lowerdirs() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    // A long root path makes the absolute lowerdir list (60 × ~420 bytes) overflow one page.
    let root = tmp.path().join("r".repeat(200)).join("s".repeat(200));
    let s = Snapshotter::open_with(&root, no_sync()).unwrap();
    let tars: Vec<Vec<u8>> = (0..60)
        .map(|i| {
            Layer::new()
                .file(&format!("layer{i:02}"), format!("{i}").as_bytes())
                .build()
        })
        .collect();
    let chain = apply_chain(&s, &tars);

    let rootfs = s
        .prepare_rootfs(chain.last().unwrap(), &tmp.path().join("rw"))
        .unwrap();
    assert_eq!(rootfs.lowerdirs.len(), 60);
    assert!(
        rootfs.options().len() > 4096,
        "absolute options must overflow for this test to mean anything"
    );
    let target = tmp.path().join("merged");
    fs::create_dir(&target).unwrap();
    let cwd = std::env::current_dir().unwrap();
    rootfs.mount(&target, false).unwrap();
    let _guard = Mounted(target.clone());
    assert_eq!(
        std::env::current_dir().unwrap(),
        cwd,
        "the mount's chdir must not leak into the process"
    );
    let merged = names(&target);
    assert_eq!(merged.len(), 60);
    assert_eq!(fs::read(target.join("layer00")).unwrap(), b"0");
    assert_eq!(fs::read(target.join("layer59")).unwrap(), b"59");
    unmount(&target).unwrap();
    assert!(!is_mounted(&target));
}
