//! Streaming extraction of one layer tar into a directory, with OCI → overlayfs whiteout
//! conversion and the sha256 of the stream computed in the same pass.
//!
//! Safety model: the extraction dir is opened once as `root`. For each entry the path is
//! cleaned lexically (a leading `/` means the root; `..` above the root is refused), then its
//! parent is opened with openat2(`RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`) relative to `root` — the kernel
//! refuses (EXDEV) any resolution that would leave it, including through symlinks the layer
//! itself created — and the last component is created relative to that fd without following
//! it. Hardlink targets go through the same resolution. Nothing is ever looked up by an
//! absolute path, so a hostile layer cannot write outside `root`.

use std::cell::Cell;
use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use crate::create::{self, Attrs, Ctx, Fail};
use crate::digest::HashingReader;
use crate::error::SnapshotError;
use crate::path::{CleanPath, Whiteout};
use crate::sys;

/// Size of the read buffer and of each write to an extracted file. Large enough that hashing
/// and writing run in big chunks, small enough not to matter per concurrent unpack.
const BUF_SIZE: usize = 1 << 20;

/// What an unpack produced.
#[derive(Debug)]
pub(crate) struct Unpacked {
    /// `sha256:<hex>` of every byte of the tar stream (the layer's diff ID if it is genuine).
    pub(crate) digest: String,
    /// Length of the tar stream.
    pub(crate) tar_bytes: u64,
    /// Bytes of regular-file content written.
    pub(crate) content_bytes: u64,
    /// Tar entries processed.
    pub(crate) entries: u64,
}

/// Extracts `tar` into the existing, empty directory `dest`.
///
/// Reads the stream to its very end (past the tar trailer) so the digest covers the whole blob.
/// Fails with [`SnapshotError::LayerTooLarge`] as soon as the tar stream, or the file content
/// written, goes over `max_bytes`. On error the partly extracted `dest` is left for the caller
/// to remove.
pub(crate) fn unpack(
    dest: &Path,
    tar: impl Read,
    max_bytes: u64,
) -> Result<Unpacked, SnapshotError> {
    let root =
        std::fs::File::open(dest).map_err(|e| SnapshotError::io("open extraction dir", dest, e))?;
    let mut unpacker = Unpacker {
        root: OwnedFd::from(root),
        cached_parent: None,
        dir_times: Vec::new(),
        buf: vec![0; BUF_SIZE],
        content_bytes: 0,
        max_bytes,
        entries: 0,
    };
    let capped = Rc::new(Cell::new(false));
    // An error while the stream is over the cap is the cap's doing, whatever the tar crate
    // made of it.
    let tar_err = |entry: Option<String>| {
        let capped = capped.clone();
        move |source| {
            if capped.get() {
                SnapshotError::LayerTooLarge { limit: max_bytes }
            } else {
                SnapshotError::InvalidTar { entry, source }
            }
        }
    };

    let ends = Rc::new(StreamEnd::default());
    let capped_reader = Capped {
        inner: tar,
        left: max_bytes,
        hit: capped.clone(),
    };
    let mut archive = tar::Archive::new(TailPadding {
        inner: BufReader::with_capacity(BUF_SIZE, HashingReader::new(capped_reader)),
        ends: ends.clone(),
    });
    let mut entries = archive.entries().map_err(tar_err(None))?;
    loop {
        // Everything the tar crate reads while finding the next entry is headers and the bodies
        // of long-name/PAX entries, which it buffers whole: cap it so a (compressed) layer cannot
        // make it allocate gigabytes for one name.
        ends.header_read.set(Some(0));
        let next = entries.next();
        ends.header_read.set(None);
        let Some(entry) = next else { break };
        let mut entry = entry.map_err(|source| {
            if ends.header_too_large.get() {
                SnapshotError::InvalidTar {
                    entry: None,
                    source: invalid_owned(format!(
                        "an entry's headers (GNU long name/link, PAX records) exceed {MAX_HEADER_BYTES} bytes"
                    )),
                }
            } else {
                tar_err(None)(source)
            }
        })?;
        let done = unpacker.entry(&mut entry).and_then(|()| {
            // Read what the entry handler left (data of a type without content) so that the
            // tar crate only ever skips padding, and so a stream that ends inside the data is
            // caught here instead of passing for a short file.
            io::copy(&mut entry, &mut io::sink()).map_err(Fail::Tar)?;
            if ends.eof.get() {
                return Err(Fail::Tar(invalid(
                    "layer stream ends inside an entry's data",
                )));
            }
            ends.pad_until.set(ends.pos.get().next_multiple_of(BLOCK));
            Ok(())
        });
        done.map_err(|fail| {
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            if capped.get() {
                return SnapshotError::LayerTooLarge { limit: max_bytes };
            }
            match fail {
                Fail::TooLarge => SnapshotError::LayerTooLarge { limit: max_bytes },
                Fail::Unsafe(reason) => SnapshotError::UnsafePath {
                    entry: name,
                    reason,
                },
                Fail::Op(op, source) => SnapshotError::Extract {
                    entry: name,
                    op,
                    source,
                },
                Fail::Tar(source) => SnapshotError::InvalidTar {
                    entry: Some(name),
                    source,
                },
            }
        })?;
    }
    unpacker.restore_dir_times()?;

    // Hash whatever follows the end-of-archive marker too: the diff ID covers the whole blob.
    let mut rest = archive.into_inner().inner;
    loop {
        let n = rest.fill_buf().map_err(tar_err(None))?.len();
        if n == 0 {
            break;
        }
        rest.consume(n);
    }
    let (digest, tar_bytes) = rest.into_inner().finish();
    Ok(Unpacked {
        digest,
        tar_bytes,
        content_bytes: unpacker.content_bytes,
        entries: unpacker.entries,
    })
}

