//! Snapshot lifecycle: verification, atomicity, idempotence, concurrency, removal, usage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

// unsafe: geteuid and lgetxattr, to check for root and read back xattrs.
#[allow(unsafe_code)]
mod common;

use std::fs;
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use berth_snapshot::{SnapshotError, Snapshotter, chain_id};
use common::*;

fn tmp_is_empty(root: &std::path::Path) -> bool {
    fs::read_dir(root.join("tmp")).unwrap().next().is_none()
}

#[test]
fn diff_id_mismatch_fails_and_leaves_nothing() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = Snapshotter::open(&root).unwrap();
    let tar = Layer::new().file("a", b"a").build();
    let wrong = sha256(b"something else");
    let err = s.apply_layer(&wrong, None, &wrong, &tar[..]).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::DiffIdMismatch { expected, actual } if *expected == wrong && *actual == sha256(&tar)),
        "{err:?}"
    );
    assert!(!s.exists(&wrong));
    assert!(s.list().unwrap().is_empty());
    assert!(tmp_is_empty(&root));
    assert!(
        fs::read_dir(root.join("snapshots"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn digest_covers_bytes_after_the_tar_trailer() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    let mut tar = Layer::new().file("a", b"a").build();
    let without_padding = sha256(&tar);
    tar.extend_from_slice(&[0u8; 10240]); // record padding, as docker/tar write it
    let err = s
        .apply_layer(&without_padding, None, &without_padding, &tar[..])
        .unwrap_err();
    assert!(
        matches!(err, SnapshotError::DiffIdMismatch { .. }),
        "{err:?}"
    );
    let full = sha256(&tar);
    s.apply_layer(&full, None, &full, &tar[..]).unwrap();
}

/// A reader that fails after `limit` bytes, like a dropped connection mid-pull.
struct Failing<'a>(&'a [u8], usize);
impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.1 == 0 {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        let n = buf.len().min(self.1).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        self.1 -= n;
        Ok(n)
    }
}

#[test]
fn failed_and_interrupted_unpacks_leave_nothing() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let tar = Layer::new().file("big", &vec![7u8; 100_000]).build();
    let diff_id = sha256(&tar);
    {
        let s = Snapshotter::open(&root).unwrap();
        let err = s
            .apply_layer(&diff_id, None, &diff_id, Failing(&tar, 50_000))
            .unwrap_err();
        assert!(matches!(err, SnapshotError::InvalidTar { .. }), "{err:?}");
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(!s.exists(&diff_id));
        assert!(tmp_is_empty(&root));
        // A second Snapshotter on the same root is refused while the first is open.
        assert!(matches!(
            Snapshotter::open(&root),
            Err(SnapshotError::Locked { .. })
        ));
    }
    // What a crash mid-unpack (or mid-remove) leaves behind: dirs in tmp/.
    fs::create_dir_all(root.join("tmp/17/fs/usr/bin")).unwrap();
    fs::write(root.join("tmp/17/fs/usr/bin/half"), b"half-written").unwrap();
    fs::create_dir_all(root.join("tmp/rm-3/fs")).unwrap();
    let s = Snapshotter::open(&root).unwrap();
    assert!(tmp_is_empty(&root), "leftovers cleaned on open");
    s.apply_layer(&diff_id, None, &diff_id, &tar[..]).unwrap();
    drop(s);
    // Committed snapshots survive a reopen.
    let s = Snapshotter::open(&root).unwrap();
    assert!(s.exists(&diff_id));
    assert_eq!(
        fs::read(s.get(&diff_id).unwrap().diff_dir.join("big"))
            .unwrap()
            .len(),
        100_000
    );
}

#[test]
fn apply_layer_is_idempotent_and_validates_chain_ids() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    let tar = Layer::new().file("a", b"a").build();
    let diff_id = sha256(&tar);
    let first = s.apply_layer(&diff_id, None, &diff_id, &tar[..]).unwrap();
    // The second call must not even read the stream: garbage is fine.
    let second = s
        .apply_layer(&diff_id, None, &diff_id, &b"not a tar"[..])
        .unwrap();
    assert_eq!(first, second);
    assert_eq!(s.list().unwrap().len(), 1);

    let child_tar = Layer::new().file("b", b"b").build();
    let child_diff = sha256(&child_tar);
    let bogus = sha256(b"bogus");
    let err = s
        .apply_layer(&bogus, Some(&diff_id), &child_diff, &child_tar[..])
        .unwrap_err();
    assert!(
        matches!(err, SnapshotError::ChainIdMismatch { .. }),
        "{err:?}"
    );
    let orphan = chain_id(Some(&bogus), &child_diff);
    let err = s
        .apply_layer(&orphan, Some(&bogus), &child_diff, &child_tar[..])
        .unwrap_err();
    assert!(
        matches!(err, SnapshotError::ParentNotFound { .. }),
        "{err:?}"
    );
    let err = s
        .apply_layer("sha256:../../x", None, "sha256:../../x", &child_tar[..])
        .unwrap_err();
    assert!(
        matches!(err, SnapshotError::InvalidDigest { .. }),
        "{err:?}"
    );
}

