//! Writing an overlay directory back out as an OCI layer tar: a container's upper dir for
//! `commit`, or a snapshot's diff dir when its original blob is gone (`save`).
//!
//! Both hold overlayfs' form of a diff; the tar gets the OCI form (image-spec layer.md):
//! - a whiteout (a 0:0 character device) becomes an empty regular file `.wh.<name>`;
//! - a directory with `trusted.overlay.opaque=y` is written, then an empty `<dir>/.wh..wh..opq`;
//! - `trusted.overlay.*` xattrs are never written (they steer overlayfs, not the image), nor
//!   `security.selinux` (a label of this host); other xattrs go in PAX `SCHILY.xattr.` records,
//!   as the unpacker reads them.
//!
//! The walk is fd-relative (openat with `O_NOFOLLOW`, lstat of one component), so a running
//! container that swaps a directory for a symlink while it is copied cannot make this read a file
//! outside the directory. Entries are written in byte order of their names, with the files' own
//! mtimes, so the same directory always gives the same tar (and diff ID). A running container is
//! copied as its files are when each is read; an entry that vanishes meanwhile is left out, and a
//! file that shrinks is padded with zeros to the size it had when its header was written.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::SnapshotError;
use crate::sys;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";

/// What [`write_layer_tar`] wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LayerTarStats {
    /// Tar entries, whiteouts included.
    pub entries: u64,
    /// Regular-file content bytes.
    pub content_bytes: u64,
    /// Whiteouts and opaque markers written.
    pub whiteouts: u64,
}

/// One range of an id mapping: `length` ids from `host_id` on disk are `container_id` on in the
/// image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub container_id: u32,
    pub host_id: u32,
    pub length: u32,
}

/// How the owners on disk become the owners in the tar: a container of a pod with its own user
/// namespace writes its upper dir with host ids, which the image must not carry. Ids no range
/// covers are kept as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    pub uids: Vec<IdRange>,
    pub gids: Vec<IdRange>,
}

impl IdMap {
    fn back(ranges: &[IdRange], id: u32) -> u32 {
        ranges
            .iter()
            .find(|r| id >= r.host_id && id - r.host_id < r.length)
            .map_or(id, |r| r.container_id + (id - r.host_id))
    }
}

/// Writes the overlay-form diff in `dir` as an OCI layer tar (uncompressed) to `out`, and
/// returns `out` (so a caller can finish its compressor or hasher).
pub fn write_layer_tar<W: Write>(dir: &Path, out: W) -> Result<(W, LayerTarStats), SnapshotError> {
    write_layer_tar_mapped(dir, out, &IdMap::default())
}

/// [`write_layer_tar`] with owners mapped from host ids back to container ids.
pub fn write_layer_tar_mapped<W: Write>(
    dir: &Path,
    out: W,
    ids: &IdMap,
) -> Result<(W, LayerTarStats), SnapshotError> {
    let root = File::open(dir).map_err(|e| SnapshotError::io("open", dir, e))?;
    let mut walker = Walker {
        root: dir.to_path_buf(),
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        stats: LayerTarStats::default(),
        ids: ids.clone(),
    };
    walker.walk(root.as_fd(), b"")?;
    let out = walker
        .builder
        .into_inner()
        .map_err(|e| SnapshotError::io("finish layer tar", dir, e))?;
    Ok((out, walker.stats))
}

struct Walker<W: Write> {
    root: PathBuf,
    builder: tar::Builder<W>,
    /// (dev, ino) of multiply-linked files already written → their tar path.
    links: HashMap<(u64, u64), Vec<u8>>,
    stats: LayerTarStats,
    ids: IdMap,
}

