//! Helpers shared by the integration tests: building layer tars (including hostile entries the
//! `tar` crate's builder would refuse), and inspecting what landed on disk.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_snapshot::{Options, Snapshotter, chain_id};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;

/// The unpacker needs root (chown, mknod, trusted xattrs, mounts); fail clearly otherwise.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "berth-snapshot tests must run as root");
}

pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!(
        "sha256:{}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// A layer tar under construction.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

fn header(kind: EntryType, mode: u32, uid: u64, gid: u64, mtime: u64, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub fn dir_full(mut self, path: &str, mode: u32, uid: u64, gid: u64, mtime: u64) -> Self {
        let mut h = header(EntryType::Directory, mode, uid, gid, mtime, 0);
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    pub fn dir(self, path: &str) -> Self {
        self.dir_full(path, 0o755, 0, 0, MTIME)
    }

    pub fn file_full(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
        mtime: u64,
    ) -> Self {
        let mut h = header(EntryType::Regular, mode, uid, gid, mtime, data.len() as u64);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    pub fn file(self, path: &str, data: &[u8]) -> Self {
        self.file_full(path, data, 0o644, 0, 0, MTIME)
    }

    /// A regular file preceded by a PAX header carrying `records` (e.g. `SCHILY.xattr.*`).
    pub fn file_pax(
        mut self,
        path: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        records: &[(&str, &[u8])],
    ) -> Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        let mut h = header(EntryType::Regular, mode, uid, uid, MTIME, data.len() as u64);
        self.builder.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A directory preceded by a PAX header carrying `records`.
    pub fn dir_pax(mut self, path: &str, records: &[(&str, &[u8])]) -> Self {
        self.builder
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        let mut h = header(EntryType::Directory, 0o755, 0, 0, MTIME, 0);
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// A ready-made header and its data, appended as they are.
    pub fn header(mut self, h: &Header, data: &[u8]) -> Self {
        self.builder.append(h, data).unwrap();
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Symlink, 0o777, 0, 0, MTIME, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(EntryType::Link, 0o644, 0, 0, MTIME, 0);
        self.builder.append_link(&mut h, path, target).unwrap();
        self
    }

    pub fn node(mut self, path: &str, kind: EntryType, mode: u32, major: u32, minor: u32) -> Self {
        let mut h = header(kind, mode, 0, 0, MTIME, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.builder.append_data(&mut h, path, &[][..]).unwrap();
        self
    }

    /// An entry whose name and link name bytes are written straight into the header, as a
    /// hostile layer would: the builder refuses `..` and absolute names.
    pub fn raw(mut self, kind: EntryType, name: &str, link: &str, data: &[u8]) -> Self {
        let mut h = header(kind, 0o644, 0, 0, MTIME, data.len() as u64);
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn build(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

/// Applies `tars` as a chain; returns the chain IDs.
pub fn apply_chain(s: &Snapshotter, tars: &[Vec<u8>]) -> Vec<String> {
    let mut parent: Option<String> = None;
    let mut chain = Vec::new();
    for tar in tars {
        let diff_id = sha256(tar);
        let id = chain_id(parent.as_deref(), &diff_id);
        s.apply_layer(&id, parent.as_deref(), &diff_id, &tar[..])
            .unwrap();
        chain.push(id.clone());
        parent = Some(id);
    }
    chain
}

pub fn no_sync() -> Options {
    let mut options = Options::default();
    options.sync = false;
    options
}

pub fn lgetxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: buffers are valid for the given lengths.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    Some(buf)
}

/// Everything under `dir`: relative path → (type+mode, size, symlink target). Used to prove
/// that a refused layer changed nothing.
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, (u32, u64, Option<PathBuf>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let md = entry.metadata().unwrap();
            let link = md
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(entry.path()).unwrap());
            out.insert(
                entry.path().strip_prefix(dir).unwrap().to_path_buf(),
                (md.mode(), md.len(), link),
            );
            if md.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    out
}

/// Whether anything is mounted at `target` (per /proc/self/mountinfo).
pub fn is_mounted(target: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let target = target.to_str().unwrap();
    info.lines().any(|l| l.split(' ').nth(4) == Some(target))
}
