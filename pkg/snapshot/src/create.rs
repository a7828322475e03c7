//! Creating one tar entry inside an already-verified parent directory fd.
//!
//! Every function here gets the parent as an fd (opened beneath the layer root by the caller)
//! and a single path component, and uses *at calls that never follow a symlink in that last
//! component. Ownership is applied before the mode (chown clears setuid/setgid) and before
//! xattrs (chown clears `security.capability`); timestamps come last.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use crate::sys;

/// Why creating an entry failed; the unpacker turns it into a `SnapshotError` naming the entry.
#[derive(Debug)]
pub(crate) enum Fail {
    /// The entry tries to reach outside the layer root.
    Unsafe(String),
    /// A syscall failed while doing `op`.
    Op(&'static str, io::Error),
    /// Reading the entry's header or data from the tar failed.
    Tar(io::Error),
    /// The layer's content went over the unpacked-size cap.
    TooLarge,
}

pub(crate) trait Ctx<T> {
    fn op(self, op: &'static str) -> Result<T, Fail>;
}

impl<T> Ctx<T> for io::Result<T> {
    fn op(self, op: &'static str) -> Result<T, Fail> {
        self.map_err(|e| Fail::Op(op, e))
    }
}

/// Ownership, permissions, timestamps and xattrs from a tar header (and its PAX records).
#[derive(Debug, Default)]
pub(crate) struct Attrs {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Permission bits including setuid/setgid/sticky (`0o7777` mask).
    pub(crate) mode: u32,
    pub(crate) mtime: (i64, i64),
    pub(crate) xattrs: Vec<(CString, Vec<u8>)>,
}

fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

/// Removes whatever is at `name` in `dir` (a whole tree for a directory), so a later tar entry
/// can replace an earlier one. `std::fs::remove_dir_all` is symlink-safe (it walks with
/// openat/O_NOFOLLOW); it reaches the directory through the verified fd's `/proc/self/fd` path.
fn remove_existing(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match sys::lstatat(dir, name)? {
        None => Ok(()),
        Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
            let path = sys::proc_fd_path(dir, name);
            std::fs::remove_dir_all(Path::new(std::ffi::OsStr::from_bytes(path.as_bytes())))
        }
        Some(_) => sys::unlinkat(dir, name, 0),
    }
}

/// Runs `create`; if it fails with EEXIST, removes the existing entry and runs it once more.
/// Trying first keeps the common case (a new name) at one syscall.
fn replacing<T>(
    dir: BorrowedFd<'_>,
    name: &CStr,
    mut create: impl FnMut() -> io::Result<T>,
) -> Result<T, Fail> {
    match create() {
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            remove_existing(dir, name).op("remove existing entry")?;
            create().op("create")
        }
        other => other.op("create"),
    }
}

/// Xattrs a layer may not set: `trusted.overlay.*` would let layer content steer overlayfs
/// (opaque dirs, redirects, metacopy origins) behind the whiteout conversion's back.
fn allowed_xattr(name: &CStr) -> bool {
    !name.to_bytes().starts_with(b"trusted.overlay.")
}

/// Applies xattrs with `set`, skipping those the filesystem cannot store (ENOTSUP), and, for
/// symlinks and device nodes, `user.*` ones the kernel refuses (EPERM): both would make an
/// otherwise fine image unpullable on some hosts, as containerd also tolerates.
fn apply_xattrs(
    attrs: &Attrs,
    special: bool,
    mut set: impl FnMut(&CStr, &[u8]) -> io::Result<()>,
) -> Result<(), Fail> {
    for (name, value) in &attrs.xattrs {
        if !allowed_xattr(name) {
            tracing::warn!(xattr = ?name, "skipping overlayfs-private xattr from layer");
            continue;
        }
        match set(name, value) {
            Ok(()) => {}
            Err(e)
                if errno(&e) == Some(libc::ENOTSUP)
                    || (special && errno(&e) == Some(libc::EPERM)) =>
            {
                tracing::warn!(xattr = ?name, error = %e, "skipping xattr the filesystem refuses");
            }
            Err(e) => return Err(Fail::Op("set xattr", e)),
        }
    }
    Ok(())
}

/// Applies owner, mode, xattrs and times through an fd open on the entry itself.
fn apply_fd(fd: BorrowedFd<'_>, attrs: &Attrs, times: bool) -> Result<(), Fail> {
    sys::fchown(fd, attrs.uid, attrs.gid).op("chown")?;
    sys::fchmod(fd, attrs.mode).op("chmod")?;
    apply_xattrs(attrs, false, |n, v| sys::fsetxattr(fd, n, v))?;
    if times {
        sys::futimens(fd, attrs.mtime.0, attrs.mtime.1).op("set times")?;
    }
    Ok(())
}

