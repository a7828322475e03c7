//! CopyFrom's archive: a tar of one path of the container's rootfs, written while walking it with
//! descriptors. Every step below the resolved start opens one name relative to its parent's
//! descriptor with `O_NOFOLLOW`, so the walk never leaves the tree it started in: symlinks are
//! archived as symlinks, never followed.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::copy::IdMap;
use crate::resolve::{self, cstring};

/// Bounds the walk: a deeper tree is almost certainly a loop of bind mounts or a hostile one.
const MAX_DEPTH: usize = 256;

pub(crate) struct Walker<'a, W: Write> {
    out: tar::Builder<W>,
    ids: &'a IdMap,
    /// (dev, inode) of files with more than one link, and the archive name they first got.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<'a, W: Write> Walker<'a, W> {
    pub(crate) fn new(out: W, ids: &'a IdMap) -> Self {
        let mut out = tar::Builder::new(out);
        out.mode(tar::HeaderMode::Complete);
        Walker {
            out,
            ids,
            links: HashMap::new(),
        }
    }

    /// Archives what `fd` (an `O_PATH` descriptor, from a resolution in the root) is, as `name`.
    /// `reopen` resolves it again for reading, for a regular file's contents.
    pub(crate) fn archive_top(
        mut self,
        fd: &OwnedFd,
        reopen: impl FnOnce() -> io::Result<OwnedFd>,
        name: &Path,
    ) -> io::Result<W> {
        let st = resolve::fstat(fd.as_fd())?;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => self.dir(fd.as_fd(), &st, name, 0)?,
            libc::S_IFLNK => {
                let target = resolve::readlink_at(fd.as_fd(), c"")?;
                self.symlink(&st, name, &target)?;
            }
            libc::S_IFREG => {
                // The contents need a readable descriptor: resolved again, and checked to be
                // the very file resolved first.
                let file = reopen()?;
                let again = resolve::fstat(file.as_fd())?;
                if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
                    return Err(io::Error::from_raw_os_error(libc::EAGAIN));
                }
                self.file(file, &st, name)?;
            }
            _ => self.special(&st, name)?,
        }
        self.out.into_inner()
    }

    fn header(&self, st: &libc::stat64, kind: EntryType) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(self.ids.container_uid(st.st_uid) as u64);
        h.set_gid(self.ids.container_gid(st.st_gid) as u64);
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        h
    }

    fn dir(
        &mut self,
        fd: BorrowedFd<'_>,
        st: &libc::stat64,
        name: &Path,
        depth: usize,
    ) -> io::Result<()> {
        if depth > MAX_DEPTH {
            return Err(io::Error::other(format!(
                "{} is more than {MAX_DEPTH} directories deep",
                name.display()
            )));
        }
        let mut h = self.header(st, EntryType::Directory);
        self.out.append_data(&mut h, name, io::empty())?;
        for child in resolve::list_dir(fd)? {
            self.child(fd, &child, &name.join(&child), depth)?;
        }
        Ok(())
    }

    fn child(
        &mut self,
        dir: BorrowedFd<'_>,
        child: &OsString,
        name: &Path,
        depth: usize,
    ) -> io::Result<()> {
        let c = cstring(child)?;
        let st = match resolve::lstatat(dir, &c) {
            Ok(st) => st,
            // Deleted by the running container meanwhile: not in the archive.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                let sub = match resolve::open_at(dir, &c, libc::O_PATH | libc::O_DIRECTORY, 0) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                    Err(e) => return Err(e),
                };
                let st = resolve::fstat(sub.as_fd())?;
                self.dir(sub.as_fd(), &st, name, depth + 1)
            }
            libc::S_IFLNK => {
                let target = resolve::readlink_at(dir, &c)?;
                self.symlink(&st, name, &target)
            }
            libc::S_IFREG => {
                let file = match resolve::open_at(dir, &c, libc::O_RDONLY | libc::O_NONBLOCK, 0) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                    Err(e) => return Err(e),
                };
                // Swapped for something else between the stat and the open: use what was
                // opened, if it is still a file.
                let st = resolve::fstat(file.as_fd())?;
                if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                    return Ok(());
                }
                self.file(file, &st, name)
            }
            _ => self.special(&st, name),
        }
    }

    fn symlink(&mut self, st: &libc::stat64, name: &Path, target: &OsString) -> io::Result<()> {
        let mut h = self.header(st, EntryType::Symlink);
        h.set_mode(0o777);
        append_link_raw(&mut self.out, &mut h, name, target.as_bytes())
    }

    fn file(&mut self, file: OwnedFd, st: &libc::stat64, name: &Path) -> io::Result<()> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(st, EntryType::Link);
                return append_link_raw(&mut self.out, &mut h, name, first.as_os_str().as_bytes());
            }
            self.links.insert(key, name.to_path_buf());
        }
        let size = st.st_size.max(0) as u64;
        let mut h = self.header(st, EntryType::Regular);
        h.set_size(size);
        let contents = Exactly {
            inner: std::fs::File::from(file),
            left: size,
        };
        self.out.append_data(&mut h, name, contents)
    }

    /// Devices and FIFOs as headers; sockets are not archivable (tar has no type for them).
    fn special(&mut self, st: &libc::stat64, name: &Path) -> io::Result<()> {
        let kind = match st.st_mode & libc::S_IFMT {
            libc::S_IFCHR => EntryType::Char,
            libc::S_IFBLK => EntryType::Block,
            libc::S_IFIFO => EntryType::Fifo,
            _ => return Ok(()),
        };
        let mut h = self.header(st, kind);
        if kind != EntryType::Fifo {
            h.set_device_major(libc::major(st.st_rdev))?;
            h.set_device_minor(libc::minor(st.st_rdev))?;
        }
        self.out.append_data(&mut h, name, io::empty())
    }
}

