//! Recursively read-only bind sources, for CRI's `Mount.recursive_read_only` with OCI runtimes
//! that lack runc 1.2's `rro` mount option (runc 1.1 here).
//!
//! A read-only bind mount (`rbind,ro`) only makes its top mount read-only: filesystems mounted
//! below the source stay writable in the container. `mount_setattr(2)` with `AT_RECURSIVE` can
//! set `MOUNT_ATTR_RDONLY` on every mount of a detached clone of the tree (kernel 5.12+). The
//! kernel copies each mount's own read-only flag when it clones a mount, so runc's later
//! `rbind` of that clone into the container keeps every submount read-only.

use std::fs;
use std::path::Path;

use nix::mount::{MsFlags, mount};

use crate::NamespaceError;
use crate::idmap::{MS_PRIVATE, MountAttr, mount_clone_with, unmount_all};

const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// Name prefix of the probe's scratch dir (one per berthd process, in the dir probed).
const PROBE_PREFIX: &str = ".rro-probe-";

/// Mounts a recursively read-only copy of `source` (with everything mounted below it) on
/// `target`, an existing file or directory.
///
/// The copy is a detached clone made private and read-only before it is attached, so nothing
/// changes at `source` and no process ever sees a writable copy. Fails with ENOSYS on kernels
/// without the new mount API.
pub fn mount_recursive_readonly(source: &Path, target: &Path) -> Result<(), NamespaceError> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: MS_PRIVATE,
        userns_fd: 0,
    };
    mount_clone_with(source, target, &attr, true)
}

/// Checks that [`mount_recursive_readonly`] works here: a scratch tmpfs with a tmpfs mounted
/// inside it, under `dir`, is cloned read-only, and writing into the clone's top and its
/// submount must fail with EROFS while the source stays writable. Leaves nothing behind (also
/// removes what an earlier berthd's interrupted probe left); the error says what is missing.
pub fn probe_recursive_read_only(dir: &Path) -> Result<(), String> {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(PROBE_PREFIX)
            {
                clean_probe(&entry.path());
            }
        }
    }
    let base = dir.join(format!("{PROBE_PREFIX}{}", std::process::id()));
    let result = probe_in(&base);
    clean_probe(&base);
    result
}

/// Unmounts a probe dir's mounts, then removes it. Its content is only ever the probe's
/// scratch tmpfs, so once they are unmounted a recursive removal deletes nothing else.
fn clean_probe(base: &Path) {
    let mut mounted = false;
    for sub in ["target", "src/sub", "src"] {
        if unmount_all(&base.join(sub)).is_err() {
            mounted = true;
        }
    }
    if !mounted {
        let _ = fs::remove_dir_all(base);
    }
}

fn probe_in(base: &Path) -> Result<(), String> {
    let mk = |p: &Path| fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()));
    let (src, sub, target) = (base.join("src"), base.join("src/sub"), base.join("target"));
    mk(&src)?;
    mk(&target)?;
    let tmpfs = |at: &Path| {
        mount(
            Some("berth-rro-probe"),
            at,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=64k,mode=0700"),
        )
        .map_err(|e| format!("mounting a scratch tmpfs on {}: {e}", at.display()))
    };
    tmpfs(&src)?;
    mk(&sub)?;
    tmpfs(&sub)?;
    mount_recursive_readonly(&src, &target).map_err(|e| {
        format!("the kernel cannot make a recursively read-only mount (open_tree, mount_setattr, move_mount; Linux 5.12+): {e}")
    })?;
    for dir in [target.clone(), target.join("sub")] {
        let probe = dir.join("probe");
        match fs::write(&probe, "") {
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) => return Err(format!("writing {}: {e}, not EROFS", probe.display())),
            Ok(()) => {
                return Err(format!(
                    "{} is writable in a recursively read-only mount",
                    probe.display()
                ));
            }
        }
    }
    let source_file = sub.join("probe");
    fs::write(&source_file, "").map_err(|e| match e.raw_os_error() {
        Some(libc::EROFS) => {
            format!(
                "making a read-only clone made the source {} read-only",
                sub.display()
            )
        }
        _ => format!("writing {}: {e}", source_file.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn probe_works_as_root_and_leaves_nothing() {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        // A leftover of an interrupted probe is cleaned too.
        fs::create_dir_all(tmp.path().join(".rro-probe-1/src")).unwrap();
        probe_recursive_read_only(tmp.path()).unwrap();
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn probe_reports_a_missing_dir() {
        let err = probe_recursive_read_only(Path::new("/proc/nonexistent/dir")).unwrap_err();
        assert!(err.contains("creating"), "{err}");
    }
}
