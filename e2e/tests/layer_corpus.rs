//! Layers written by tools other than Berth (umoci, buildah, skopeo, Python's tarfile, GNU tar;
//! built by `hack/layer-corpus.sh`), pulled by a real berthd and compared file by file with what
//! GNU tar extracts from the same layers, applied in order with overlay's whiteout rules. Plus the
//! hostile names the leading-`/` normalisation must keep refusing.

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_cri_api::v1 as cri;
use berth_e2e::containers::try_pull;
use berth_e2e::oci_layout::{Entry, RawTar, sha256, write_image};
use berth_e2e::registry::{PrivateRegistry, SHARED};
use berth_e2e::{Berthd, Options};
use tonic::Code;

/// Every image `hack/layer-corpus.sh` pushes, as `berth-test/corpus-<name>:latest`.
const CORPUS: &[&str] = &[
    "umoci-repack",
    "umoci-insert",
    "buildah",
    "skopeo-zstd",
    "skopeo-gzip9",
    "skopeo-v2s2",
    "skopeo-from-v2s2",
    "skopeo-docker-archive",
    "skopeo-uncompressed",
    "py-gnu",
    "py-pax",
    "py-ustar",
    "py-no-trailer",
    "py-cut-after-data",
    "py-sparse",
    "py-whiteout",
    "py-dotslash",
];

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.v2+json";

fn reference(name: &str) -> String {
    format!("{SHARED}/berth-test/corpus-{name}:latest")
}

fn no_cni() -> Options {
    Options {
        cni: false,
        ..Options::default()
    }
}

async fn chain_id(berthd: &Berthd, image: &str) -> String {
    let status = berthd
        .images()
        .await
        .unwrap()
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    info["chainID"].as_str().unwrap().to_string()
}

/// `curl` from the shared registry (plain HTTP): the same bytes berthd pulled, fetched without
/// any of Berth's code.
fn fetch(path: &str, accept: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("curl");
    cmd.args(["-fsSL", "--max-time", "60"]);
    if let Some(accept) = accept {
        cmd.args(["-H", &format!("Accept: {accept}")]);
    }
    let out = cmd
        .arg(format!("http://{SHARED}/v2/{path}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl {path}: {} (run hack/layer-corpus.sh)",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Pipes `input` through `cmd` and returns its output.
fn filter(cmd: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    // tar stops reading at the end-of-archive marker: what follows may meet a closed pipe.
    if let Err(e) = writer.join().unwrap() {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{cmd:?}: {e}");
    }
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The image's layer tars (uncompressed, each checked against its diff ID), in order.
fn layer_tars(name: &str) -> Vec<Vec<u8>> {
    let repo = format!("berth-test/corpus-{name}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&fetch(&format!("{repo}/manifests/latest"), Some(ACCEPT))).unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&fetch(&format!("{repo}/blobs/{config_digest}"), None)).unwrap();
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), diff_ids.len(), "{name}");
    layers
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| {
            let blob = fetch(
                &format!("{repo}/blobs/{}", layer["digest"].as_str().unwrap()),
                None,
            );
            assert_eq!(sha256(&blob), layer["digest"].as_str().unwrap(), "{name}");
            let media_type = layer["mediaType"].as_str().unwrap();
            eprintln!(
                "{name}: layer {} ({media_type}, {} bytes)",
                layer["digest"],
                blob.len()
            );
            // By the data, as containerd and docker decide (and Berth): skopeo-uncompressed's
            // plain tars are labelled gzip. The diff ID check below says the choice was right.
            let tar = if blob.starts_with(&[0x1f, 0x8b]) {
                filter(Command::new("gzip").arg("-dc"), &blob)
            } else if blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                filter(Command::new("zstd").args(["-dc", "-q"]), &blob)
            } else {
                blob
            };
            assert_eq!(
                sha256(&tar),
                diff_id.as_str().unwrap(),
                "{name} {media_type}"
            );
            tar
        })
        .collect()
}

/// `rel` under `root`, refusing anything that resolves outside (the reference extraction must
/// not touch the host either).
fn beneath(root: &Path, rel: &str) -> Option<PathBuf> {
    let path = root.join(rel.trim_start_matches('/'));
    let parent = path.parent()?.canonicalize().ok()?;
    parent.starts_with(root).then_some(path)
}

fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => std::fs::remove_dir_all(path).unwrap(),
        Ok(_) => std::fs::remove_file(path).unwrap(),
        Err(_) => {}
    }
}

