//! What an unpacked layer looks like on disk: metadata fidelity, entry types, long names,
//! whiteout conversion and in-tar replacement.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// unsafe: geteuid and lgetxattr, to check for root and read back xattrs.
#[allow(unsafe_code)]
mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_snapshot::Snapshotter;
use common::*;
use tar::EntryType;

/// `cap_net_raw+ep` as a VFS_CAP_REVISION_2 `security.capability` value.
const CAP_NET_RAW_EP: [u8; 20] = [
    1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

fn unpack_one(tar: Vec<u8>) -> (tempfile::TempDir, std::path::PathBuf) {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    let chain = apply_chain(&s, &[tar]);
    let dir = s.get(&chain[0]).unwrap().diff_dir;
    (tmp, dir)
}

#[test]
fn preserves_ownership_modes_times_and_xattrs() {
    let tar = Layer::new()
        .dir_full("./", 0o755, 0, 0, MTIME + 1)
        .dir_full("etc/", 0o750, 1000, 1001, MTIME + 2)
        .file_full("etc/conf", b"key=value\n", 0o640, 1000, 1001, MTIME + 3)
        .dir("bin/")
        .file_full("bin/su", b"su", 0o4755, 0, 0, MTIME)
        .file_full("bin/sg", b"sg", 0o2755, 1000, 50, MTIME)
        .file_full("bin/suid-user", b"x", 0o4750, 1000, 1000, MTIME)
        .dir_full("tmp/", 0o1777, 0, 0, MTIME + 4)
        .file_pax(
            "bin/ping",
            b"ping",
            0o755,
            1000,
            &[
                ("SCHILY.xattr.security.capability", &CAP_NET_RAW_EP),
                ("SCHILY.xattr.user.origin", b"layer"),
            ],
        )
        .build();
    let (_tmp, fs_dir) = unpack_one(tar);

    let md = |p: &str| fs::symlink_metadata(fs_dir.join(p)).unwrap();
    assert_eq!(
        md("").mtime(),
        (MTIME + 1) as i64,
        "root dir mtime from ./ entry"
    );
    let etc = md("etc");
    assert_eq!(
        (etc.uid(), etc.gid(), etc.mode() & 0o7777),
        (1000, 1001, 0o750)
    );
    assert_eq!(
        etc.mtime(),
        (MTIME + 2) as i64,
        "dir mtime restored after its children were written"
    );
    let conf = md("etc/conf");
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o7777),
        (1000, 1001, 0o640)
    );
    assert_eq!(conf.mtime(), (MTIME + 3) as i64);
    assert_eq!(fs::read(fs_dir.join("etc/conf")).unwrap(), b"key=value\n");
    assert_eq!(md("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(md("bin/sg").mode() & 0o7777, 0o2755);
    assert_eq!(md("bin/sg").gid(), 50);
    // chown clears setuid: it must have been applied before chmod.
    assert_eq!(md("bin/suid-user").mode() & 0o7777, 0o4750);
    assert_eq!(md("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(md("tmp").mtime(), (MTIME + 4) as i64);
    // chown clears security.capability: it must have been applied before the xattrs.
    let ping = fs_dir.join("bin/ping");
    assert_eq!(md("bin/ping").uid(), 1000);
    assert_eq!(
        lgetxattr(&ping, "security.capability").as_deref(),
        Some(&CAP_NET_RAW_EP[..])
    );
    assert_eq!(
        lgetxattr(&ping, "user.origin").as_deref(),
        Some(&b"layer"[..])
    );
}

#[test]
fn creates_links_devices_fifos_and_long_names() {
    let long_dir = format!("{}/{}", "d".repeat(90), "e".repeat(90));
    let long_file = format!("{long_dir}/{}", "f".repeat(120));
    let long_target = format!("/{}", "t".repeat(150));
    let pax_name = format!("pax/{}", "p".repeat(200));
    let tar = Layer::new()
        .dir("bin/")
        .file_full("bin/busybox", b"bb", 0o755, 0, 0, MTIME)
        .hardlink("bin/busybox-link", "bin/busybox")
        .hardlink("other/link", "./bin/busybox")
        .symlink("bin/sh", "/bin/busybox")
        .symlink("lib", "usr/lib")
        .symlink("dangling", "../../../../nowhere")
        .node("dev/null", EntryType::Char, 0o666, 1, 3)
        .node("dev/loop0", EntryType::Block, 0o660, 7, 0)
        .node("run/fifo", EntryType::Fifo, 0o600, 0, 0)
        .file(&long_file, b"long")
        .symlink("long-link", &long_target)
        .file_pax(
            &pax_name[..99],
            b"pax",
            0o644,
            0,
            &[("path", pax_name.as_bytes())],
        )
        .build();
    let (_tmp, fs_dir) = unpack_one(tar);

    let ino = |p: &str| fs::symlink_metadata(fs_dir.join(p)).unwrap().ino();
    assert_eq!(
        ino("bin/busybox"),
        ino("bin/busybox-link"),
        "hardlink shares the inode"
    );
    assert_eq!(ino("bin/busybox"), ino("other/link"));
    assert_eq!(
        fs::symlink_metadata(fs_dir.join("bin/busybox"))
            .unwrap()
            .nlink(),
        3
    );
    assert_eq!(
        fs::read_link(fs_dir.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::read_link(fs_dir.join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        fs::read_link(fs_dir.join("dangling")).unwrap(),
        Path::new("../../../../nowhere")
    );
    assert_eq!(
        fs::symlink_metadata(fs_dir.join("bin/sh")).unwrap().mtime(),
        MTIME as i64
    );
    let null = fs::symlink_metadata(fs_dir.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(
        (
            libc::major(null.rdev()),
            libc::minor(null.rdev()),
            null.mode() & 0o7777
        ),
        (1, 3, 0o666)
    );
    let lp = fs::symlink_metadata(fs_dir.join("dev/loop0")).unwrap();
    assert!(lp.file_type().is_block_device());
    assert_eq!((libc::major(lp.rdev()), libc::minor(lp.rdev())), (7, 0));
    let fifo = fs::symlink_metadata(fs_dir.join("run/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.mode() & 0o7777, 0o600);
    assert_eq!(
        fs::read(fs_dir.join(&long_file)).unwrap(),
        b"long",
        "GNU long name"
    );
    assert_eq!(
        fs::read_link(fs_dir.join("long-link")).unwrap(),
        Path::new(&long_target),
        "GNU long link"
    );
    assert_eq!(
        fs::read(fs_dir.join(&pax_name)).unwrap(),
        b"pax",
        "PAX path"
    );
    // Parents the tar never listed are created root-owned 0755.
    let implicit = fs::symlink_metadata(fs_dir.join("dev")).unwrap();
    assert_eq!((implicit.uid(), implicit.mode() & 0o7777), (0, 0o755));
}

#[test]
fn converts_whiteouts_and_opaque_dirs() {
    let tar = Layer::new()
        .dir("data/")
        .file("data/.wh.gone", b"")
        .dir("dir/")
        .file("dir/.wh..wh..opq", b"")
        .file("dir/new", b"new")
        .file("implicit/.wh.x", b"")
        .file(".wh.toplevel", b"")
        .file("data/.wh..wh.plnk", b"")
        .build();
    let (_tmp, fs_dir) = unpack_one(tar);

    for whiteout in ["data/gone", "implicit/x", "toplevel"] {
        let md = fs::symlink_metadata(fs_dir.join(whiteout)).unwrap();
        assert!(
            md.file_type().is_char_device(),
            "{whiteout} is a char device"
        );
        assert_eq!(md.rdev(), 0, "{whiteout} is 0:0");
    }
    assert_eq!(
        lgetxattr(&fs_dir.join("dir"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        lgetxattr(&fs_dir.join("data"), "trusted.overlay.opaque"),
        None
    );
    let names: Vec<_> = tree(&fs_dir).into_keys().collect();
    assert!(
        names.iter().all(|p| !p.to_string_lossy().contains(".wh.")),
        "no .wh. file extracted: {names:?}"
    );
}

#[test]
fn later_entries_replace_earlier_ones_without_following_symlinks() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("canary");
    fs::create_dir(&canary).unwrap();
    fs::write(canary.join("file"), b"untouched").unwrap();
    let tar = Layer::new()
        .file("dup", b"first")
        .file("dup", b"second")
        .file("x", b"file")
        .dir("x/")
        .file("x/inside", b"in")
        .dir("y/")
        .file("y/child", b"c")
        .symlink("y", "x")
        .dir_full("merged/", 0o700, 0, 0, MTIME)
        .file("merged/a", b"a")
        .dir_full("merged/", 0o755, 0, 0, MTIME)
        .file("merged/b", b"b")
        .symlink("passwd", canary.join("file").to_str().unwrap())
        .file("passwd", b"replaced")
        .dir("etc/")
        .symlink("etc/link", "../lib")
        .dir("lib/")
        .file("etc/link/via-inside-symlink", b"ok")
        .build();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    let chain = apply_chain(&s, &[tar]);
    let fs_dir = s.get(&chain[0]).unwrap().diff_dir;

    assert_eq!(fs::read(fs_dir.join("dup")).unwrap(), b"second");
    assert!(fs::symlink_metadata(fs_dir.join("x")).unwrap().is_dir());
    assert_eq!(fs::read(fs_dir.join("x/inside")).unwrap(), b"in");
    assert_eq!(fs::read_link(fs_dir.join("y")).unwrap(), Path::new("x"));
    assert!(fs::read(fs_dir.join("merged/a")).is_ok() && fs::read(fs_dir.join("merged/b")).is_ok());
    assert_eq!(
        fs::symlink_metadata(fs_dir.join("merged")).unwrap().mode() & 0o7777,
        0o755
    );
    assert!(
        fs::symlink_metadata(fs_dir.join("passwd"))
            .unwrap()
            .is_file()
    );
    assert_eq!(fs::read(fs_dir.join("passwd")).unwrap(), b"replaced");
    assert_eq!(
        fs::read(canary.join("file")).unwrap(),
        b"untouched",
        "symlink was not followed"
    );
    // A symlink that stays inside the layer may be traversed.
    assert_eq!(
        fs::read(fs_dir.join("lib/via-inside-symlink")).unwrap(),
        b"ok"
    );
}
