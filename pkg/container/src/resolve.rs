//! Paths of a container resolved beneath its rootfs on the host, for `berth cp` and `berth top`.
//!
//! Everything in the rootfs is the container's to shape: a symlink `/etc -> /` or
//! `x -> ../../../..` must mean the container's `/`, never the host's. So paths are never joined
//! onto the rootfs path and opened: each is resolved with `openat2(RESOLVE_IN_ROOT)` from a
//! descriptor of the rootfs (the kernel then treats that directory as `/` for absolute symlinks
//! and `..`), with magic links (`/proc/self/root`-style escapes) refused and mount points not
//! crossed. What is then done to a path's last component happens relative to its resolved parent
//! with `*at` calls that do not follow a symlink there.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

/// How often a resolution is retried when the kernel reports a concurrent rename (EAGAIN).
const RETRIES: usize = 16;

/// The container's rootfs, as the root every path is resolved in.
pub(crate) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens the rootfs directory itself (a path of berthd's, not the container's).
    pub(crate) fn open(rootfs: &Path) -> io::Result<Root> {
        let path = cstring(rootfs.as_os_str())?;
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: a NUL-terminated path and flags; the result is a new descriptor or -1.
        let fd = unsafe { libc::open(path.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Root {
            // SAFETY: just returned to us, owned by nobody else.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The root directory's own stat.
    pub(crate) fn stat(&self) -> io::Result<libc::stat64> {
        fstat(self.fd.as_fd())
    }

    /// Resolves `path` (container-absolute or relative to its `/`) in the root and opens it with
    /// `flags`. A final symlink is followed (inside the root) only with `follow`.
    pub(crate) fn resolve(&self, path: &Path, flags: i32, follow: bool) -> io::Result<OwnedFd> {
        let mut flags = flags | libc::O_CLOEXEC;
        if !follow {
            flags |= libc::O_NOFOLLOW;
        }
        let path = if path.as_os_str().is_empty() {
            Path::new("/")
        } else {
            path
        };
        openat2_in_root(self.fd.as_fd(), path, flags)
    }

    /// The directory `path` names, as an `O_PATH` descriptor; symlinks followed in the root.
    pub(crate) fn dir(&self, path: &Path) -> io::Result<OwnedFd> {
        self.resolve(path, libc::O_PATH | libc::O_DIRECTORY, true)
    }

    /// The directory `path`, made (mode 0755, owned by `owner`) with any missing parents.
    pub(crate) fn ensure_dir(&self, path: &Path, owner: (u32, u32)) -> io::Result<OwnedFd> {
        match self.dir(path) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        let (parent, name) =
            split_last(path).ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        let parent_fd = self.ensure_dir(&parent, owner)?;
        let c = cstring(&name)?;
        match mkdirat(parent_fd.as_fd(), &c, 0o755) {
            Ok(()) => {
                fchownat(parent_fd.as_fd(), &c, owner.0, owner.1)?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        self.dir(path)
    }
}

/// The kernel's `struct open_how` (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

fn openat2_in_root(dir: BorrowedFd<'_>, path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstring(path.as_os_str())?;
    let how = OpenHow {
        flags: flags as u64,
        mode: 0,
        resolve: libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV,
    };
    for _ in 0..RETRIES {
        // SAFETY: a valid dirfd, a NUL-terminated path and an open_how of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // The kernel returns a descriptor as an int: the syscall's long holds one.
            #[allow(clippy::cast_possible_truncation)]
            let fd = fd as RawFd;
            // SAFETY: a new descriptor, owned by nobody else.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// A path's components as the container means them: `.` dropped, `..` and the root kept out
/// (the caller resolves `..` in the root by leaving it to the kernel, or refuses it).
pub(crate) fn normal_components(path: &Path) -> Option<Vec<OsString>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A relative archive path made safe: no root, no `..`; `.` parts dropped. `None` if refused.
pub(crate) fn archive_path(path: &Path) -> Option<Vec<OsString>> {
    if path.has_root() {
        return None;
    }
    normal_components(path)
}

/// `path` without its last normal component, and that component; `None` for the root.
pub(crate) fn split_last(path: &Path) -> Option<(std::path::PathBuf, OsString)> {
    let name = path.file_name()?.to_os_string();
    let parent = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    Some((parent, name))
}

/// The name docker gives what a path names in an archive: its last component after a trailing
/// `/` or `/.` is dropped; `.` for the root.
pub(crate) fn base_name(path: &str) -> String {
    let mut p = path;
    loop {
        let trimmed = p.strip_suffix("/.").or_else(|| p.strip_suffix('/'));
        match trimmed {
            Some(t) => p = t,
            None => break,
        }
    }
    match Path::new(p).file_name() {
        Some(n) if p != "." => n.to_string_lossy().into_owned(),
        _ => ".".to_string(),
    }
}

/// Whether a path asks for a final symlink to be followed: it ends in `/` or `/.` (docker).
pub(crate) fn wants_follow(path: &str) -> bool {
    path.ends_with('/') || path.ends_with("/.")
}

pub(crate) fn cstring(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat64> {
    // SAFETY: stat64 is plain data; fstat64 fills it or fails.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a pointer to a stat64.
    check(unsafe { libc::fstat64(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub(crate) fn lstatat(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<libc::stat64> {
    // SAFETY: as fstat.
    let mut st: libc::stat64 = unsafe { std::mem::zeroed() };
    // SAFETY: a valid dirfd, a NUL-terminated name, a stat64 pointer.
    check(unsafe {
        libc::fstatat64(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// `openat(dir, name)` for one component: never follows a symlink there.
pub(crate) fn open_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    flags: i32,
    mode: u32,
) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid dirfd and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A symlink's target; `name` empty reads the link an `O_PATH|O_NOFOLLOW` descriptor is for.
pub(crate) fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OsString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: a valid dirfd, a NUL-terminated name and a buffer of the length given.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

pub(crate) fn mkdirat(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: a valid dirfd and a NUL-terminated name.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) })
}

/// `fchownat(..., AT_SYMLINK_NOFOLLOW)`: a symlink there gets the owner, not its target.
pub(crate) fn fchownat(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: a valid dirfd and a NUL-terminated name.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

/// `fchmodat2(..., AT_SYMLINK_NOFOLLOW)` (Linux 6.6): never through a symlink.
pub(crate) fn fchmodat_nofollow(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: a valid dirfd, a NUL-terminated name, a mode and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            mode,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    // fchmodat2 returns 0 or -1 as an int: the syscall's long holds it.
    #[allow(clippy::cast_possible_truncation)]
    let rc = rc as libc::c_int;
    check(rc)
}

/// `utimensat(..., AT_SYMLINK_NOFOLLOW)`: access and modification time set to `mtime` seconds.
pub(crate) fn set_mtime_at(dir: BorrowedFd<'_>, name: &CStr, mtime: i64) -> io::Result<()> {
    let t = libc::timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: a valid dirfd, a NUL-terminated name and two timespecs.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })
}

pub(crate) fn unlinkat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> io::Result<()> {
    // SAFETY: a valid dirfd and a NUL-terminated name.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), flags) })
}

/// The names in a directory (an `O_PATH` or open descriptor of it), sorted, without `.`/`..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let fd = open_at(dir, c".", libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: fdopendir takes ownership of the descriptor on success.
    let stream = unsafe { libc::fdopendir(raw) };
    if stream.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: not taken over: still ours to close.
        unsafe { libc::close(raw) };
        return Err(e);
    }
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; reset so that end-of-stream and failure differ.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: a valid DIR stream.
        let entry = unsafe { libc::readdir64(stream) };
        if entry.is_null() {
            let e = io::Error::last_os_error();
            break match e.raw_os_error() {
                Some(0) | None => Ok(()),
                _ => Err(e),
            };
        }
        // SAFETY: readdir returned an entry whose d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(OsString::from_vec(bytes.to_vec()));
        }
    };
    // SAFETY: the stream is ours; this closes its descriptor too.
    unsafe { libc::closedir(stream) };
    result?;
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/marker"), "inside").unwrap();
        // Outside the root, where a naive join would land.
        std::fs::write(tmp.path().join("marker"), "outside").unwrap();
        symlink("/", root.join("abs")).unwrap();
        symlink("../../../..", root.join("up")).unwrap();
        symlink("/etc", root.join("etclink")).unwrap();
        let r = Root::open(&root).unwrap();
        let read = |p: &str| {
            let fd = r.resolve(Path::new(p), libc::O_RDONLY, true).unwrap();
            std::io::read_to_string(std::fs::File::from(fd)).unwrap()
        };
        assert_eq!(read("/etclink/marker"), "inside");
        assert_eq!(read("/abs/etc/marker"), "inside");
        assert_eq!(read("/up/etc/marker"), "inside");
        assert_eq!(read("../../etc/marker"), "inside");
        // `marker` beside the rootfs is not reachable by any of them.
        for p in [
            "/abs/marker",
            "/up/marker",
            "/../marker",
            "/up/../../marker",
        ] {
            let e = r.resolve(Path::new(p), libc::O_RDONLY, true).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{p}");
        }
        // Without follow, a final symlink is not opened through.
        let e = r
            .resolve(Path::new("/etclink"), libc::O_RDONLY, false)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let link = r
            .resolve(Path::new("/etclink"), libc::O_PATH, false)
            .unwrap();
        assert_eq!(readlink_at(link.as_fd(), c"").unwrap(), "/etc");
        // Magic links are refused even when they would stay inside.
        std::fs::create_dir_all(root.join("proc")).unwrap();
        symlink("/proc/self/root", root.join("magic")).unwrap();
        assert!(
            r.resolve(Path::new("/magic/etc"), libc::O_RDONLY, true)
                .is_err()
        );
    }

    #[test]
    fn ensure_dir_makes_parents_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("rootfs");
        std::fs::create_dir_all(&root).unwrap();
        symlink("../../..", root.join("up")).unwrap();
        let r = Root::open(&root).unwrap();
        r.ensure_dir(Path::new("/up/a/b"), (0, 0)).unwrap();
        assert!(
            root.join("a/b").is_dir(),
            "made in the root, through the link"
        );
        assert!(!tmp.path().join("a").exists());
        assert_eq!(
            list_dir(r.dir(Path::new("/")).unwrap().as_fd()).unwrap(),
            ["a", "up"]
        );
    }

    #[test]
    fn names_and_components() {
        assert_eq!(base_name("/etc/passwd"), "passwd");
        assert_eq!(base_name("/etc/"), "etc");
        assert_eq!(base_name("/etc/."), "etc");
        assert_eq!(base_name("/"), ".");
        assert_eq!(base_name("/."), ".");
        assert_eq!(base_name(""), ".");
        assert!(wants_follow("/x/") && wants_follow("/x/.") && !wants_follow("/x"));
        assert_eq!(archive_path(Path::new("./a/./b")).unwrap(), ["a", "b"]);
        assert!(archive_path(Path::new("/etc/passwd")).is_none());
        assert!(archive_path(Path::new("a/../../b")).is_none());
        assert!(archive_path(Path::new("..")).is_none());
        assert_eq!(archive_path(Path::new(".")).unwrap().len(), 0);
        let (parent, name) = split_last(Path::new("/a/b")).unwrap();
        assert_eq!(
            (parent.as_path(), name.as_os_str()),
            (Path::new("/a"), OsStr::new("b"))
        );
        assert!(split_last(Path::new("/")).is_none());
    }
}