/// Applies one layer with GNU tar, as overlay would see it on top of what `root` holds: the
/// layer's whiteouts first remove lower files, opaque markers empty lower directories.
fn gnu_tar_apply(root: &Path, tar: &[u8]) {
    // GNU tar wants whole blocks and the end-of-archive marker, which some corpus layers lack
    // (on purpose): append them. The members are the same.
    let mut padded = tar.to_vec();
    padded.resize(tar.len().next_multiple_of(512) + 1024, 0);
    let names = filter(Command::new("tar").args(["-t", "-f", "-"]), &padded);
    for name in String::from_utf8(names).unwrap().lines() {
        let name = name.trim_start_matches('/').trim_start_matches("./");
        let (dir, base) = name.rsplit_once('/').unwrap_or(("", name));
        if base == ".wh..wh..opq" {
            if let Some(dir) = beneath(root, &format!("{dir}/x")).and_then(|p| {
                p.parent()
                    .filter(|d| d.symlink_metadata().is_ok_and(|m| m.is_dir()))
                    .map(Path::to_path_buf)
            }) {
                for entry in std::fs::read_dir(&dir).unwrap() {
                    remove(&entry.unwrap().path());
                }
            }
        } else if let Some(hidden) = base.strip_prefix(".wh.")
            && let Some(path) = beneath(root, &format!("{dir}/{hidden}"))
        {
            remove(&path);
        }
    }
    filter(
        Command::new("tar")
            .args(["-x", "-f", "-", "--same-owner", "--same-permissions"])
            .args(["--xattrs", "--xattrs-include=*", "--numeric-owner"])
            .args(["--exclude=.wh.*", "-C"])
            .arg(root),
        &padded,
    );
}

/// What is compared of one file.
#[derive(Debug, PartialEq, Eq)]
struct Node {
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    /// Size and sha256 of a regular file, target of a symlink, rdev of a device.
    content: String,
    xattrs: BTreeMap<String, Vec<u8>>,
    /// The other names of a hardlinked regular file.
    links: Vec<String>,
}

// llistxattr and lgetxattr: std has no xattr calls.
#[allow(unsafe_code)]
fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: the buffer is valid for its length; the path is NUL-terminated.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(n >= 0, "llistxattr {}", path.display());
    names.truncate(n as usize);
    let mut out = BTreeMap::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        // Overlay's own bookkeeping (opaque markers) and LSM labels are not layer content.
        if key.starts_with("trusted.overlay.") || key == "security.selinux" {
            continue;
        }
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 65536];
        // SAFETY: as above.
        let len = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(len >= 0, "lgetxattr {key} on {}", path.display());
        value.truncate(len as usize);
        out.insert(key, value);
    }
    out
}

/// Every file under `root` (not `root` itself: its attributes are the container's upper dir's).
fn snapshot_tree(root: &Path) -> BTreeMap<String, Node> {
    let mut nodes = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let (kind, content) = if ft.is_dir() {
                stack.push(path.clone());
                ('d', String::new())
            } else if ft.is_file() {
                inodes.entry(md.ino()).or_default().push(rel.clone());
                let data = std::fs::read(&path).unwrap();
                ('f', format!("{} {}", data.len(), sha256(&data)))
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                ('l', target.to_string_lossy().into_owned())
            } else if ft.is_char_device() || ft.is_block_device() {
                let kind = if ft.is_char_device() { 'c' } else { 'b' };
                (kind, format!("{:x}", md.rdev()))
            } else {
                ('p', String::new())
            };
            let node = Node {
                kind,
                mode: if kind == 'l' { 0 } else { md.mode() & 0o7777 },
                uid: md.uid(),
                gid: md.gid(),
                content,
                xattrs: xattrs(&path),
                links: Vec::new(),
            };
            nodes.insert(rel, node);
        }
    }
    for group in inodes.values().filter(|g| g.len() > 1) {
        for name in group {
            let mut others: Vec<String> = group.iter().filter(|o| *o != name).cloned().collect();
            others.sort();
            if let Some(node) = nodes.get_mut(name) {
                node.links = others;
            }
        }
    }
    nodes
}

