//! Arbitrary bytes as an uncompressed layer tar, unpacked by the snapshotter.
//!
//! Properties: nothing panics; nothing is created, changed or removed outside the snapshot root
//! (a canary directory beside it stays exactly as it was, and the root holds nothing but the
//! snapshotter's own layout); a refused or failed unpack leaves no temp dir behind. The input's
//! own sha256 is given as the diff ID, so a layer that unpacks is also committed (and then
//! removed again), covering the commit path and the lenient end-of-stream handling (missing
//! padding and trailer) alike. The unpacked-size cap is set low so sparse-file and many-entry
//! bombs end quickly.
#![no_main]
// A panic in a fuzz target is a finding: its asserts, unwraps and expects are the properties.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_snapshot::{Options, SnapshotError, Snapshotter, chain_id};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

struct Env {
    _tmp: tempfile::TempDir,
    canary: PathBuf,
    root: PathBuf,
    snapshotter: Snapshotter,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("temp dir");
        let canary = tmp.path().join("outside");
        fs::create_dir(&canary).unwrap();
        fs::write(canary.join("precious"), b"untouched").unwrap();
        let root = tmp.path().join("root");
        let mut options = Options::default();
        options.sync = false;
        options.max_unpacked_bytes = 8 << 20;
        let snapshotter = Snapshotter::open_with(&root, options).expect("open snapshotter");
        Env {
            _tmp: tmp,
            canary,
            root,
            snapshotter,
        }
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    let diff_id = format!("sha256:{:x}", Sha256::digest(data));
    let chain = chain_id(None, &diff_id);
    match env.snapshotter.apply_layer(&chain, None, &diff_id, data) {
        Ok(info) => {
            assert!(info.diff_dir.starts_with(&env.root));
            env.snapshotter.remove(&chain).expect("remove snapshot");
        }
        Err(
            SnapshotError::UnsafePath { .. }
            | SnapshotError::InvalidTar { .. }
            | SnapshotError::Extract { .. }
            | SnapshotError::LayerTooLarge { .. },
        ) => {}
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
    // Nothing outside the root changed, and nothing stays behind inside it.
    let parent = env.root.parent().unwrap();
    assert_eq!(names(parent), ["outside", "root"]);
    assert_eq!(names(&env.canary), ["precious"]);
    assert!(
        fs::symlink_metadata(env.canary.join("precious"))
            .unwrap()
            .is_file()
    );
    assert_eq!(fs::read(env.canary.join("precious")).unwrap(), b"untouched");
    assert_eq!(names(&env.root), ["lock", "snapshots", "tmp"]);
    assert!(
        names(&env.root.join("tmp")).is_empty(),
        "temp dir left behind"
    );
    assert!(names(&env.root.join("snapshots")).is_empty());
});
