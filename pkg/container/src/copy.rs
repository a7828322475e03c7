//! Copying files out of and into a container (`berth cp`, docker's archive API) through its rootfs
//! on the host: nothing runs in the container, so images without `tar` work, and created or
//! exited containers too.
//!
//! The rootfs is the overlay berthd mounted at `<bundle>/rootfs` at CreateContainer; it stays
//! mounted while the container exists (created, running, exited), except after a failed start,
//! which unmounts it. Then it is mounted again for the copy (under the container's lock, so no
//! start or removal runs meanwhile) and unmounted after. The container's volumes and other mounts
//! exist only in its own mount namespace: paths under them show what the rootfs has there.
//!
//! In a pod with a user namespace the rootfs seen from the host holds host ids (the image layers
//! are idmapped, the upper dir stores host ids; see `userns.rs`): archives carry the container's
//! ids, mapped on the way out and in.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_sandbox::{IdMapping, UserNamespaceMappings};
use tokio::sync::mpsc;

use crate::error::ContainerError;
use crate::record::{ContainerRecord, Phase};
use crate::resolve::{self, Root};
use crate::tarin::{self, CopyStats};
use crate::tarout::Walker;
use crate::{ContainerService, Inner};

/// Archive bytes per message of CopyFrom.
const CHUNK: usize = 64 * 1024;
/// Chunks queued between the walk and the client.
const QUEUE: usize = 4;
/// The id shown for a host id outside the pod's mapping (the kernel's overflow id).
const OVERFLOW_ID: u32 = 65534;

/// What a path in the container is (docker's container path stat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    pub name: String,
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
    pub link_target: String,
    pub is_dir: bool,
}

/// Ids between the container's view and the host's rootfs.
#[derive(Debug, Default, Clone)]
pub(crate) struct IdMap {
    maps: Option<UserNamespaceMappings>,
}

fn to_container(ranges: &[IdMapping], host: u32) -> u32 {
    ranges
        .iter()
        .find_map(|m| {
            let off = host.checked_sub(m.host_id)?;
            (off < m.length).then(|| m.container_id + off)
        })
        .unwrap_or(OVERFLOW_ID)
}

impl IdMap {
    pub(crate) fn from_maps(maps: Option<UserNamespaceMappings>) -> IdMap {
        IdMap { maps }
    }

    #[cfg(test)]
    pub(crate) fn shifted(host_id: u32, length: u32) -> IdMap {
        IdMap {
            maps: Some(UserNamespaceMappings::single(host_id, length)),
        }
    }

    /// The host ids an archive's owner is stored as; `None` if the pod cannot have them.
    pub(crate) fn host_ids(&self, uid: u32, gid: u32) -> Option<(u32, u32)> {
        match &self.maps {
            None => Some((uid, gid)),
            Some(m) => Some((m.host_uid(uid)?, m.host_gid(gid)?)),
        }
    }

    /// The owner of directories made on the way to an entry: the container's root.
    pub(crate) fn root_owner(&self) -> (u32, u32) {
        self.host_ids(0, 0).unwrap_or((0, 0))
    }

    pub(crate) fn container_uid(&self, host: u32) -> u32 {
        match &self.maps {
            None => host,
            Some(m) => to_container(&m.uids, host),
        }
    }

    pub(crate) fn container_gid(&self, host: u32) -> u32 {
        match &self.maps {
            None => host,
            Some(m) => to_container(&m.gids, host),
        }
    }
}

/// Access to a container's rootfs for one copy: the root to resolve in, and what to undo.
pub(crate) struct RootfsAccess {
    pub(crate) root: Root,
    pub(crate) ids: IdMap,
    /// Held for a container that is not running: no start or removal meanwhile.
    _lock: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// Set when the rootfs was mounted for this copy: unmounted on drop.
    mounted: Option<PathBuf>,
}

