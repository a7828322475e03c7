//! CopyTo's extraction: a tar archive written into a directory of the container's rootfs.
//!
//! Each entry's path must be relative and free of `..` (refused otherwise). Its parent is resolved
//! in the root (`RESOLVE_IN_ROOT`: symlinks there mean the container's paths, never the host's),
//! and everything done to the entry itself is relative to that parent's descriptor without
//! following a symlink: an existing symlink where an entry goes is replaced, never written
//! through. A running container may race with all this; it can at most redirect a write to
//! another place inside its own rootfs.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use tar::EntryType;

use crate::copy::IdMap;
use crate::error::ContainerError;
use crate::resolve::{self, Root, cstring};

/// What an extraction did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    pub entries: u64,
    pub bytes: u64,
}

fn invalid(msg: String) -> ContainerError {
    ContainerError::InvalidCopy(msg)
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ContainerError + use<> {
    let path = path.to_path_buf();
    move |source| ContainerError::CopyPath { op, path, source }
}

/// Extracts `archive` into `dest` (a container path of an existing directory).
pub(crate) fn extract(
    root: &Root,
    dest: &Path,
    archive: impl Read,
    ids: &IdMap,
) -> Result<CopyStats, ContainerError> {
    let dest_fd = root
        .dir(dest)
        .map_err(io_err("open the destination", dest))?;
    drop(dest_fd);
    let mut stats = CopyStats::default();
    // Directory times are set last: the entries written into them change them.
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    let mut archive = tar::Archive::new(archive);
    let entries = archive
        .entries()
        .map_err(|e| invalid(format!("reading the archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| invalid(format!("reading the archive: {e}")))?;
        let raw_path = entry
            .path()
            .map_err(|e| invalid(format!("an entry's path: {e}")))?
            .into_owned();
        let Some(parts) = resolve::archive_path(&raw_path) else {
            return Err(invalid(format!(
                "archive entry {}: absolute paths and \"..\" are not allowed",
                raw_path.display()
            )));
        };
        let Some((name, parents)) = parts.split_last() else {
            continue; // "." itself: the destination, which exists
        };
        let mut parent = dest.to_path_buf();
        parent.extend(parents);
        let target = parent.join(name);
        let header = entry.header();
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let id = |id: u64| {
            u32::try_from(id).map_err(|_| {
                invalid(format!(
                    "entry {}: owner id {id} is out of range",
                    raw_path.display()
                ))
            })
        };
        let uid = id(header.uid().unwrap_or(0))?;
        let gid = id(header.gid().unwrap_or(0))?;
        let mtime = header.mtime().unwrap_or(0) as i64;
        let (host_uid, host_gid) = ids.host_ids(uid, gid).ok_or_else(|| {
            invalid(format!(
                "archive entry {}: owner {uid}:{gid} is not mapped in the pod's user namespace",
                raw_path.display()
            ))
        })?;
        let owner = ids.root_owner();
        let parent_fd = root
            .ensure_dir(&parent, owner)
            .map_err(io_err("resolve", &parent))?;
        let parent_fd = parent_fd.as_fd();
        let c = cstring(name).map_err(io_err("name", &target))?;
        let existing = match resolve::lstatat(parent_fd, &c) {
            Ok(st) => Some(st.st_mode & libc::S_IFMT),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(io_err("stat", &target)(e)),
        };
        let is_dir_entry = kind == EntryType::Directory;
        match existing {
            Some(libc::S_IFDIR) if !is_dir_entry => {
                return Err(invalid(format!(
                    "cannot overwrite directory {} with a non-directory",
                    target.display()
                )));
            }
            Some(libc::S_IFDIR) => {}
            Some(_) if is_dir_entry => {
                // A symlink (or file) where a directory goes is replaced, never followed.
                resolve::unlinkat(parent_fd, &c, 0).map_err(io_err("remove", &target))?;
            }
            Some(_) => resolve::unlinkat(parent_fd, &c, 0).map_err(io_err("remove", &target))?,
            None => {}
        }
        let chown = |what| io_err(what, &target);
        match kind {
            EntryType::Directory => {
                if existing != Some(libc::S_IFDIR) {
                    resolve::mkdirat(parent_fd, &c, 0o700).map_err(chown("mkdir"))?;
                }
                resolve::fchownat(parent_fd, &c, host_uid, host_gid).map_err(chown("chown"))?;
                resolve::fchmodat_nofollow(parent_fd, &c, mode).map_err(chown("chmod"))?;
                dir_times.push((target.clone(), mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = resolve::open_at(
                    parent_fd,
                    &c,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                    0o600,
                )
                .map_err(chown("create"))?;
                let mut file = std::fs::File::from(fd);
                stats.bytes += io::copy(&mut entry, &mut file).map_err(chown("write"))?;
                std::os::unix::fs::fchown(&file, Some(host_uid), Some(host_gid))
                    .map_err(chown("chown"))?;
                // After the chown, which clears set-id bits.
                // SAFETY: a valid descriptor and a mode.
                let rc = unsafe { libc::fchmod(file.as_raw_fd(), mode) };
                if rc < 0 {
                    return Err(chown("chmod")(io::Error::last_os_error()));
                }
                resolve::set_mtime_at(parent_fd, &c, mtime).map_err(chown("set times of"))?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(|e| invalid(format!("a symlink's target: {e}")))?
                    .ok_or_else(|| {
                        invalid(format!("symlink {} has no target", raw_path.display()))
                    })?
                    .into_owned();
                let to = cstring(link.as_os_str()).map_err(chown("symlink"))?;
                // SAFETY: NUL-terminated target and name, a valid dirfd.
                let rc = unsafe { libc::symlinkat(to.as_ptr(), parent_fd.as_raw_fd(), c.as_ptr()) };
                if rc < 0 {
                    return Err(chown("symlink")(io::Error::last_os_error()));
                }
                resolve::fchownat(parent_fd, &c, host_uid, host_gid).map_err(chown("chown"))?;
                resolve::set_mtime_at(parent_fd, &c, mtime).map_err(chown("set times of"))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(|e| invalid(format!("a hard link's target: {e}")))?
                    .ok_or_else(|| {
                        invalid(format!("hard link {} has no target", raw_path.display()))
                    })?
                    .into_owned();
                let Some(link_parts) = resolve::archive_path(&link) else {
                    return Err(invalid(format!(
                        "hard link {} -> {}: absolute targets and \"..\" are not allowed",
                        raw_path.display(),
                        link.display()
                    )));
                };
                let mut source = dest.to_path_buf();
                source.extend(link_parts);
                hard_link(root, &source, parent_fd, &c).map_err(chown("link"))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let kind_bits = match kind {
                    EntryType::Char => libc::S_IFCHR,
                    EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = libc::makedev(major, minor);
                // SAFETY: a valid dirfd, a NUL-terminated name, a mode and a device number.
                let rc = unsafe {
                    libc::mknodat(parent_fd.as_raw_fd(), c.as_ptr(), kind_bits | 0o600, dev)
                };
                if rc < 0 {
                    return Err(chown("mknod")(io::Error::last_os_error()));
                }
                resolve::fchownat(parent_fd, &c, host_uid, host_gid).map_err(chown("chown"))?;
                resolve::fchmodat_nofollow(parent_fd, &c, mode).map_err(chown("chmod"))?;
                resolve::set_mtime_at(parent_fd, &c, mtime).map_err(chown("set times of"))?;
            }
            // pax global headers and the like carry nothing to write.
            _ => continue,
        }
        stats.entries += 1;
    }
    for (dir, mtime) in dir_times.iter().rev() {
        let Some((parent, name)) = resolve::split_last(dir) else {
            continue;
        };
        // Best effort: a directory a later entry replaced is no longer there to date.
        if let (Ok(fd), Ok(c)) = (root.dir(&parent), cstring(&name)) {
            let _ = resolve::set_mtime_at(fd.as_fd(), &c, *mtime);
        }
    }
    Ok(stats)
}

/// A hard link at `name` in `parent` to what `source` (a container path) names, itself: a
/// symlink there is linked, not followed.
fn hard_link(
    root: &Root,
    source: &Path,
    parent: std::os::fd::BorrowedFd<'_>,
    name: &CString,
) -> io::Result<()> {
    let fd = root.resolve(source, libc::O_PATH, false)?;
    let st = resolve::fstat(fd.as_fd())?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Err(io::Error::from_raw_os_error(libc::EPERM));
    }
    // SAFETY: valid descriptors, an empty path with AT_EMPTY_PATH (the descriptor itself) and a
    // NUL-terminated new name.
    let rc = unsafe {
        libc::linkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            parent.as_raw_fd(),
            name.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Reads the bytes of a channel of chunks as one stream (the archive a client streams in).
pub(crate) struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl ChannelReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<io::Result<Vec<u8>>>) -> Self {
        ChannelReader {
            rx,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at >= self.chunk.len() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Names of an extracted tree, for tests.
#[cfg(test)]
fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o640);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_000_000);
        h.set_entry_type(EntryType::Regular);
        // set_path refuses "..", which a hostile archive has: write the name raw.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn setup() -> (tempfile::TempDir, PathBuf, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        std::fs::create_dir_all(root.join("dest")).unwrap();
        let r = Root::open(&root).unwrap();
        (tmp, root, r)
    }

    #[test]
    fn files_get_the_archives_owner_mode_and_time() {
        let (_tmp, root, r) = setup();
        let tar = archive(|b| file(b, "sub/f", b"hello"));
        let stats = extract(&r, Path::new("/dest"), &tar[..], &IdMap::default()).unwrap();
        assert_eq!(
            stats,
            CopyStats {
                entries: 1,
                bytes: 5
            }
        );
        let md = std::fs::metadata(root.join("dest/sub/f")).unwrap();
        assert_eq!(
            (md.uid(), md.gid(), md.mode() & 0o7777),
            (1234, 5678, 0o640)
        );
        assert_eq!(md.mtime(), 1_000_000);
        assert_eq!(std::fs::read(root.join("dest/sub/f")).unwrap(), b"hello");
    }

    #[test]
    fn hostile_archives_stay_inside() {
        let (tmp, root, r) = setup();
        for bad in ["../escape", "/abs", "a/../../b"] {
            let tar = archive(|b| file(b, bad, b"x"));
            let e = extract(&r, Path::new("/dest"), &tar[..], &IdMap::default()).unwrap_err();
            assert!(matches!(e, ContainerError::InvalidCopy(_)), "{bad}: {e}");
        }
        assert!(!tmp.path().join("escape").exists());
        // An existing symlink where a file goes is replaced, not written through.
        std::fs::write(tmp.path().join("host"), "host").unwrap();
        symlink(tmp.path().join("host"), root.join("dest/link")).unwrap();
        // A symlink to "/" in the container: writes through it land in the rootfs.
        symlink("/", root.join("dest/up")).unwrap();
        symlink("../../../..", root.join("dest/rel")).unwrap();
        let tar = archive(|b| {
            file(b, "link", b"new");
            file(b, "up/etc-file", b"in root");
            file(b, "rel/rel-file", b"in root too");
        });
        extract(&r, Path::new("/dest"), &tar[..], &IdMap::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("host")).unwrap(),
            "host"
        );
        assert_eq!(std::fs::read(root.join("dest/link")).unwrap(), b"new");
        assert_eq!(std::fs::read(root.join("etc-file")).unwrap(), b"in root");
        assert_eq!(
            std::fs::read(root.join("rel-file")).unwrap(),
            b"in root too"
        );
        assert_eq!(names(tmp.path()), ["host", "rootfs"]);
        // A destination that is a symlink out resolves inside too.
        symlink("/../../..", root.join("destlink")).unwrap();
        let tar = archive(|b| file(b, "top", b"t"));
        extract(&r, Path::new("/destlink"), &tar[..], &IdMap::default()).unwrap();
        assert!(root.join("top").exists() && !tmp.path().join("top").exists());
    }

    #[test]
    fn user_namespace_owners_are_shifted() {
        let (_tmp, root, r) = setup();
        let ids = IdMap::shifted(100_000, 65536);
        let tar = archive(|b| file(b, "f", b"x"));
        extract(&r, Path::new("/dest"), &tar[..], &ids).unwrap();
        let md = std::fs::metadata(root.join("dest/f")).unwrap();
        assert_eq!((md.uid(), md.gid()), (101_234, 105_678));
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(0);
        h.set_uid(70_000);
        h.set_path("g").unwrap();
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
        let tar = b.into_inner().unwrap();
        assert!(extract(&r, Path::new("/dest"), &tar[..], &ids).is_err());
    }
}
