//! Idmapped mounts with the kernel's new mount API (`open_tree`, `mount_setattr`,
//! `move_mount`), which runc 1.1 cannot do itself.
//!
//! An idmapped mount shows an on-disk id `k` as `map(k)` through the user namespace given: with
//! a pod mapping `0 -> H` a file owned by 0 on disk looks owned by `H` on the host, i.e. by root
//! inside the pod, and a file created through it by the pod's root (host uid `H`) is stored as
//! 0. So image layers and volumes need no chown, and what a pod writes into a volume is stored
//! with the ids the pod sees.

use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::NamespaceError;
use crate::userns::{UserNamespaceMappings, cpath, new_user_namespace};

pub(crate) const OPEN_TREE_CLONE: libc::c_uint = 1;
pub(crate) const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `MS_PRIVATE` as `mount_attr.propagation` wants it (u64 on every architecture).
pub(crate) const MS_PRIVATE: u64 = 1 << 18;
/// Bound on unmounts per path (an idmapped mount stacked on an overlay is two).
const MAX_STACKED: usize = 16;

/// `struct mount_attr` (linux/mount.h), version 0.
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

pub(crate) fn mount_err(path: &Path) -> impl Fn(Errno) -> NamespaceError + '_ {
    move |source| NamespaceError::Mount {
        path: path.to_path_buf(),
        source,
    }
}

/// Mounts an idmapped copy of `source` (with everything mounted below it when `recursive`) on
/// `target` (an existing file or directory), mapped through the user namespace `userns`.
///
/// The copy is a detached clone made private, so nothing changes at `source`; `target` may be
/// `source` itself, which stacks the idmapped mount on top. Fails with EINVAL when a filesystem
/// involved cannot be idmapped, EPERM when `source` already is an idmapped mount.
pub fn mount_idmapped(
    source: &Path,
    target: &Path,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> Result<(), NamespaceError> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: userns.as_raw_fd() as u64,
    };
    mount_clone_with(source, target, &attr, recursive)
}

/// Clones the mount at `source` (with everything mounted below it when `recursive`) as a
/// detached tree, applies `attr` to the clone (to all of its mounts when `recursive`), and
/// only then attaches it on `target`, so no process ever sees the clone without `attr`.
pub(crate) fn mount_clone_with(
    source: &Path,
    target: &Path,
    attr: &MountAttr,
    recursive: bool,
) -> Result<(), NamespaceError> {
    let src = cpath(source)?;
    let dst = cpath(target)?;
    let rec = if recursive {
        libc::AT_RECURSIVE as libc::c_uint
    } else {
        0
    };
    // SAFETY: open_tree with a valid C string; the result is a fresh fd we own.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | rec,
        )
    };
    if fd < 0 {
        return Err(mount_err(source)(Errno::last()));
    }
    // The kernel returns an int descriptor, widened to long by syscall(2).
    #[allow(clippy::cast_possible_truncation)]
    let fd = fd as RawFd;
    // SAFETY: open_tree returned a new fd.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: mount_setattr on our tree fd with an empty path and a correctly sized attr.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | rec,
            std::ptr::from_ref(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(mount_err(source)(Errno::last()));
    }
    // SAFETY: move_mount of our detached tree onto a valid C string path.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(mount_err(target)(Errno::last()));
    }
    Ok(())
}

/// Unmounts everything stacked on `path` (lazily); `Ok` when nothing is (or it is missing).
pub fn unmount_all(path: &Path) -> Result<(), NamespaceError> {
    for _ in 0..MAX_STACKED {
        match umount2(path, MntFlags::MNT_DETACH | MntFlags::UMOUNT_NOFOLLOW) {
            Ok(()) => continue,
            Err(Errno::EINVAL | Errno::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(NamespaceError::Unmount {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    Err(NamespaceError::Unmount {
        path: path.to_path_buf(),
        source: Errno::EBUSY,
    })
}

/// Checks that idmapped mounts work for container rootfs and volumes under `dir`: an idmapped
/// clone of a directory on `dir`'s filesystem, and an overlay whose lower layer is such a clone
/// (overlayfs cannot be idmapped itself, but its layers can: that is how container rootfs are
/// built for pods with a user namespace). Leaves nothing behind; the error says what is missing.
pub fn probe_idmapped_mounts(dir: &Path) -> Result<(), String> {
    let base = dir.join(format!(".idmap-probe-{}", std::process::id()));
    let result = probe_in(&base);
    for sub in ["merged", "target"] {
        let _ = unmount_all(&base.join(sub));
    }
    let _ = fs::remove_dir_all(&base);
    result
}

fn probe_in(base: &Path) -> Result<(), String> {
    let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()));
    let [lower, upper, work, merged, target] =
        ["lower", "upper", "work", "merged", "target"].map(|s| base.join(s));
    for d in [&lower, &upper, &work, &merged, &target] {
        mk(d)?;
    }
    let userns = new_user_namespace(&UserNamespaceMappings::single(65536, 65536))
        .map_err(|e| format!("creating a user namespace: {e}"))?;
    mount_idmapped(&lower, &target, userns.as_fd(), false).map_err(|e| {
        format!(
            "the kernel cannot idmap mounts of the filesystem holding {}: {e}",
            base.display()
        )
    })?;
    let owner = fs::metadata(&target).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    if owner.as_ref().ok() != Some(&65536) {
        return Err(format!(
            "an idmapped mount shows owner {owner:?}, not 65536"
        ));
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        target.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| format!("the kernel cannot mount overlayfs on idmapped layers: {e}"))?;
    unmount_all(&merged).map_err(|e| e.to_string())?;
    unmount_all(&target).map_err(|e| e.to_string())
}

/// Opens a pinned user namespace (or `/proc/<pid>/ns/user`) for [`mount_idmapped`].
pub fn open_user_namespace(path: &Path) -> Result<File, NamespaceError> {
    File::open(path).map_err(|e| NamespaceError::io("open user namespace", path, e))
}