impl Drop for RootfsAccess {
    fn drop(&mut self) {
        if let Some(rootfs) = self.mounted.take()
            && let Err(e) = berth_snapshot::unmount(&rootfs)
        {
            tracing::warn!(rootfs = %rootfs.display(), error = %e, "unmounting a rootfs mounted for a copy");
        }
    }
}

/// The rootfs as a root to resolve in, if it is mounted: the descriptor is taken first and then
/// checked to be a mount's root (a device other than its parent's, the bundle's), so a mount that
/// goes away meanwhile (lazily detached) stays usable through it, and an empty mount point is
/// never taken for the rootfs.
fn open_mounted(rootfs: &Path) -> Result<Option<Root>, ContainerError> {
    let root = match Root::open(rootfs) {
        Ok(root) => root,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ContainerError::io("open", rootfs)(e)),
    };
    let parent = rootfs.parent().unwrap_or(Path::new("/"));
    let parent_dev = std::fs::symlink_metadata(parent)
        .map_err(ContainerError::io("stat", parent))?
        .dev();
    let dev = root
        .stat()
        .map_err(ContainerError::io("stat", rootfs))?
        .st_dev;
    Ok((dev != parent_dev).then_some(root))
}

/// The container's rootfs, mounted, with the ids to map. `write`: refused for a read-only rootfs.
///
/// A mounted rootfs (created, running and exited containers) is used as it is, without the
/// container's lock: a copy never holds up kubelet's stop or removal. One that is not mounted
/// (after a failed start) is mounted under the lock, held until the copy ends.
pub(crate) async fn access(
    inner: &Arc<Inner>,
    id: &str,
    write: bool,
) -> Result<RootfsAccess, ContainerError> {
    let record = inner.record(id)?;
    if write && record.config.security.readonly_rootfs {
        return Err(ContainerError::RootfsUnavailable {
            id: id.to_string(),
            reason: "its root filesystem is read-only",
        });
    }
    let sandbox = inner.deps.sandboxes.get(&record.sandbox_id);
    let ids = IdMap::from_maps(sandbox.as_ref().and_then(|s| s.userns.clone()));
    let rootfs = record.rootfs();
    let check = rootfs.clone();
    let mounted = tokio::task::spawn_blocking(move || open_mounted(&check))
        .await
        .map_err(ContainerError::task("checking the rootfs mount"))??;
    if let Some(root) = mounted {
        return Ok(RootfsAccess {
            root,
            ids,
            _lock: None,
            mounted: None,
        });
    }
    let lock = inner.lock_for(id).lock_owned().await;
    // Again under the lock: the container may have changed (or gone) while it was waited for.
    let record = inner.record(id)?;
    if matches!(record.phase, Phase::Creating | Phase::Removing) {
        return Err(ContainerError::WrongState {
            id: id.to_string(),
            state: "being created or removed".to_string(),
            needs: "so its files cannot be copied now",
        });
    }
    let mounts = inner.deps.rootfs.clone();
    let userns = ids.maps.is_some();
    let work = move || -> Result<(Root, Option<PathBuf>), ContainerError> {
        if let Some(root) = open_mounted(&rootfs)? {
            return Ok((root, None));
        }
        mount_for_copy(&record, mounts.as_ref(), userns)?;
        match open_mounted(&rootfs) {
            Ok(Some(root)) => Ok((root, Some(rootfs))),
            other => {
                let _ = mounts.unmount(&rootfs);
                Err(other
                    .err()
                    .unwrap_or_else(|| ContainerError::RootfsNotMounted {
                        id: record.id.clone(),
                        path: rootfs,
                    }))
            }
        }
    };
    let (root, mounted) = tokio::task::spawn_blocking(work)
        .await
        .map_err(ContainerError::task("mounting the rootfs for a copy"))??;
    Ok(RootfsAccess {
        root,
        ids,
        _lock: Some(lock),
        mounted,
    })
}

