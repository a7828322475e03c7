//! Hostile-input corpus: layers that are not escapes (see `escape.rs`) but try to hurt the node
//! in other ways: device nodes, setuid files and privileged xattrs, names past the kernel's
//! limits, very deep trees, decompression and sparse-file bombs, and headers that would make the
//! tar reader buffer gigabytes. Each is either unpacked with a documented, safe result or refused
//! with a clear error, in bounded memory and time, leaving no partial snapshot behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// unsafe: geteuid and lgetxattr, to check for root and read back xattrs.
#[allow(unsafe_code)]
mod common;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use berth_snapshot::{DEFAULT_MAX_UNPACKED_BYTES, SnapshotError, Snapshotter, chain_id};
use common::*;
use tar::{EntryType, Header};

fn open(tmp: &Path, max_unpacked_bytes: u64) -> Snapshotter {
    require_root();
    let mut options = no_sync();
    options.max_unpacked_bytes = max_unpacked_bytes;
    Snapshotter::open_with(&tmp.join("root"), options).unwrap()
}

/// Applies a layer whose diff ID is not known in advance (streamed ones): any diff ID will do,
/// since every test here expects a refusal before the digest is compared.
fn apply_stream(s: &Snapshotter, tar: impl Read) -> SnapshotError {
    let diff_id = sha256(b"never matches");
    let chain = chain_id(None, &diff_id);
    let err = s.apply_layer(&chain, None, &diff_id, tar).unwrap_err();
    assert!(!s.exists(&chain));
    err
}

fn assert_nothing_left(s: &Snapshotter) {
    assert!(s.list().unwrap().is_empty(), "no snapshot committed");
    let tmp = s.root().join("tmp");
    assert_eq!(
        fs::read_dir(&tmp).unwrap().count(),
        0,
        "partial unpack removed from {}",
        tmp.display()
    );
}

fn os_error(err: &SnapshotError) -> Option<i32> {
    match err {
        SnapshotError::Extract { source, .. } => source.raw_os_error(),
        _ => None,
    }
}

/// Device nodes are created as real devices, as docker and containerd do (images ship
/// `/dev/null`, `/dev/console` placeholders, and whiteouts are 0:0 devices themselves). They can
/// only be reached through the snapshot root, which is mode 0700, and inside a container through
/// its rootfs, where the device cgroup decides whether opening one does anything. A device entry
/// cannot be placed outside the layer (see `escape.rs`: through a symlink it is refused).
#[test]
fn device_nodes_are_created_inside_the_layer_only() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), DEFAULT_MAX_UNPACKED_BYTES);
    let tar = Layer::new()
        .node("dev/mem", EntryType::Char, 0o666, 1, 1)
        .node("dev/sda", EntryType::Block, 0o666, 8, 0)
        .node("dev/kmsg", EntryType::Char, 0o644, 1, 11)
        .build();
    let chain = apply_chain(&s, &[tar]);
    let dir = s.get(&chain[0]).unwrap().diff_dir;
    let mem = fs::symlink_metadata(dir.join("dev/mem")).unwrap();
    assert!(mem.file_type().is_char_device());
    assert_eq!(mem.rdev(), libc::makedev(1, 1));
    let sda = fs::symlink_metadata(dir.join("dev/sda")).unwrap();
    assert!(sda.file_type().is_block_device());
    assert_eq!(sda.rdev(), libc::makedev(8, 0));
    assert_eq!(
        fs::metadata(s.root()).unwrap().mode() & 0o777,
        0o700,
        "the snapshot root keeps unprivileged users away from layer devices and setuid files"
    );
}

