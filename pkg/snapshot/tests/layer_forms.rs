//! Valid layer forms other tools write: names with a leading `/` (umoci) and streams that end
//! early (no padding after the last file, no end-of-archive blocks: `umoci insert`). A stream
//! cut inside a header or inside data is still refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// unsafe: geteuid and lgetxattr, to check for root and read back xattrs.
#[allow(unsafe_code)]
mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

use berth_snapshot::{SnapshotError, Snapshotter, chain_id};
use common::*;
use tar::EntryType;

/// 137 bytes, like the last file of the `umoci insert` layer that exposed the problem.
const DATA: &[u8; 137] = &[b'x'; 137];

/// `dir/` then `dir/file` (137 bytes): data ends at 2 × 512 + 137 = 1161, its padding at 1536,
/// and the builder adds two zero blocks (2560 in all).
fn two_entries() -> Vec<u8> {
    let tar = Layer::new().dir("dir/").file("dir/file", DATA).build();
    assert_eq!(tar.len(), 2560);
    tar
}

fn apply(tar: &[u8]) -> (tempfile::TempDir, Result<PathBuf, SnapshotError>) {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open_with(&tmp.path().join("root"), no_sync()).unwrap();
    let diff_id = sha256(tar);
    let chain = chain_id(None, &diff_id);
    let result = s
        .apply_layer(&chain, None, &diff_id, tar)
        .map(|info| info.diff_dir);
    // A refused layer leaves nothing in the store's temp dir.
    if result.is_err() {
        let leftovers = fs::read_dir(tmp.path().join("root/tmp")).unwrap().count();
        assert_eq!(leftovers, 0, "temp dir removed");
    }
    (tmp, result)
}

fn assert_complete(tar: &[u8]) {
    let (_tmp, result) = apply(tar);
    let dir = result.unwrap_or_else(|e| panic!("{} bytes: {e}", tar.len()));
    assert_eq!(fs::read(dir.join("dir/file")).unwrap(), DATA);
}

fn assert_truncated(tar: &[u8]) {
    let (_tmp, result) = apply(tar);
    match result {
        Err(SnapshotError::InvalidTar { .. }) => {}
        other => panic!("{} bytes: expected InvalidTar, got {other:?}", tar.len()),
    }
}

#[test]
fn full_archive() {
    assert_complete(&two_entries());
}

#[test]
fn ends_at_entry_boundary_without_trailer() {
    assert_complete(&two_entries()[..1536]);
}

#[test]
fn ends_right_after_the_last_files_data() {
    assert_complete(&two_entries()[..1161]);
}

#[test]
fn ends_inside_the_final_padding() {
    assert_complete(&two_entries()[..1300]);
    assert_complete(&two_entries()[..1535]);
}

#[test]
fn ends_with_one_zero_block() {
    assert_complete(&two_entries()[..2048]);
}

#[test]
fn ends_after_a_directory_without_trailer() {
    let tar = Layer::new().dir("dir/").dir("dir/sub/").build();
    let (_tmp, result) = apply(&tar[..1024]);
    assert!(result.unwrap().join("dir/sub").is_dir());
}

#[test]
fn cut_inside_a_header_is_refused() {
    assert_truncated(&two_entries()[..512 + 300]);
    assert_truncated(&two_entries()[..100]);
}

#[test]
fn cut_inside_data_is_refused() {
    assert_truncated(&two_entries()[..1160]);
    assert_truncated(&two_entries()[..1024 + 1]);
    // The first of two files cut short: the second header never arrives.
    let tar = Layer::new().file("a", DATA).file("b", DATA).build();
    assert_truncated(&tar[..512 + 100]);
}

#[test]
fn cut_after_a_pax_header_is_refused() {
    let tar = Layer::new()
        .file("a", DATA)
        .file_pax("b", DATA, 0o644, 0, &[("SCHILY.xattr.user.k", b"v")])
        .build();
    // `a` is complete (1024), then the PAX header and its records block, then nothing.
    assert_truncated(&tar[..2048]);
}

/// umoci writes the root as `/` and every name with a leading `/`: they are relative to the
/// layer root. The `/` entry's metadata applies to the root, as `./` does.
#[test]
fn leading_slash_names_are_relative_to_the_root() {
    let tar = Layer::new()
        .raw(EntryType::Directory, "/", "", b"")
        .raw(EntryType::Directory, "/bin/", "", b"")
        .raw(EntryType::Regular, "/bin/busybox", "", DATA)
        .raw(EntryType::Link, "/bin/sh", "/bin/busybox", b"")
        .raw(EntryType::Symlink, "/bin/ls", "busybox", b"")
        .raw(EntryType::Regular, "//etc//conf", "", b"k=v")
        .raw(EntryType::Regular, "/.wh.gone", "", b"")
        .raw(EntryType::Directory, "/opq/", "", b"")
        .raw(EntryType::Regular, "/opq/.wh..wh..opq", "", b"")
        .build();
    let (_tmp, result) = apply(&tar);
    let dir = result.unwrap();
    assert_eq!(fs::read(dir.join("bin/busybox")).unwrap(), DATA);
    let (a, b) = (
        fs::metadata(dir.join("bin/busybox")).unwrap(),
        fs::metadata(dir.join("bin/sh")).unwrap(),
    );
    assert_eq!(
        (a.ino(), a.nlink()),
        (b.ino(), 2),
        "hardlink to /bin/busybox"
    );
    assert_eq!(
        fs::read_link(dir.join("bin/ls")).unwrap(),
        PathBuf::from("busybox")
    );
    assert_eq!(fs::read(dir.join("etc/conf")).unwrap(), b"k=v");
    let gone = fs::symlink_metadata(dir.join("gone")).unwrap();
    assert_eq!(gone.rdev(), 0, "whiteout is a 0/0 char device");
    assert!(gone.file_type().is_char_device());
    assert_eq!(
        lgetxattr(&dir.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o7777, 0o644 & 0o7777);
}

/// Python's tarfile writes FIFOs with all-NUL device fields; Go's archive/tar reads them as 0.
#[test]
fn blank_device_numbers_read_as_zero() {
    let mut h = tar::Header::new_gnu();
    h.set_path("fifo").unwrap();
    h.set_entry_type(EntryType::Fifo);
    h.set_mode(0o600);
    h.set_size(0);
    let gnu = h.as_gnu_mut().unwrap();
    gnu.dev_major = [0; 8];
    gnu.dev_minor = [0; 8];
    h.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&h, &[][..]).unwrap();
    let (_tmp, result) = apply(&builder.into_inner().unwrap());
    let md = fs::symlink_metadata(result.unwrap().join("fifo")).unwrap();
    assert!(md.file_type().is_fifo());
}