/// Counts readers that were read from, and reads slowly so concurrent callers overlap.
struct Counting<'a> {
    data: &'a [u8],
    touched: bool,
    readers: &'a AtomicUsize,
}
impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.touched {
            self.touched = true;
            self.readers.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
        }
        self.data.read(buf)
    }
}

#[test]
fn concurrent_apply_of_one_layer_extracts_once() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&tmp.path().join("root")).unwrap();
    let tar = Layer::new().file("a", &vec![1u8; 1 << 20]).build();
    let diff_id = sha256(&tar);
    let readers = AtomicUsize::new(0);
    let barrier = Arc::new(Barrier::new(4));
    let infos: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (s, tar, diff_id, readers, barrier) =
                    (s.clone(), &tar, &diff_id, &readers, barrier.clone());
                scope.spawn(move || {
                    barrier.wait();
                    let reader = Counting {
                        data: tar,
                        touched: false,
                        readers,
                    };
                    s.apply_layer(diff_id, None, diff_id, reader)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert_eq!(readers.load(Ordering::SeqCst), 1, "exactly one extraction");
    assert!(infos.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn unpack_then_commit_in_order() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = Snapshotter::open(&root).unwrap();
    let tars: Vec<Vec<u8>> = (0..3)
        .map(|i| Layer::new().file(&format!("f{i}"), b"x").build())
        .collect();
    // Unpack all layers in parallel (commit order does not constrain unpacking)...
    let unpacked: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = tars
            .iter()
            .map(|t| scope.spawn(|| s.unpack(&sha256(t), &t[..]).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // ...then commit them in order.
    let mut parent: Option<String> = None;
    for layer in unpacked {
        let chain = chain_id(parent.as_deref(), layer.diff_id());
        let info = layer.commit(&chain, parent.as_deref()).unwrap();
        assert_eq!(info.parent, parent);
        parent = Some(chain);
    }
    let rootfs = s
        .prepare_rootfs(parent.as_deref().unwrap(), &tmp.path().join("rw"))
        .unwrap();
    assert_eq!(rootfs.lowerdirs.len(), 3);
    assert!(rootfs.lowerdirs[0].join("f2").exists() && rootfs.lowerdirs[2].join("f0").exists());

    // A commit whose parent is not committed fails, and the unpacked copy is discarded.
    let orphan_tar = Layer::new().file("o", b"o").build();
    let orphan = s.unpack(&sha256(&orphan_tar), &orphan_tar[..]).unwrap();
    let missing = sha256(b"missing parent");
    let chain = chain_id(Some(&missing), orphan.diff_id());
    let err = orphan.commit(&chain, Some(&missing)).unwrap_err();
    assert!(
        matches!(err, SnapshotError::ParentNotFound { .. }),
        "{err:?}"
    );
    assert!(tmp_is_empty(&root));
    // Dropping an uncommitted layer removes it too.
    drop(s.unpack(&sha256(&orphan_tar), &orphan_tar[..]).unwrap());
    assert!(tmp_is_empty(&root));
}

#[test]
fn remove_refuses_parents_and_usage_tracks_content() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let s = Snapshotter::open(&root).unwrap();
    let baseline = s.usage().unwrap();

    let big = vec![0xa5u8; 1 << 20];
    let tars = vec![
        Layer::new()
            .file("big", &big)
            .hardlink("big-link", "big")
            .build(),
        Layer::new().file("small", b"small").build(),
    ];
    let chain = apply_chain(&s, &tars);
    let with_both = s.usage().unwrap();
    let grown = with_both.bytes - baseline.bytes;
    assert!(
        (1 << 20..2 << 20).contains(&grown),
        "1 MiB file counted once despite the hardlink: grew {grown}"
    );
    // snapshot dir, fs, info.json, the file (hardlink not counted twice) ×1, plus dir, fs, info.json, small.
    assert_eq!(with_both.inodes - baseline.inodes, 8);

    let err = s.remove(&chain[0]).unwrap_err();
    assert!(
        matches!(&err, SnapshotError::HasChildren { children, .. } if children == &vec![chain[1].clone()]),
        "{err:?}"
    );
    assert!(s.exists(&chain[0]));
    s.remove(&chain[1]).unwrap();
    s.remove(&chain[0]).unwrap();
    assert!(matches!(
        s.remove(&chain[0]),
        Err(SnapshotError::NotFound { .. })
    ));
    assert!(s.list().unwrap().is_empty());
    let after = s.usage().unwrap();
    assert_eq!(after.inodes, baseline.inodes);
    assert!(
        after.bytes <= baseline.bytes + 4096,
        "usage dropped back: {after:?} vs {baseline:?}"
    );
    assert!(tmp_is_empty(&root));
}
