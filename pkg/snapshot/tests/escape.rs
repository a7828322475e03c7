//! Hostile layers: every attempt to write or link outside the extraction dir is refused with
//! an error naming the entry, the snapshot is not created, and nothing outside changes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// unsafe: geteuid and lgetxattr, to check for root and read back xattrs.
#[allow(unsafe_code)]
mod common;

use std::fs;
use std::path::Path;

use berth_snapshot::{SnapshotError, Snapshotter, chain_id};
use common::*;
use tar::EntryType;

/// Applies `tar` (built with the outside canary dir's path) and checks the refusal.
fn assert_refused(expected_entry: &str, host_paths: &[&str], build: impl FnOnce(&Path) -> Layer) {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let canary = tmp.path().join("outside");
    fs::create_dir(&canary).unwrap();
    fs::write(canary.join("precious"), b"untouched").unwrap();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    for p in host_paths {
        assert!(
            !Path::new(p).exists(),
            "precondition: {p} must not exist on the host"
        );
    }
    let before = tree(tmp.path());

    let tar = build(&canary).build();
    let diff_id = sha256(&tar);
    let chain = chain_id(None, &diff_id);
    let err = s.apply_layer(&chain, None, &diff_id, &tar[..]).unwrap_err();

    match &err {
        SnapshotError::UnsafePath { entry, reason } => {
            assert_eq!(entry, expected_entry, "error names the entry ({reason})");
        }
        other => panic!("expected UnsafePath for {expected_entry}, got {other:?}"),
    }
    assert!(
        err.to_string().contains(expected_entry),
        "message names the entry: {err}"
    );
    assert!(
        !s.exists(&chain),
        "refused layer must not become a snapshot"
    );
    assert_eq!(
        tree(tmp.path()),
        before,
        "nothing written anywhere, temp dir removed"
    );
    assert_eq!(fs::read(canary.join("precious")).unwrap(), b"untouched");
    for p in host_paths {
        assert!(!Path::new(p).exists(), "{p} was created on the host");
    }
    // The passwd file hardlink attempts target must be unchanged too.
    assert!(fs::symlink_metadata("/etc/passwd").unwrap().is_file());
}

#[test]
fn dotdot_name() {
    assert_refused("../escape", &[], |_| {
        Layer::new()
            .file("ok", b"ok")
            .raw(EntryType::Regular, "../escape", "", b"x")
    });
}

// A leading `/` is the layer root (umoci writes such names), but `..` after it still climbs out.
#[test]
fn absolute_dotdot_name() {
    assert_refused("/../berth-escape-x", &["/berth-escape-x"], |_| {
        Layer::new().raw(EntryType::Regular, "/../berth-escape-x", "", b"x")
    });
}

#[test]
fn dot_slash_dotdot_name() {
    assert_refused("./../escape", &[], |_| {
        Layer::new().raw(EntryType::Regular, "./../escape", "", b"x")
    });
}

#[test]
fn absolute_dotdot_whiteout() {
    assert_refused("/../.wh.precious", &[], |_| {
        Layer::new().raw(EntryType::Regular, "/../.wh.precious", "", b"")
    });
}

#[test]
fn dotdot_inside_name() {
    assert_refused("a/../../escape", &[], |_| {
        Layer::new()
            .dir("a/")
            .raw(EntryType::Regular, "a/../../escape", "", b"x")
    });
}

#[test]
fn absolute_dotdot_directory_name() {
    assert_refused("/a/../../berth-escape-dir/", &["/berth-escape-dir"], |_| {
        Layer::new().raw(EntryType::Directory, "/a/../../berth-escape-dir/", "", b"")
    });
}

#[test]
fn hardlink_dotdot_target() {
    assert_refused("passwd", &[], |_| {
        Layer::new().raw(EntryType::Link, "passwd", "../../etc/passwd", b"")
    });
}

#[test]
fn hardlink_absolute_dotdot_target() {
    assert_refused("passwd", &[], |_| {
        Layer::new().raw(EntryType::Link, "passwd", "/../etc/passwd", b"")
    });
    assert_refused("passwd", &[], |_| {
        Layer::new().raw(EntryType::Link, "passwd", "./../etc/passwd", b"")
    });
}