impl<W: Write> Walker<W> {
    fn fail(&self, op: &'static str, path: &[u8], e: io::Error) -> SnapshotError {
        SnapshotError::io(op, self.root.join(OsStr::from_bytes(path)), e)
    }

    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &[u8]) -> Result<(), SnapshotError> {
        // /proc/self/fd/N is the directory this fd holds, whatever its path became meanwhile.
        let listing = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(&listing)
            .map_err(|e| self.fail("list", prefix, e))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        for name in names {
            let path = [prefix, name.as_slice()].concat();
            let cname = sys::cstring(&name).map_err(|e| self.fail("name", &path, e))?;
            let Some(st) = sys::lstatat(dir, &cname).map_err(|e| self.fail("lstat", &path, e))?
            else {
                continue; // removed since listed
            };
            if name.starts_with(WHITEOUT_PREFIX) {
                // A real file of that name cannot be told from a whiteout in the OCI form.
                tracing::warn!(path = %String::from_utf8_lossy(&path), "left out of the layer: its name is reserved for whiteouts");
                continue;
            }
            self.entry(dir, &cname, &name, &path, &st)?;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        cname: &CStr,
        name: &[u8],
        path: &[u8],
        st: &libc::stat,
    ) -> Result<(), SnapshotError> {
        let kind = st.st_mode & libc::S_IFMT;
        let mut header = header_for(st);
        header.set_uid(u64::from(IdMap::back(&self.ids.uids, st.st_uid)));
        header.set_gid(u64::from(IdMap::back(&self.ids.gids, st.st_gid)));
        match kind {
            libc::S_IFDIR => {
                let Some(fd) = open(dir, cname, libc::O_DIRECTORY)
                    .map_err(|e| self.fail("open directory", path, e))?
                else {
                    return Ok(());
                };
                header.set_entry_type(tar::EntryType::Directory);
                let dir_path = [path, b"/"].concat();
                self.xattrs(fd.as_fd(), path)?;
                self.append(&mut header, &dir_path, io::empty())?;
                if get_xattr(fd.as_fd(), OPAQUE_XATTR).as_deref() == Some(b"y") {
                    let marker = [dir_path.as_slice(), OPAQUE_MARKER].concat();
                    self.append(&mut whiteout_header(), &marker, io::empty())?;
                    self.stats.whiteouts += 1;
                }
                self.walk(fd.as_fd(), &dir_path)?;
            }
            libc::S_IFCHR if st.st_rdev == 0 => {
                let parent = &path[..path.len() - name.len()];
                let hidden = [parent, WHITEOUT_PREFIX, name].concat();
                self.append(&mut whiteout_header(), &hidden, io::empty())?;
                self.stats.whiteouts += 1;
            }
            libc::S_IFREG => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1
                    && let Some(first) = self.links.get(&key).cloned()
                {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    return self.link(&mut header, path, &first);
                }
                let Some(fd) = open(dir, cname, 0).map_err(|e| self.fail("open", path, e))? else {
                    return Ok(());
                };
                header.set_entry_type(tar::EntryType::Regular);
                let size = st.st_size.max(0) as u64;
                header.set_size(size);
                self.xattrs(fd.as_fd(), path)?;
                // Exactly `size` bytes whatever the file does meanwhile: a tar entry cannot change
                // its length after its header.
                let data = File::from(fd).take(size).chain(io::repeat(0)).take(size);
                self.append(&mut header, path, data)?;
                self.stats.content_bytes += size;
                if st.st_nlink > 1 {
                    self.links.insert(key, path.to_vec());
                }
            }
            libc::S_IFLNK => {
                let target = std::fs::read_link(
                    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()))
                        .join(OsStr::from_bytes(name)),
                );
                let target = match target {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(self.fail("readlink", path, e)),
                };
                header.set_entry_type(tar::EntryType::Symlink);
                self.link(&mut header, path, target.as_os_str().as_bytes())?;
            }
            libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
                header.set_entry_type(match kind {
                    libc::S_IFIFO => tar::EntryType::Fifo,
                    libc::S_IFCHR => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                if kind != libc::S_IFIFO {
                    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
                    header
                        .set_device_major(major)
                        .and_then(|()| header.set_device_minor(minor))
                        .map_err(|e| self.fail("device numbers", path, e))?;
                }
                self.append(&mut header, path, io::empty())?;
            }
            // Sockets belong to a running process, not to an image (docker leaves them out too).
            _ => {}
        }
        Ok(())
    }

    fn append(
        &mut self,
        header: &mut tar::Header,
        path: &[u8],
        data: impl Read,
    ) -> Result<(), SnapshotError> {
        self.stats.entries += 1;
        let result = self
            .builder
            .append_data(header, OsStr::from_bytes(path), data);
        result.map_err(|e| self.fail("write tar entry", path, e))
    }

    fn link(
        &mut self,
        header: &mut tar::Header,
        path: &[u8],
        target: &[u8],
    ) -> Result<(), SnapshotError> {
        self.stats.entries += 1;
        let result =
            self.builder
                .append_link(header, OsStr::from_bytes(path), OsStr::from_bytes(target));
        result.map_err(|e| self.fail("write tar entry", path, e))
    }

    /// The entry's xattrs as a PAX header placed before it.
    fn xattrs(&mut self, fd: BorrowedFd<'_>, path: &[u8]) -> Result<(), SnapshotError> {
        let mut records: Vec<(String, Vec<u8>)> = Vec::new();
        for name in list_xattrs(fd) {
            let Ok(text) = std::str::from_utf8(&name) else {
                continue;
            };
            if text.starts_with("trusted.overlay.") || text == "security.selinux" {
                continue;
            }
            let Ok(cname) = sys::cstring(&name) else {
                continue;
            };
            if let Some(value) = get_xattr(fd, &cname) {
                records.push((format!("SCHILY.xattr.{text}"), value));
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        records.sort();
        let result = self
            .builder
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        result.map_err(|e| self.fail("write xattrs", path, e))
    }
}

fn header_for(st: &libc::stat) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_mode(st.st_mode & 0o7777);
    header.set_uid(u64::from(st.st_uid));
    header.set_gid(u64::from(st.st_gid));
    header.set_mtime(st.st_mtime.max(0) as u64);
    header.set_size(0);
    header
}

fn whiteout_header() -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_size(0);
    header.set_mtime(0);
    header
}

/// Opens one component without following a symlink; `None` if it vanished.
fn open(dir: BorrowedFd<'_>, name: &CStr, flags: libc::c_int) -> io::Result<Option<OwnedFd>> {
    match sys::openat(dir, name, libc::O_RDONLY | libc::O_NOFOLLOW | flags, 0) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn list_xattrs(fd: BorrowedFd<'_>) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for writes of its length for the duration of the call.
        let n = unsafe { libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            return buf
                .split(|b| *b == 0)
                .filter(|n| !n.is_empty())
                .map(<[u8]>::to_vec)
                .collect();
        }
        // ERANGE: the list grew; anything else (ENOTSUP on some filesystems): no xattrs.
        if io::Error::last_os_error().raw_os_error() == Some(libc::ERANGE) && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
        } else {
            return Vec::new();
        }
    }
}

fn get_xattr(fd: BorrowedFd<'_>, name: &CStr) -> Option<Vec<u8>> {
    // The kernel caps an xattr value at 64 KiB.
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `name` is a C string and `buf` is valid for writes of its length.
    let n = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

#[cfg(test)]
#[path = "layer_tar_tests.rs"]
mod tests;