/// setuid/setgid bits are kept (images need them: `su`, `ping`, `passwd`), applied after chown
/// so the kernel does not clear them.
#[test]
fn setuid_and_setgid_files_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), DEFAULT_MAX_UNPACKED_BYTES);
    let tar = Layer::new()
        .file_full("bin/passwd", b"x", 0o4755, 0, 0, MTIME)
        .file_full("bin/wall", b"x", 0o2755, 0, 5, MTIME)
        .file_full("bin/both", b"x", 0o6750, 1000, 1000, MTIME)
        .build();
    let chain = apply_chain(&s, &[tar]);
    let dir = s.get(&chain[0]).unwrap().diff_dir;
    let mode = |p: &str| fs::symlink_metadata(dir.join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("bin/passwd"), 0o4755);
    assert_eq!(mode("bin/wall"), 0o2755);
    assert_eq!(mode("bin/both"), 0o6750);
}

/// `trusted.overlay.*` would let the layer steer overlayfs (opaque dirs, redirects to other
/// layers' files, metacopy): dropped, on files and directories alike. Other xattrs are kept:
/// `security.capability` (file capabilities, covered in `unpack.rs`), `user.*`, and other
/// `trusted.*` names, which only privileged processes can read.
#[test]
fn overlay_xattrs_are_dropped_others_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), DEFAULT_MAX_UNPACKED_BYTES);
    let tar = Layer::new()
        .dir_pax(
            "opaque-attempt/",
            &[
                ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
                ("SCHILY.xattr.user.kept", b"1"),
            ],
        )
        .file_pax(
            "redirect-attempt",
            b"x",
            0o644,
            0,
            &[
                ("SCHILY.xattr.trusted.overlay.redirect", b"/etc/shadow"),
                ("SCHILY.xattr.trusted.overlay.metacopy", b""),
                ("SCHILY.xattr.trusted.overlay.origin", b"\0"),
                ("SCHILY.xattr.trusted.berth-test", b"kept"),
            ],
        )
        .build();
    let chain = apply_chain(&s, &[tar]);
    let dir = s.get(&chain[0]).unwrap().diff_dir;
    let d = dir.join("opaque-attempt");
    assert_eq!(lgetxattr(&d, "trusted.overlay.opaque"), None);
    assert_eq!(lgetxattr(&d, "user.kept").as_deref(), Some(&b"1"[..]));
    let f = dir.join("redirect-attempt");
    for name in ["redirect", "metacopy", "origin"] {
        assert_eq!(lgetxattr(&f, &format!("trusted.overlay.{name}")), None);
    }
    assert_eq!(
        lgetxattr(&f, "trusted.berth-test").as_deref(),
        Some(&b"kept"[..])
    );
}

fn pax_file(path: &str) -> Vec<u8> {
    Layer::new()
        .file_pax("placeholder", b"x", 0o644, 0, &[("path", path.as_bytes())])
        .build()
}

/// A component over NAME_MAX (255 bytes): the kernel refuses it; the error names the entry.
#[test]
fn component_over_255_bytes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), DEFAULT_MAX_UNPACKED_BYTES);
    let name = format!("dir/{}", "n".repeat(300));
    let err = apply_stream(&s, &pax_file(&name)[..]);
    assert_eq!(os_error(&err), Some(libc::ENAMETOOLONG), "{err}");
    assert!(err.to_string().contains(&name), "names the entry: {err}");
    assert_nothing_left(&s);
}

/// A path over PATH_MAX (4096 bytes) made of valid components.
#[test]
fn path_over_4096_bytes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), DEFAULT_MAX_UNPACKED_BYTES);
    let name = vec!["c".repeat(250); 20].join("/");
    let err = apply_stream(&s, &pax_file(&name)[..]);
    assert_eq!(os_error(&err), Some(libc::ENAMETOOLONG), "{err}");
    assert_nothing_left(&s);
}

/// 10,000 nested directories: entry paths are resolved from the layer root, so PATH_MAX bounds
/// the depth (about 2,000 one-letter levels); deeper is refused, and the partial tree (deep
/// itself) is removed. 1,000 levels unpack.
#[test]
fn deep_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), DEFAULT_MAX_UNPACKED_BYTES);
    let deep = format!("{}f", "a/".repeat(10_000));
    let err = apply_stream(&s, &pax_file(&deep)[..]);
    assert_eq!(os_error(&err), Some(libc::ENAMETOOLONG), "{err}");
    assert_nothing_left(&s);

    let ok = format!("{}f", "a/".repeat(1_000));
    let chain = apply_chain(&s, &[pax_file(&ok)]);
    let dir = s.get(&chain[0]).unwrap().diff_dir;
    assert_eq!(fs::read(dir.join(&ok)).unwrap(), b"x");
}

