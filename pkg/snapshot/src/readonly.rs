//! Read-only mounts of an image's snapshot chain, shared with the image's other users (image
//! volumes, CRI `Mount.image`): nothing is copied and nothing can be written.
//!
//! A chain of two or more layers is an overlay with lowerdirs only (overlayfs makes such a mount
//! read-only by itself); a single layer is a read-only bind of its diff dir, because overlayfs
//! wants at least two lowerdirs when it has no upper dir.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::SnapshotError;
use crate::mount::RootfsMount;
use crate::snapshotter::Snapshotter;
use crate::sys;

/// An image's rootfs ready to mount read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnlyRootfs {
    /// The single layer's diff dir, bound read-only.
    Bind(PathBuf),
    /// Overlay of the layers, top first, without an upper dir.
    Overlay(RootfsMount),
}

impl Snapshotter {
    /// Prepares (but does not mount) a read-only view of snapshot `top_chain_id` and its parents.
    pub fn prepare_readonly(&self, top_chain_id: &str) -> Result<ReadOnlyRootfs, SnapshotError> {
        let mut lowerdirs = self.chain_lowerdirs(top_chain_id)?;
        if lowerdirs.len() == 1 {
            return Ok(ReadOnlyRootfs::Bind(lowerdirs.remove(0)));
        }
        Ok(ReadOnlyRootfs::Overlay(RootfsMount::new(
            lowerdirs,
            PathBuf::new(),
            PathBuf::new(),
            self.snapshots_dir().to_path_buf(),
        )))
    }
}

impl ReadOnlyRootfs {
    /// Mounts it on `target` (an existing directory). Undo with [`crate::unmount`].
    pub fn mount(&self, target: &Path) -> Result<(), SnapshotError> {
        match self {
            ReadOnlyRootfs::Overlay(overlay) => overlay.mount(target, true),
            ReadOnlyRootfs::Bind(source) => bind_readonly(source, target),
        }
    }
}

fn bind_readonly(source: &Path, target: &Path) -> Result<(), SnapshotError> {
    let err = |op| {
        move |source| SnapshotError::Mount {
            op,
            target: target.to_path_buf(),
            source,
        }
    };
    let c_source = sys::cstring(source.as_os_str().as_bytes()).map_err(err("bind onto"))?;
    let c_target = sys::cstring(target.as_os_str().as_bytes()).map_err(err("bind onto"))?;
    sys::mount(&c_source, &c_target, c"none", libc::MS_BIND, c"").map_err(err("bind onto"))?;
    // A bind ignores MS_RDONLY: the read-only flag takes a remount of the new mount.
    let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
    if let Err(e) = sys::mount(c"none", &c_target, c"none", flags, c"") {
        let _ = crate::unmount(target);
        return Err(err("remount read-only")(e));
    }
    Ok(())
}

/// Why an image sub path cannot be mounted.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    /// Absolute, `..`, or a symlink whose target is outside the image (or absolute).
    #[error("{0:?} leaves the image (absolute, .. or a symlink out of it)")]
    Escapes(String),
    #[error("{0:?} does not exist in the image")]
    Missing(String),
    #[error("{0:?} is not a directory (only directories can be mounted)")]
    NotDirectory(String),
    #[error("resolving {path:?} in the image: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The host path of directory `sub` inside the mounted image at `root`, every symlink resolved
/// beneath `root` by the kernel (openat2 `RESOLVE_BENEATH`): a lookup that would leave it fails
/// instead of being re-rooted. The image is mounted read-only, so the answer cannot go stale.
pub fn resolve_sub_dir(root: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    let escapes = || SubPathError::Escapes(sub.to_string());
    let relative = Path::new(sub);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(escapes());
    }
    let io = |source| SubPathError::Io {
        path: sub.to_string(),
        source,
    };
    let root_dir = std::fs::File::open(root).map_err(io)?;
    let c_sub = CString::new(relative.as_os_str().as_bytes()).map_err(|_| escapes())?;
    let fd = sys::open_beneath(root_dir.as_fd(), &c_sub, libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EXDEV | libc::ELOOP) => escapes(),
            Some(libc::ENOENT) => SubPathError::Missing(sub.to_string()),
            Some(libc::ENOTDIR) => SubPathError::NotDirectory(sub.to_string()),
            _ => io(e),
        })?;
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(io)?;
    // The kernel resolved it beneath root; a path outside would mean root moved meanwhile.
    let canonical_root = std::fs::canonicalize(root).map_err(io)?;
    if !path.starts_with(&canonical_root) {
        return Err(escapes());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
        std::fs::write(dir.path().join("data/file"), b"x").unwrap();
        std::os::unix::fs::symlink("data/sub", dir.path().join("inside")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("absolute")).unwrap();
        std::os::unix::fs::symlink("../..", dir.path().join("data/up")).unwrap();
        dir
    }

    #[test]
    fn resolves_directories_and_symlinks_inside() {
        let dir = image();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            resolve_sub_dir(dir.path(), "data").unwrap(),
            root.join("data")
        );
        assert_eq!(
            resolve_sub_dir(dir.path(), "./inside/").unwrap(),
            root.join("data/sub")
        );
    }

    #[test]
    fn refuses_escapes_and_non_directories() {
        let dir = image();
        for escape in ["/etc", "../x", "data/../../x", "absolute", "data/up"] {
            assert!(
                matches!(
                    resolve_sub_dir(dir.path(), escape),
                    Err(SubPathError::Escapes(_))
                ),
                "{escape}"
            );
        }
        assert!(matches!(
            resolve_sub_dir(dir.path(), "nope"),
            Err(SubPathError::Missing(_))
        ));
        assert!(matches!(
            resolve_sub_dir(dir.path(), "data/file"),
            Err(SubPathError::NotDirectory(_))
        ));
    }
}