/// Mounts the overlay of a container whose rootfs is not mounted (a failed start unmounts it).
fn mount_for_copy(
    record: &ContainerRecord,
    mounts: &dyn crate::seams::RootfsOps,
    userns: bool,
) -> Result<(), ContainerError> {
    let rootfs = record.rootfs();
    if record.phase == Phase::Running {
        // A running container's rootfs stays mounted until it exits: Berth lost track of it.
        return Err(ContainerError::RootfsNotMounted {
            id: record.id.clone(),
            path: rootfs,
        });
    }
    if userns {
        // Its image layers would need idmapped mounts of the pod's user namespace again.
        return Err(ContainerError::RootfsUnavailable {
            id: record.id.clone(),
            reason: "its rootfs (in a pod with a user namespace) is no longer mounted",
        });
    }
    if !record.bundle.is_dir() || !record.overlay_dir().is_dir() {
        return Err(ContainerError::RootfsUnavailable {
            id: record.id.clone(),
            reason: "its rootfs is gone",
        });
    }
    std::fs::create_dir_all(&rootfs).map_err(ContainerError::io("create", &rootfs))?;
    mounts.mount_rootfs(&record.snapshot, &record.overlay_dir(), &rootfs)?;
    Ok(())
}

/// The stat of what `fd` (an `O_PATH` descriptor) is, named `name`.
fn stat_of(fd: &std::os::fd::OwnedFd, name: String) -> io::Result<PathStat> {
    let st = resolve::fstat(fd.as_fd())?;
    let kind = st.st_mode & libc::S_IFMT;
    let link_target = if kind == libc::S_IFLNK {
        resolve::readlink_at(fd.as_fd(), c"")?
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    Ok(PathStat {
        name,
        size: st.st_size.max(0) as u64,
        mode: st.st_mode,
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
        link_target,
        is_dir: kind == libc::S_IFDIR,
    })
}

fn path_of(path: &str) -> PathBuf {
    Path::new("/").join(path)
}

fn resolve_err(path: &str) -> impl FnOnce(io::Error) -> ContainerError + '_ {
    move |source| ContainerError::CopyPath {
        op: "resolve",
        path: PathBuf::from(path),
        source,
    }
}