/// Creates a regular file with O_EXCL|O_NOFOLLOW and streams the entry's data into it.
/// Returns the number of bytes written; fails with [`Fail::TooLarge`] before writing more than
/// `budget` bytes (a GNU sparse entry of a few header blocks can describe terabytes of holes,
/// which the tar crate reads back as zeros).
pub(crate) fn regular(
    dir: BorrowedFd<'_>,
    name: &CStr,
    attrs: &Attrs,
    data: &mut dyn Read,
    buf: &mut [u8],
    budget: u64,
) -> Result<u64, Fail> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
    let fd: OwnedFd = replacing(dir, name, || sys::openat(dir, name, flags, 0o600))?;
    let mut file = File::from(fd);
    let mut written = 0u64;
    loop {
        let n = match data.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::Tar(e)),
        };
        if written + n as u64 > budget {
            return Err(Fail::TooLarge);
        }
        file.write_all(&buf[..n]).op("write file")?;
        written += n as u64;
    }
    apply_fd(file.as_fd(), attrs, true)?;
    Ok(written)
}

/// Creates a directory, or merges into an existing one (a later entry for the same directory
/// only updates its attributes). Its mtime is left to the caller's final pass, since creating
/// children changes it.
pub(crate) fn directory(dir: BorrowedFd<'_>, name: &CStr, attrs: &Attrs) -> Result<(), Fail> {
    match sys::mkdirat(dir, name, 0o755) {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(libc::EEXIST) => {
            let is_dir = sys::lstatat(dir, name)
                .op("stat existing entry")?
                .is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
            if !is_dir {
                remove_existing(dir, name).op("remove existing entry")?;
                sys::mkdirat(dir, name, 0o755).op("create directory")?;
            }
        }
        Err(e) => return Err(Fail::Op("create directory", e)),
    }
    let fd = sys::openat(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
    .op("open directory")?;
    apply_fd(fd.as_fd(), attrs, false)
}

/// Applies a directory entry's attributes to an already-open directory (the layer root, for
/// `./` entries).
pub(crate) fn directory_fd(fd: BorrowedFd<'_>, attrs: &Attrs) -> Result<(), Fail> {
    apply_fd(fd, attrs, false)
}

/// Applies owner, xattrs and times to something that cannot be opened safely (symlink, device,
/// fifo): by name relative to `dir`, never following the last component.
fn apply_at(dir: BorrowedFd<'_>, name: &CStr, attrs: &Attrs) -> Result<(), Fail> {
    sys::lchownat(dir, name, attrs.uid, attrs.gid).op("chown")?;
    if !attrs.xattrs.is_empty() {
        let path = sys::proc_fd_path(dir, name);
        apply_xattrs(attrs, true, |n, v| sys::lsetxattr(&path, n, v))?;
    }
    sys::lutimesat(dir, name, attrs.mtime.0, attrs.mtime.1).op("set times")
}

/// Creates a symlink. Its target is stored verbatim (absolute or relative, anywhere): it is
/// only data here, and the unpacker never follows it outside the root.
pub(crate) fn symlink(
    dir: BorrowedFd<'_>,
    name: &CStr,
    target: &CStr,
    attrs: &Attrs,
) -> Result<(), Fail> {
    if target.is_empty() {
        return Err(Fail::Op(
            "create symlink",
            io::Error::new(io::ErrorKind::InvalidInput, "empty symlink target"),
        ));
    }
    replacing(dir, name, || sys::symlinkat(target, dir, name))?;
    apply_at(dir, name, attrs)
}

/// Creates a hardlink to `target_name` in `target_dir` (both verified by the caller).
pub(crate) fn hardlink(
    target_dir: BorrowedFd<'_>,
    target_name: &CStr,
    dir: BorrowedFd<'_>,
    name: &CStr,
) -> Result<(), Fail> {
    replacing(dir, name, || {
        sys::linkat(target_dir, target_name, dir, name)
    })
}

/// Creates a character/block device or fifo. `kind` is `S_IFCHR`, `S_IFBLK` or `S_IFIFO`.
pub(crate) fn node(
    dir: BorrowedFd<'_>,
    name: &CStr,
    kind: libc::mode_t,
    dev: libc::dev_t,
    attrs: &Attrs,
) -> Result<(), Fail> {
    replacing(dir, name, || sys::mknodat(dir, name, kind | 0o600, dev))?;
    sys::lchownat(dir, name, attrs.uid, attrs.gid).op("chown")?;
    // mknodat just created a non-symlink here, so fchmodat (which has no NOFOLLOW) is safe.
    sys::fchmodat(dir, name, attrs.mode).op("chmod")?;
    if !attrs.xattrs.is_empty() {
        let path = sys::proc_fd_path(dir, name);
        apply_xattrs(attrs, true, |n, v| sys::lsetxattr(&path, n, v))?;
    }
    sys::lutimesat(dir, name, attrs.mtime.0, attrs.mtime.1).op("set times")
}

/// Converts an OCI whiteout for `hidden` into the overlayfs form: a 0:0 character device.
pub(crate) fn whiteout(dir: BorrowedFd<'_>, hidden: &CStr) -> Result<(), Fail> {
    replacing(dir, hidden, || sys::mknodat(dir, hidden, libc::S_IFCHR, 0))?;
    Ok(())
}

/// Converts an OCI opaque marker into `trusted.overlay.opaque=y` on the directory itself.
pub(crate) fn opaque(dir: BorrowedFd<'_>) -> Result<(), Fail> {
    sys::fsetxattr(dir, c"trusted.overlay.opaque", b"y").op("set trusted.overlay.opaque")
}