#[test]
fn absolute_names_through_symlink_outside() {
    // The normalised `/evil/file` is resolved beneath the root like `evil/file`: the symlink the
    // layer planted does not lead out.
    assert_refused("/evil/file", &[], |canary| {
        Layer::new().symlink("evil", canary.to_str().unwrap()).raw(
            EntryType::Regular,
            "/evil/file",
            "",
            b"pwned",
        )
    });
    assert_refused("/evil/.wh.precious", &[], |canary| {
        Layer::new().symlink("evil", canary.to_str().unwrap()).raw(
            EntryType::Regular,
            "/evil/.wh.precious",
            "",
            b"",
        )
    });
    assert_refused("passwd", &[], |_| {
        Layer::new()
            .symlink("etc", "/etc")
            .raw(EntryType::Link, "passwd", "/etc/passwd", b"")
    });
}

/// `/etc/passwd` as a hardlink target names the layer's own `etc/passwd`, never the host's:
/// without one in the layer the link fails (no such file), and the host file is untouched.
#[test]
fn hardlink_absolute_target_stays_in_the_layer() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    let before = fs::metadata("/etc/passwd").unwrap();
    let tar = Layer::new()
        .raw(EntryType::Link, "passwd", "/etc/passwd", b"")
        .build();
    let diff_id = sha256(&tar);
    let chain = chain_id(None, &diff_id);
    let err = s.apply_layer(&chain, None, &diff_id, &tar[..]).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::Extract { entry, .. } if entry == "passwd"),
        "{err:?}"
    );
    let after = fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::nlink(&after),
        std::os::unix::fs::MetadataExt::nlink(&before)
    );
    assert!(!s.exists(&chain));
}

#[test]
fn hardlink_through_symlink_outside() {
    assert_refused("passwd", &[], |_| {
        Layer::new()
            .symlink("etc", "/etc")
            .raw(EntryType::Link, "passwd", "etc/passwd", b"")
    });
}

#[test]
fn file_through_absolute_symlink_to_outside_dir() {
    assert_refused("evil/file", &[], |canary| {
        Layer::new()
            .symlink("evil", canary.to_str().unwrap())
            .file("evil/file", b"pwned")
    });
}

#[test]
fn file_through_relative_symlink_climbing_out() {
    assert_refused("evil/file", &[], |_| {
        Layer::new()
            .symlink("evil", "../../..")
            .file("evil/file", b"pwned")
    });
}

#[test]
fn file_through_symlink_chain_to_host_root() {
    assert_refused("a/berth-escape-x", &["/berth-escape-x"], |_| {
        Layer::new()
            .symlink("a", "b")
            .symlink("b", "/")
            .file("a/berth-escape-x", b"pwned")
    });
}

#[test]
fn directory_through_symlink_outside() {
    assert_refused("evil/sub/", &[], |canary| {
        Layer::new()
            .symlink("evil", canary.to_str().unwrap())
            .dir("evil/sub/")
    });
}

#[test]
fn symlink_and_device_through_symlink_outside() {
    assert_refused("evil/link", &[], |canary| {
        Layer::new()
            .symlink("evil", canary.to_str().unwrap())
            .symlink("evil/link", "/etc/shadow")
    });
    assert_refused("evil/null", &[], |canary| {
        Layer::new().symlink("evil", canary.to_str().unwrap()).node(
            "evil/null",
            EntryType::Char,
            0o666,
            1,
            3,
        )
    });
}

#[test]
fn whiteouts_through_symlink_outside() {
    // A whiteout would delete/replace `precious`; an opaque marker would set an xattr outside.
    assert_refused("evil/.wh.precious", &[], |canary| {
        Layer::new()
            .symlink("evil", canary.to_str().unwrap())
            .file("evil/.wh.precious", b"")
    });
    assert_refused("evil/.wh..wh..opq", &[], |canary| {
        Layer::new()
            .symlink("evil", canary.to_str().unwrap())
            .file("evil/.wh..wh..opq", b"")
    });
}

#[test]
fn magic_link_parent() {
    assert_refused("proc/file", &[], |_| {
        Layer::new()
            .symlink("proc", "/proc/self/root/tmp")
            .file("proc/file", b"x")
    });
}