impl ContainerService {
    /// Stats `path` in the container's rootfs (a final symlink followed with `follow`).
    pub async fn stat_path(
        &self,
        id_or_prefix: &str,
        path: &str,
        follow: bool,
    ) -> Result<PathStat, ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        let access = access(&self.inner, &id, false).await?;
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            let follow = follow || resolve::wants_follow(&path);
            let fd = access
                .root
                .resolve(&path_of(&path), libc::O_PATH, follow)
                .map_err(resolve_err(&path))?;
            let name = match resolve::base_name(&path).as_str() {
                "." => "/".to_string(),
                n => n.to_string(),
            };
            stat_of(&fd, name).map_err(resolve_err(&path))
        })
        .await
        .map_err(ContainerError::task("resolving a path for a copy"))?
    }

    /// A tar of `path` in the container's rootfs, as chunks, after its stat. The path is resolved
    /// first, so a missing one fails here; failures during the walk end the chunks.
    pub async fn copy_from(
        &self,
        id_or_prefix: &str,
        path: &str,
        follow: bool,
        rebase: &str,
    ) -> Result<(PathStat, mpsc::Receiver<Result<Vec<u8>, ContainerError>>), ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        let access = access(&self.inner, &id, false).await?;
        let follow = follow || resolve::wants_follow(path);
        let name = match rebase {
            "" => resolve::base_name(path),
            r => r.to_string(),
        };
        if resolve::archive_path(Path::new(&name)).is_none_or(|p| p.len() > 1) && name != "." {
            return Err(ContainerError::InvalidCopy(format!(
                "rebase name {name:?} must be a single path component"
            )));
        }
        let path = path.to_string();
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stat_tx, stat_rx) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let full = path_of(&path);
            let fd = match access.root.resolve(&full, libc::O_PATH, follow) {
                Ok(fd) => fd,
                Err(e) => {
                    let _ = stat_tx.send(Err(resolve_err(&path)(e)));
                    return;
                }
            };
            match stat_of(&fd, resolve::base_name(&path)) {
                Ok(stat) => {
                    if stat_tx.send(Ok(stat)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = stat_tx.send(Err(resolve_err(&path)(e)));
                    return;
                }
            }
            // O_NONBLOCK: a FIFO swapped in meanwhile must not hang the open.
            let reopen = || {
                access
                    .root
                    .resolve(&full, libc::O_RDONLY | libc::O_NONBLOCK, follow)
            };
            let out = berth_snapshot::ChunkWriter::new(tx.clone(), CHUNK);
            let walker = Walker::new(out, &access.ids);
            let written = walker
                .archive_top(&fd, reopen, Path::new(&name))
                .and_then(|mut out| std::io::Write::flush(&mut out));
            if let Err(e) = written {
                let _ = tx.blocking_send(Err(ContainerError::CopyPath {
                    op: "archive",
                    path: PathBuf::from(&path),
                    source: e,
                }));
            }
            drop(access);
        });
        let stat = stat_rx
            .await
            .map_err(|_| ContainerError::CopyEndedEarly)??;
        Ok((stat, rx))
    }

    /// Extracts the tar `archive` streams into directory `path` of the container's rootfs.
    pub async fn copy_to(
        &self,
        id_or_prefix: &str,
        path: &str,
        archive: mpsc::Receiver<io::Result<Vec<u8>>>,
    ) -> Result<CopyStats, ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        let access = access(&self.inner, &id, true).await?;
        let dest = path_of(path);
        tokio::task::spawn_blocking(move || {
            let reader = tarin::ChannelReader::new(archive);
            tarin::extract(&access.root, &dest, reader, &access.ids)
        })
        .await
        .map_err(ContainerError::task(
            "extracting an archive into the container",
        ))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways() {
        let plain = IdMap::default();
        assert_eq!(plain.host_ids(5, 6), Some((5, 6)));
        assert_eq!(plain.container_uid(5), 5);
        let ids = IdMap::shifted(100_000, 65536);
        assert_eq!(ids.host_ids(0, 1), Some((100_000, 100_001)));
        assert_eq!(ids.host_ids(65536, 0), None);
        assert_eq!(ids.container_uid(100_005), 5);
        assert_eq!(ids.container_gid(5), OVERFLOW_ID);
        assert_eq!(ids.root_owner(), (100_000, 100_000));
    }

    #[test]
    fn archives_round_trip_through_a_root() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("d/e")).unwrap();
        std::fs::write(src.join("d/e/f"), "data").unwrap();
        std::fs::hard_link(src.join("d/e/f"), src.join("d/hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("d/link")).unwrap();
        let root = Root::open(&src).unwrap();
        let fd = root.resolve(Path::new("/d"), libc::O_PATH, false).unwrap();
        let ids = IdMap::default();
        let tar = Walker::new(Vec::new(), &ids)
            .archive_top(&fd, || unreachable!("a directory"), Path::new("copy"))
            .unwrap();
        let dst = tmp.path().join("dst");
        std::fs::create_dir_all(&dst).unwrap();
        let droot = Root::open(&dst).unwrap();
        let stats = tarin::extract(&droot, Path::new("/"), &tar[..], &ids).unwrap();
        assert_eq!(stats.bytes, 4);
        assert_eq!(std::fs::read(dst.join("copy/e/f")).unwrap(), b"data");
        assert_eq!(
            std::fs::read_link(dst.join("copy/link")).unwrap(),
            Path::new("/etc/passwd")
        );
        let (a, b) = (
            std::fs::metadata(dst.join("copy/e/f")).unwrap(),
            std::fs::metadata(dst.join("copy/hard")).unwrap(),
        );
        assert_eq!(a.ino(), b.ino(), "hard links stay hard links");
    }
}