/// Passes at most `left` bytes through, then fails every read (and sets `hit`): the unpacked-size
/// cap on the uncompressed stream, which bounds a decompression bomb however it is built.
struct Capped<R> {
    inner: R,
    left: u64,
    hit: Rc<Cell<bool>>,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // One byte more than the cap tells a stream of exactly `max_bytes` from a longer one.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.hit.set(true);
            return Err(io::Error::other(
                "layer is larger than the unpacked-size cap",
            ));
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Tar block size: headers are one block, and entry data is padded to a whole number of them.
const BLOCK: u64 = 512;

/// What the unpack loop and [`TailPadding`] share about the stream's position and end.
#[derive(Default)]
struct StreamEnd {
    /// Bytes handed to the tar reader so far.
    pos: Cell<u64>,
    /// End of the padding after the last entry whose data was read completely.
    pad_until: Cell<u64>,
    /// Set when the stream really ended (not padding made up by [`TailPadding`]).
    eof: Cell<bool>,
    /// Bytes read since the tar crate started looking for the next entry, while it does.
    header_read: Cell<Option<u64>>,
    /// Set when `header_read` went over [`MAX_HEADER_BYTES`].
    header_too_large: Cell<bool>,
}

/// Most bytes of headers, GNU long names/links and PAX records one entry may have. The tar crate
/// reads long names and PAX records into memory whole; real ones are a few KiB at most (names are
/// capped at 4096 bytes by the kernel, xattrs at 64 KiB).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Supplies the zero padding a layer may omit after its last entry's data.
///
/// Some tools (`umoci insert`) end a layer right after the last file's data: no padding to 512
/// bytes and no end-of-archive blocks. docker and containerd (Go's archive/tar) accept that, so
/// this reader makes up zeros up to the next block boundary, but only once the last entry's
/// data has been read in full: a stream cut inside a header or inside data still fails. The
/// made-up bytes sit above the hashing reader, so the diff ID covers only what was received.
struct TailPadding<R> {
    inner: R,
    ends: Rc<StreamEnd>,
}

impl<R: Read> Read for TailPadding<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let buf = match self.ends.header_read.get() {
            None => buf,
            Some(read) => {
                if read >= MAX_HEADER_BYTES {
                    self.ends.header_too_large.set(true);
                    return Err(invalid("entry headers too large"));
                }
                let room = usize::try_from(MAX_HEADER_BYTES - read).unwrap_or(usize::MAX);
                let len = buf.len().min(room);
                &mut buf[..len]
            }
        };
        let mut n = self.inner.read(buf)?;
        if let Some(read) = self.ends.header_read.get() {
            self.ends.header_read.set(Some(read + n as u64));
        }
        let pos = self.ends.pos.get();
        if n == 0 && !buf.is_empty() {
            let missing = self.ends.pad_until.get().saturating_sub(pos);
            if missing == 0 {
                self.ends.eof.set(true);
            } else {
                n = buf
                    .len()
                    .min(usize::try_from(missing).unwrap_or(usize::MAX));
                buf[..n].fill(0);
            }
        }
        self.ends.pos.set(pos + n as u64);
        Ok(n)
    }
}