fn assert_same_tree(name: &str, expected: &BTreeMap<String, Node>, got: &BTreeMap<String, Node>) {
    let mut diffs = Vec::new();
    for (path, want) in expected {
        match got.get(path) {
            Some(have) if have == want => {}
            Some(have) => diffs.push(format!("{path}: tar {want:?}\n   berth {have:?}")),
            None => diffs.push(format!("{path}: missing in berth's rootfs")),
        }
    }
    for path in got.keys().filter(|p| !expected.contains_key(*p)) {
        diffs.push(format!("{path}: only in berth's rootfs"));
    }
    assert!(
        diffs.is_empty(),
        "{name}: berth's rootfs differs from GNU tar's extraction ({} paths):\n{}",
        diffs.len(),
        diffs
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Mounts the image's snapshots as a container's rootfs is mounted and returns its tree.
/// berthd's snapshots, opened once per test after berthd stopped. Once, because the store is
/// flock()ed: a child another test forks (gzip, tar, curl) holds a copy of the lock's fd until its
/// exec, so closing and reopening at once can find the store still locked.
fn snapshots_of(berthd: &Berthd) -> berth_snapshot::Snapshotter {
    berth_snapshot::Snapshotter::open(&berthd.root.join("snapshots")).unwrap()
}

fn berth_rootfs(
    berthd: &Berthd,
    snapshots: &berth_snapshot::Snapshotter,
    chain_id: &str,
) -> BTreeMap<String, Node> {
    let rw = berthd.dir.join("rw");
    let merged = berthd.dir.join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    let rootfs = snapshots.prepare_rootfs(chain_id, &rw).unwrap();
    rootfs.mount(&merged, false).unwrap();
    let tree = std::panic::catch_unwind(|| snapshot_tree(&merged));
    berth_snapshot::unmount(&merged).unwrap();
    std::fs::remove_dir_all(&rw).unwrap();
    tree.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

#[tokio::test]
async fn corpus_images_match_gnu_tar_file_by_file() {
    let mut berthd = Berthd::start_with("corpus", no_cni()).await.unwrap();
    let mut chains = Vec::new();
    for name in CORPUS {
        let image = reference(name);
        try_pull(&berthd, &image)
            .await
            .unwrap_or_else(|e| panic!("pull {image} (run hack/layer-corpus.sh): {e:?}"));
        chains.push(chain_id(&berthd, &image).await);
    }
    assert!(berthd.stop().unwrap().success());
    let snapshots = snapshots_of(&berthd);
    for (name, chain) in CORPUS.iter().zip(&chains) {
        let reference_dir = berthd.dir.join(format!("gnu-tar-{name}"));
        std::fs::create_dir_all(&reference_dir).unwrap();
        let reference_dir = reference_dir.canonicalize().unwrap();
        for tar in layer_tars(name) {
            gnu_tar_apply(&reference_dir, &tar);
        }
        let expected = snapshot_tree(&reference_dir);
        assert!(!expected.is_empty(), "{name}: GNU tar extracted nothing");
        assert_same_tree(name, &expected, &berth_rootfs(&berthd, &snapshots, chain));
        std::fs::remove_dir_all(&reference_dir).unwrap();
    }
    drop(snapshots);
    berthd.finish();
}

#[tokio::test]
async fn normalised_names_still_cannot_escape() {
    let berthd = Berthd::start_with("corpus-hostile", no_cni())
        .await
        .unwrap();
    let registry = PrivateRegistry::start(&berthd.dir).unwrap();
    let canary = berthd.dir.join("canary");
    std::fs::create_dir_all(&canary).unwrap();
    std::fs::write(canary.join("keep"), "canary").unwrap();
    let canary_abs = canary.to_string_lossy().into_owned();
    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "slash-dotdot",
            RawTar::default()
                .entry(Entry::File(
                    &format!("/../../../..{canary_abs}/pwned"),
                    b"x",
                ))
                .finish(),
        ),
        (
            "dot-slash-dotdot",
            RawTar::default()
                .entry(Entry::File("./../../../../pwned", b"x"))
                .finish(),
        ),
        (
            "hardlink-slash-dotdot",
            RawTar::default()
                .entry(Entry::Hardlink("passwd", "/../etc/passwd"))
                .finish(),
        ),
        (
            "symlink-then-slash-write",
            RawTar::default()
                .entry(Entry::Symlink("evil", &canary_abs))
                .entry(Entry::File("/evil/pwned", b"x"))
                .finish(),
        ),
        (
            "slash-symlink-then-write",
            RawTar::default()
                .entry(Entry::Symlink("/evil", &canary_abs))
                .entry(Entry::File("./evil/pwned", b"x"))
                .finish(),
        ),
        (
            "symlink-then-slash-whiteout",
            RawTar::default()
                .entry(Entry::Symlink("evil", &canary_abs))
                .entry(Entry::File("/evil/.wh.keep", b""))
                .finish(),
        ),
        (
            "hardlink-through-slash-symlink",
            RawTar::default()
                .entry(Entry::Symlink("/etc", "/etc"))
                .entry(Entry::Hardlink("passwd", "/etc/passwd"))
                .finish(),
        ),
    ];
    // A host path written with a leading `/` is a path inside the layer.
    let inside = RawTar::default()
        .entry(Entry::File(
            &format!("{canary_abs}/inside"),
            b"in the layer",
        ))
        .finish();
    let layout = berthd.dir.join("layout");
    let all = refused
        .iter()
        .map(|(n, l)| (*n, l))
        .chain([("inside", &inside)]);
    for (name, layer) in all {
        write_image(&layout, name, std::slice::from_ref(layer)).unwrap();
        registry
            .push(&layout, name, &format!("hostile/{name}:latest"))
            .unwrap();
    }
    let canary_entries = || {
        let mut e: Vec<_> = std::fs::read_dir(&canary)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        e.sort();
        e
    };
    for (name, _) in &refused {
        let err = try_pull(
            &berthd,
            &format!("{}/hostile/{name}:latest", registry.address),
        )
        .await
        .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err:?}");
        assert_eq!(
            canary_entries(),
            ["keep"],
            "{name} wrote into the canary dir"
        );
        assert_eq!(std::fs::read(canary.join("keep")).unwrap(), b"canary");
        assert!(!Path::new("/pwned").exists(), "{name}");
    }
    let inside_image = format!("{}/hostile/inside:latest", registry.address);
    try_pull(&berthd, &inside_image).await.unwrap();
    assert_eq!(
        canary_entries(),
        ["keep"],
        "the layer's file stays in the layer"
    );
    let chain = chain_id(&berthd, &inside_image).await;
    drop(registry);
    let mut berthd = berthd;
    assert!(berthd.stop().unwrap().success());
    let snapshots = snapshots_of(&berthd);
    let tree = berth_rootfs(&berthd, &snapshots, &chain);
    let inside_path = format!("{}/inside", canary_abs.trim_start_matches('/'));
    assert_eq!(
        tree[&inside_path].content,
        format!("12 {}", sha256(b"in the layer"))
    );
    assert_eq!(
        snapshots.list().unwrap().len(),
        1,
        "only the harmless image left a snapshot"
    );
    drop(snapshots);
    berthd.finish();
}