/// An endless stream: `header` then zeros forever, generated on the fly (never in memory).
struct Endless {
    header: Vec<u8>,
    pos: usize,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.header.get(self.pos + i).copied().unwrap_or(0);
        }
        self.pos += n;
        Ok(n)
    }
}

fn gnu_header(kind: EntryType, name: &str, size: u64) -> Vec<u8> {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(MTIME);
    h.set_cksum();
    h.as_bytes().to_vec()
}

/// What a decompression bomb looks like once decompressed: one file of 1 TiB of zeros (a gzip
/// stream of it is about 1000× smaller). With the cap at 1 MiB the unpack stops there.
#[test]
fn layer_over_the_unpacked_size_cap_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), 1 << 20);
    let err = apply_stream(
        &s,
        Endless {
            header: gnu_header(EntryType::Regular, "zeros", 1 << 40),
            pos: 0,
        },
    );
    assert!(
        matches!(err, SnapshotError::LayerTooLarge { limit } if limit == 1 << 20),
        "{err:?}"
    );
    assert!(err.to_string().contains("1048576"), "{err}");
    assert_nothing_left(&s);
}

/// A layer of exactly the cap unpacks; one byte more does not.
#[test]
fn unpacked_size_cap_is_exact() {
    let tar = Layer::new().file("f", &[7u8; 1000]).build();
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), tar.len() as u64);
    apply_chain(&s, std::slice::from_ref(&tar));

    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), tar.len() as u64 - 1);
    let diff_id = sha256(&tar);
    let err = s
        .apply_layer(&chain_id(None, &diff_id), None, &diff_id, &tar[..])
        .unwrap_err();
    assert!(
        matches!(err, SnapshotError::LayerTooLarge { .. }),
        "{err:?}"
    );
    assert_nothing_left(&s);
}

/// A GNU sparse entry of one data byte at the end of a 4 GiB hole: a few hundred bytes of tar
/// that the tar crate expands into 4 GiB of zeros to write. The cap counts written content too.
#[test]
fn sparse_file_bomb_is_refused() {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::GNUSparse);
    h.set_path("sparse").unwrap();
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_size(1);
    {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.set_real_size(4 << 30);
        gnu.sparse[0].set_offset((4 << 30) - 1);
        gnu.sparse[0].set_length(1);
    }
    h.set_cksum();
    let tar = Layer::new().header(&h, b"!").build();
    assert!(tar.len() < 4096);
    let tmp = tempfile::tempdir().unwrap();
    let s = open(tmp.path(), 1 << 20);
    let err = apply_stream(&s, &tar[..]);
    assert!(
        matches!(err, SnapshotError::LayerTooLarge { .. }),
        "{err:?}"
    );
    assert_nothing_left(&s);
}

/// GNU long names and PAX records are read into memory whole by the tar crate; an entry whose
/// long name claims 1 TiB (zeros, streamed) is refused after 1 MiB instead of exhausting memory,
/// even with no unpacked-size cap to speak of.
#[test]
fn huge_long_name_and_pax_headers_are_refused_in_bounded_memory() {
    for kind in [
        EntryType::GNULongName,
        EntryType::XHeader,
        EntryType::GNULongLink,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let s = open(tmp.path(), DEFAULT_MAX_UNPACKED_BYTES);
        let err = apply_stream(
            &s,
            Endless {
                header: gnu_header(kind, "././@LongLink", 1 << 40),
                pos: 0,
            },
        );
        match &err {
            SnapshotError::InvalidTar { source, .. } => {
                assert!(source.to_string().contains("exceed"), "{kind:?}: {err}");
            }
            other => panic!("{kind:?}: expected InvalidTar, got {other:?}"),
        }
        assert_nothing_left(&s);
    }
}
