//! Whiteout conversion and round trips of [`super::write_layer_tar`] (needs root: device nodes
//! and trusted xattrs, as the snapshotter itself).

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use super::*;
use crate::{Options, Snapshotter};

fn mknod_whiteout(path: &Path) {
    let c = sys::cstring(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain syscall on a valid C string.
    assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
}

fn set_opaque(path: &Path) {
    let c = sys::cstring(path.as_os_str().as_bytes()).unwrap();
    sys::lsetxattr(&c, OPAQUE_XATTR, b"y").unwrap();
}

/// name → (entry type, size, link target, content)
type Entries = BTreeMap<String, (tar::EntryType, u64, Option<String>, Vec<u8>)>;

fn entries(tar_bytes: &[u8]) -> Entries {
    let mut archive = tar::Archive::new(tar_bytes);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8(entry.path_bytes().to_vec()).unwrap();
        let kind = entry.header().entry_type();
        let size = entry.header().size().unwrap();
        let link = entry
            .link_name_bytes()
            .map(|l| String::from_utf8(l.to_vec()).unwrap());
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.insert(name, (kind, size, link, content));
    }
    out
}

fn upper() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("etc")).unwrap();
    fs::write(d.join("etc/new.conf"), b"hello").unwrap();
    fs::hard_link(d.join("etc/new.conf"), d.join("etc/again.conf")).unwrap();
    symlink("new.conf", d.join("etc/link")).unwrap();
    mknod_whiteout(&d.join("etc/gone"));
    fs::create_dir(d.join("opq")).unwrap();
    set_opaque(&d.join("opq"));
    fs::write(d.join("opq/kept"), b"k").unwrap();
    fs::set_permissions(d.join("etc/new.conf"), fs::Permissions::from_mode(0o4755)).unwrap();
    dir
}

#[test]
fn overlay_whiteouts_become_oci_whiteouts() {
    let dir = upper();
    let (tar_bytes, stats) = write_layer_tar(dir.path(), Vec::new()).unwrap();
    let e = entries(&tar_bytes);
    let names: Vec<&str> = e.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/.wh.gone",
            "etc/again.conf",
            "etc/link",
            "etc/new.conf",
            "opq/",
            "opq/.wh..wh..opq",
            "opq/kept"
        ]
    );
    assert_eq!(e["etc/.wh.gone"].0, tar::EntryType::Regular);
    assert_eq!(e["etc/.wh.gone"].1, 0);
    assert_eq!(e["opq/.wh..wh..opq"].0, tar::EntryType::Regular);
    // The first name of a hardlinked file carries the content; later ones link to it.
    assert_eq!(e["etc/again.conf"].3, b"hello");
    assert_eq!(e["etc/new.conf"].0, tar::EntryType::Link);
    assert_eq!(e["etc/new.conf"].2.as_deref(), Some("etc/again.conf"));
    assert_eq!(e["etc/link"].0, tar::EntryType::Symlink);
    assert_eq!(e["etc/link"].2.as_deref(), Some("new.conf"));
    assert_eq!(stats.whiteouts, 2);
    assert_eq!(stats.content_bytes, 6);
    // No trusted.overlay xattr travels in the tar.
    assert!(!tar_bytes.windows(15).any(|w| w == b"trusted.overlay"));
}

#[test]
fn the_same_directory_gives_the_same_tar() {
    let dir = upper();
    let (a, _) = write_layer_tar(dir.path(), Vec::new()).unwrap();
    let (b, _) = write_layer_tar(dir.path(), Vec::new()).unwrap();
    assert_eq!(a, b);
}

#[test]
fn a_written_layer_unpacks_back_to_the_overlay_form() {
    let dir = upper();
    let (tar_bytes, _) = write_layer_tar(dir.path(), Vec::new()).unwrap();
    let diff_id = format!("sha256:{}", hex::encode(sha2_digest(&tar_bytes)));
    let root = tempfile::tempdir().unwrap();
    let options = Options {
        sync: false,
        ..Default::default()
    };
    let snapshotter = Snapshotter::open_with(root.path(), options).unwrap();
    let info = snapshotter
        .apply_layer(&diff_id, None, &diff_id, tar_bytes.as_slice())
        .unwrap();
    let fs_dir = info.diff_dir;
    let gone = fs::symlink_metadata(fs_dir.join("etc/gone")).unwrap();
    assert_eq!(gone.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(gone.rdev(), 0);
    let opq = File::open(fs_dir.join("opq")).unwrap();
    assert_eq!(
        get_xattr(opq.as_fd(), OPAQUE_XATTR).as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(fs::read(fs_dir.join("opq/kept")).unwrap(), b"k");
    let new = fs::metadata(fs_dir.join("etc/new.conf")).unwrap();
    assert_eq!(new.mode() & 0o7777, 0o4755);
    assert_eq!(new.nlink(), 2);
    // And writing the snapshot out again gives the very same tar: a saved layer is stable.
    let (again, _) = write_layer_tar(&fs_dir, Vec::new()).unwrap();
    assert_eq!(again, tar_bytes);
}

#[test]
fn host_owners_map_back_to_container_owners() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("mapped"), b"m").unwrap();
    fs::write(dir.path().join("unmapped"), b"u").unwrap();
    std::os::unix::fs::lchown(dir.path().join("mapped"), Some(100_005), Some(100_007)).unwrap();
    std::os::unix::fs::lchown(dir.path().join("unmapped"), Some(42), Some(43)).unwrap();
    let range = IdRange {
        container_id: 0,
        host_id: 100_000,
        length: 65_536,
    };
    let ids = IdMap {
        uids: vec![range],
        gids: vec![range],
    };
    let (bytes, _) = write_layer_tar_mapped(dir.path(), Vec::new(), &ids).unwrap();
    let mut archive = tar::Archive::new(bytes.as_slice());
    let owners: BTreeMap<String, (u64, u64)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = String::from_utf8(e.path_bytes().to_vec()).unwrap();
            (name, (e.header().uid().unwrap(), e.header().gid().unwrap()))
        })
        .collect();
    assert_eq!(owners["mapped"], (5, 7));
    assert_eq!(owners["unmapped"], (42, 43));
}

fn sha2_digest(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

mod hex {
    pub(super) fn encode(bytes: Vec<u8>) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
