//! Overlay mounts of a snapshot chain (container rootfs) and unmounting.
//!
//! mount(2) copies at most one page of option data, and a deep image's lowerdir list of
//! absolute paths can exceed it. Like containerd, we then pass the lowerdirs relative to the
//! snapshots directory and mount from inside it — but in a short-lived thread that first
//! unshares its fs context (`unshare(CLONE_FS)`), so the chdir never moves the cwd of the
//! rest of berthd.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::SnapshotError;
use crate::sys;

/// A container rootfs ready to mount: the chain's diff dirs plus a private upper/work pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    /// Read-only layers, top (newest) first, as overlayfs's `lowerdir` expects.
    pub lowerdirs: Vec<PathBuf>,
    /// Where the container's writes land.
    pub upperdir: PathBuf,
    /// Overlayfs's scratch dir; same filesystem as `upperdir`.
    pub workdir: PathBuf,
    /// The directory all lowerdirs live in, for relative mounts.
    lower_base: PathBuf,
}

/// Backslash-escapes the characters overlayfs's option parser treats specially.
fn push_escaped(out: &mut Vec<u8>, path: &Path) {
    for &b in path.as_os_str().as_bytes() {
        if matches!(b, b'\\' | b',' | b':') {
            out.push(b'\\');
        }
        out.push(b);
    }
}

/// `index=off` when the kernel knows the option: with the inode index on, an upper dir is tied
/// to the exact lower dirs it was first mounted with, and a re-pulled layer would make a
/// container's rootfs unmountable (containerd turns it off for the same reason).
fn extra_options() -> &'static str {
    static EXTRA: OnceLock<&'static str> = OnceLock::new();
    EXTRA.get_or_init(|| {
        if Path::new("/sys/module/overlay/parameters/index").exists() {
            "index=off,"
        } else {
            ""
        }
    })
}

impl RootfsMount {
    pub(crate) fn new(
        lowerdirs: Vec<PathBuf>,
        upperdir: PathBuf,
        workdir: PathBuf,
        lower_base: PathBuf,
    ) -> Self {
        RootfsMount {
            lowerdirs,
            upperdir,
            workdir,
            lower_base,
        }
    }

    fn options_bytes(&self, relative: bool) -> Vec<u8> {
        let mut out = extra_options().as_bytes().to_vec();
        out.extend_from_slice(b"lowerdir=");
        for (i, dir) in self.lowerdirs.iter().enumerate() {
            if i > 0 {
                out.push(b':');
            }
            let dir = if relative {
                dir.strip_prefix(&self.lower_base).unwrap_or(dir)
            } else {
                dir
            };
            push_escaped(&mut out, dir);
        }
        // No upper dir: a read-only overlay of the lower layers alone (image volumes).
        if !self.upperdir.as_os_str().is_empty() {
            out.extend_from_slice(b",upperdir=");
            push_escaped(&mut out, &self.upperdir);
            out.extend_from_slice(b",workdir=");
            push_escaped(&mut out, &self.workdir);
        }
        out
    }

    /// The overlay mount options with absolute paths (what [`RootfsMount::mount`] passes when
    /// they fit in a page).
    pub fn options(&self) -> String {
        String::from_utf8_lossy(&self.options_bytes(false)).into_owned()
    }

    /// Mounts the overlay on `target` (an existing directory); `readonly` adds `MS_RDONLY`.
    ///
    /// Uses absolute lowerdirs when the options fit in one page, else paths relative to the
    /// snapshots dir (about 8 bytes per layer, enough for hundreds of layers); fails with
    /// [`SnapshotError::MountOptionsTooLong`] if even those do not fit.
    pub fn mount(&self, target: &Path, readonly: bool) -> Result<(), SnapshotError> {
        let mount_err = |source| SnapshotError::Mount {
            op: "mount overlay on",
            target: target.to_path_buf(),
            source,
        };
        let c_target = sys::cstring(target.as_os_str().as_bytes()).map_err(mount_err)?;
        let flags = if readonly { libc::MS_RDONLY } else { 0 };
        let limit = sys::page_size() - 1; // the kernel copies one page, NUL included
        let absolute = self.options_bytes(false);
        if absolute.len() <= limit {
            let data = sys::cstring(&absolute).map_err(mount_err)?;
            return sys::mount(c"overlay", &c_target, c"overlay", flags, &data).map_err(mount_err);
        }
        let relative = self.options_bytes(true);
        if relative.len() > limit {
            return Err(SnapshotError::MountOptionsTooLong {
                layers: self.lowerdirs.len(),
                len: relative.len(),
                limit,
            });
        }
        let data = sys::cstring(&relative).map_err(mount_err)?;
        tracing::debug!(
            layers = self.lowerdirs.len(),
            len = relative.len(),
            "mounting overlay with relative lowerdirs"
        );
        let base = &self.lower_base;
        let mounted = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    sys::unshare_fs()?;
                    let dir = File::open(base)?;
                    sys::fchdir(dir.as_fd())?;
                    sys::mount(c"overlay", &c_target, c"overlay", flags, &data)
                })
                .join()
        });
        match mounted {
            Ok(result) => result.map_err(mount_err),
            Err(_) => Err(mount_err(std::io::Error::other("mount thread panicked"))),
        }
    }
}

/// Unmounts `target`. Not mounted (or missing) is success; if the mount is busy it is
/// detached lazily (`MNT_DETACH`), which is what a container teardown wants. Never follows a
/// symlink at `target`.
pub fn unmount(target: &Path) -> Result<(), SnapshotError> {
    let err = |source| SnapshotError::Mount {
        op: "unmount",
        target: target.to_path_buf(),
        source,
    };
    let c: CString = sys::cstring(target.as_os_str().as_bytes()).map_err(err)?;
    match sys::umount2(&c, libc::UMOUNT_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(e) => match e.raw_os_error() {
            Some(libc::EINVAL | libc::ENOENT) => Ok(()),
            Some(libc::EBUSY) => {
                sys::umount2(&c, libc::UMOUNT_NOFOLLOW | libc::MNT_DETACH).map_err(err)
            }
            _ => Err(err(e)),
        },
    }
}