/// Bytes of a link name's header field.
const LINK_FIELD: usize = 100;

/// A link entry whose target is stored byte for byte (tar's own `append_link` normalises it,
/// turning `/` into `//`), in a GNU long-link entry before it when it does not fit the header.
pub(crate) fn append_link_raw<W: Write>(
    out: &mut tar::Builder<W>,
    header: &mut Header,
    name: &Path,
    target: &[u8],
) -> io::Result<()> {
    header.set_size(0);
    if target.len() > LINK_FIELD {
        let mut long = Header::new_gnu();
        long.set_entry_type(EntryType::GNULongLink);
        long.set_path("././@LongLink")?;
        long.set_mode(0o644);
        long.set_size(target.len() as u64 + 1);
        long.set_cksum();
        out.append(&long, target.chain(&[0u8][..]))?;
        header.set_link_name_literal(&target[..LINK_FIELD])?;
    } else {
        header.set_link_name_literal(target)?;
    }
    out.append_data(header, name, io::empty())
}

/// A file's contents as the header promised them: `left` bytes exactly. A file a running
/// container shrinks meanwhile is padded with zeros, one it grows is cut, so the archive stays
/// well-formed either way.
struct Exactly<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want])? {
            0 => {
                buf[..want].fill(0);
                want
            }
            n => n,
        };
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_targets_are_kept_byte_for_byte() {
        let long = "t/".repeat(80);
        let mut b = tar::Builder::new(Vec::new());
        for (name, target) in [("root", "/"), ("up", "../../.."), ("long", long.as_str())] {
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Symlink);
            append_link_raw(&mut b, &mut h, Path::new(name), target.as_bytes()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let links: Vec<(String, String)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.path().unwrap().display().to_string();
                let link = e.link_name().unwrap().unwrap().display().to_string();
                (name, link)
            })
            .collect();
        assert_eq!(links[0], ("root".to_string(), "/".to_string()));
        assert_eq!(links[1].1, "../../..");
        assert_eq!(links[2].1, long);
    }

    #[test]
    fn contents_keep_the_promised_length() {
        let mut short = Exactly {
            inner: &b"ab"[..],
            left: 4,
        };
        let mut out = Vec::new();
        short.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"ab\0\0");
        let mut long = Exactly {
            inner: &b"abcdef"[..],
            left: 3,
        };
        out.clear();
        long.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
    }
}