struct Unpacker {
    root: OwnedFd,
    /// The parent directory of the previous entry. Tars list many entries of one directory in a
    /// row, so this saves an openat2 per entry. It cannot go stale: an entry only ever removes
    /// things *inside* its parent, never the parent itself.
    cached_parent: Option<(Vec<u8>, OwnedFd)>,
    /// Directory mtimes, applied after everything else since creating children changes them.
    dir_times: Vec<(Vec<u8>, (i64, i64))>,
    buf: Vec<u8>,
    content_bytes: u64,
    /// Cap on `content_bytes` (the same number caps the tar stream).
    max_bytes: u64,
    entries: u64,
}

fn cstring(bytes: &[u8]) -> Result<CString, Fail> {
    sys::cstring(bytes).map_err(|_| Fail::Unsafe("path contains a NUL byte".into()))
}

/// Maps a failed beneath-lookup to a clear refusal when the kernel says it would escape.
fn resolve_fail(what: &'static str, e: io::Error) -> Fail {
    match e.raw_os_error() {
        Some(libc::EXDEV) => Fail::Unsafe(format!(
            "{what} resolves outside the layer root (through .. or a symlink)"
        )),
        Some(libc::ELOOP) => Fail::Unsafe(format!(
            "{what} resolves through a symlink loop or a magic link"
        )),
        _ => Fail::Op(what, e),
    }
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), Fail> {
        use tar::EntryType as T;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink
        ) {
            return Ok(());
        }
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let path = CleanPath::new(&raw).map_err(|reason| Fail::Unsafe(reason.into()))?;
        // Old (v7) tars mark directories as regular files with a trailing slash.
        let is_dir = kind == T::Directory || (kind == T::Regular && raw.ends_with(b"/"));

        if path.is_root() {
            if !is_dir {
                return Err(Fail::Unsafe(
                    "a non-directory entry would replace the layer root".into(),
                ));
            }
            let attrs = attrs(entry)?;
            create::directory_fd(self.root.as_fd(), &attrs)?;
            self.dir_times.push((Vec::new(), attrs.mtime));
            return Ok(());
        }

        let whiteout = crate::path::whiteout(path.name()).map_err(|r| Fail::Unsafe(r.into()))?;
        if whiteout == Whiteout::Meta {
            tracing::debug!(entry = %String::from_utf8_lossy(&raw), "skipping AUFS metadata entry");
            return Ok(());
        }
        let dir = self.parent(path.parent())?;
        let result = self.create(entry, kind, is_dir, &path, whiteout, &dir);
        self.cached_parent = Some((path.parent().to_vec(), dir));
        result
    }

    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: tar::EntryType,
        is_dir: bool,
        path: &CleanPath,
        whiteout: Whiteout<'_>,
        dir: &OwnedFd,
    ) -> Result<(), Fail> {
        use tar::EntryType as T;
        let dir = dir.as_fd();
        match whiteout {
            Whiteout::Opaque => return create::opaque(dir),
            Whiteout::Name(hidden) => return create::whiteout(dir, &cstring(hidden)?),
            Whiteout::Meta | Whiteout::None => {}
        }
        let name = cstring(path.name())?;
        let attrs = attrs(entry)?;
        match kind {
            _ if is_dir => {
                create::directory(dir, &name, &attrs)?;
                self.dir_times.push((path.as_bytes().to_vec(), attrs.mtime));
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                let budget = self.max_bytes.saturating_sub(self.content_bytes);
                self.content_bytes +=
                    create::regular(dir, &name, &attrs, entry, &mut self.buf, budget)?;
            }
            T::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Fail::Tar(invalid("symlink without a target")))?;
                create::symlink(dir, &name, &cstring(&target)?, &attrs)?;
            }
            T::Link => self.hardlink(entry, path, dir, &name)?,
            T::Char | T::Block | T::Fifo => {
                let file_type = match kind {
                    T::Char => libc::S_IFCHR,
                    T::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let (major, minor) = device_numbers(entry.header())?;
                create::node(dir, &name, file_type, libc::makedev(major, minor), &attrs)?;
            }
            other => {
                tracing::warn!(entry = %String::from_utf8_lossy(path.as_bytes()), kind = ?other, "skipping unsupported tar entry type");
            }
        }
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        path: &CleanPath,
        dir: std::os::fd::BorrowedFd<'_>,
        name: &CString,
    ) -> Result<(), Fail> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| Fail::Tar(invalid("hardlink without a target")))?;
        let target = CleanPath::new(&raw).map_err(|r| {
            Fail::Unsafe(format!(
                "hardlink target {:?}: {r}",
                String::from_utf8_lossy(&raw)
            ))
        })?;
        if target.is_root() {
            return Err(Fail::Unsafe("hardlink to the layer root".into()));
        }
        if target == *path {
            return Ok(()); // GNU tar writes these for files linked to themselves: nothing to do.
        }
        let target_name = cstring(target.name())?;
        if target.parent() == path.parent() {
            return create::hardlink(dir, &target_name, dir, name);
        }
        let target_dir = self
            .open_existing(target.parent())
            .map_err(|e| resolve_fail("hardlink target's directory", e))?;
        create::hardlink(target_dir.as_fd(), &target_name, dir, name)
    }

    /// Opens (creating if missing) the directory `parent`, beneath the root.
    fn parent(&mut self, parent: &[u8]) -> Result<OwnedFd, Fail> {
        if let Some((cached, _)) = &self.cached_parent
            && cached == parent
            && let Some((_, fd)) = self.cached_parent.take()
        {
            return Ok(fd);
        }
        self.cached_parent = None;
        match self.open_existing(parent) {
            Ok(fd) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => self.create_parents(parent),
            Err(e) => Err(resolve_fail("parent directory", e)),
        }
    }

    /// Opens an existing directory beneath the root (the root itself for an empty path).
    fn open_existing(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        if rel.is_empty() {
            return self.root.try_clone();
        }
        let c = sys::cstring(rel)?;
        sys::open_beneath(self.root.as_fd(), &c, libc::O_RDONLY | libc::O_DIRECTORY)
    }

    /// `mkdir -p` for parents a tar does not list: each missing component is created with
    /// mkdirat in its verified parent, root-owned 0755 as containerd does.
    fn create_parents(&self, rel: &[u8]) -> Result<OwnedFd, Fail> {
        let mut dir = self.root.try_clone().op("dup layer root fd")?;
        let mut end = 0;
        while end < rel.len() {
            let start = if end == 0 { 0 } else { end + 1 };
            end = rel[start..]
                .iter()
                .position(|b| *b == b'/')
                .map_or(rel.len(), |i| start + i);
            let prefix = &rel[..end];
            dir = match self.open_existing(prefix) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    match sys::mkdirat(dir.as_fd(), &cstring(&rel[start..end])?, 0o755) {
                        Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                            return Err(Fail::Op("create parent directory", e));
                        }
                        _ => {}
                    }
                    self.open_existing(prefix)
                        .map_err(|e| resolve_fail("parent directory", e))?
                }
                Err(e) => return Err(resolve_fail("parent directory", e)),
            };
        }
        Ok(dir)
    }

    /// Sets directory mtimes once all entries exist. A directory a later entry replaced (or
    /// moved behind a symlink) is skipped: its entry no longer describes what is on disk.
    fn restore_dir_times(&mut self) -> Result<(), SnapshotError> {
        self.cached_parent = None;
        for (path, (secs, nsecs)) in std::mem::take(&mut self.dir_times) {
            // O_NOFOLLOW: the last component must still be a directory itself.
            let opened = if path.is_empty() {
                self.root.try_clone()
            } else {
                sys::cstring(&path).and_then(|c| {
                    sys::open_beneath(
                        self.root.as_fd(),
                        &c,
                        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    )
                })
            };
            let fd = match opened {
                Ok(fd) => fd,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV)
                    ) =>
                {
                    continue;
                }
                Err(source) => {
                    return Err(SnapshotError::Extract {
                        entry: String::from_utf8_lossy(&path).into_owned(),
                        op: "open directory to set its mtime",
                        source,
                    });
                }
            };
            sys::futimens(fd.as_fd(), secs, nsecs).map_err(|source| SnapshotError::Extract {
                entry: String::from_utf8_lossy(&path).into_owned(),
                op: "set directory mtime",
                source,
            })?;
        }
        Ok(())
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn invalid_owned(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads ownership, mode, mtime and xattrs from the header and its PAX records (PAX `uid`/`gid`
/// are already folded into the header by the tar crate; PAX `mtime` is applied here).
fn attrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Attrs, Fail> {
    let header = entry.header();
    let old = header.as_old();
    let id = |v: u64| u32::try_from(v).map_err(|_| Fail::Tar(invalid("uid/gid out of range")));
    let mut attrs = Attrs {
        uid: id(numeric(&old.uid, header.uid())?)?,
        gid: id(numeric(&old.gid, header.gid())?)?,
        // Only the permission bits are kept, so the truncation is the masking.
        mode: (numeric(&old.mode, header.mode().map(u64::from))? & 0o7777) as u32,
        mtime: (
            i64::try_from(numeric(&old.mtime, header.mtime())?).unwrap_or(i64::MAX),
            0,
        ),
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry.pax_extensions().map_err(Fail::Tar)? {
        for ext in pax {
            let ext = ext.map_err(Fail::Tar)?;
            let key = ext.key_bytes();
            if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                let name = sys::cstring(xattr).map_err(Fail::Tar)?;
                attrs.xattrs.push((name, ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                attrs.mtime = parse_pax_time(ext.value_bytes())
                    .ok_or_else(|| Fail::Tar(invalid("bad PAX mtime")))?;
            }
        }
    }
    Ok(attrs)
}

/// A numeric header field, read as 0 when it is blank (all NUL/space) as Go's archive/tar
/// (and so containerd) does; the tar crate would reject it.
fn numeric(raw: &[u8], parsed: io::Result<u64>) -> Result<u64, Fail> {
    if raw.iter().all(|b| *b == 0 || *b == b' ') {
        return Ok(0);
    }
    parsed.map_err(Fail::Tar)
}

/// A device entry's major and minor numbers. Blank fields read as 0 (Python's tarfile leaves
/// them empty for FIFOs), and v7 headers, which have no such fields, give 0/0.
fn device_numbers(header: &tar::Header) -> Result<(u32, u32), Fail> {
    let raw = match (header.as_ustar(), header.as_gnu()) {
        (Some(h), _) => (&h.dev_major, &h.dev_minor),
        (None, Some(h)) => (&h.dev_major, &h.dev_minor),
        (None, None) => return Ok((0, 0)),
    };
    let field = |raw: &[u8], parsed: io::Result<Option<u32>>| {
        let value = numeric(raw, parsed.map(|v| u64::from(v.unwrap_or(0))))?;
        u32::try_from(value).map_err(|_| Fail::Tar(invalid("device number out of range")))
    };
    Ok((
        field(raw.0, header.device_major())?,
        field(raw.1, header.device_minor())?,
    ))
}

/// Parses a PAX time (`secs[.fraction]`, possibly negative) into seconds and nanoseconds.
fn parse_pax_time(value: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(value).ok()?;
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = int.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &frac[..frac.len().min(9)];
    let mut nsecs: i64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    for _ in digits.len()..9 {
        nsecs *= 10;
    }
    if int.starts_with('-') && nsecs > 0 {
        Some((secs - 1, 1_000_000_000 - nsecs))
    } else {
        Some((secs, nsecs))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pax_time;

    #[test]
    fn parses_pax_times() {
        assert_eq!(parse_pax_time(b"1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(
            parse_pax_time(b"1700000000.5"),
            Some((1_700_000_000, 500_000_000))
        );
        assert_eq!(parse_pax_time(b"1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"x"), None);
    }
}
