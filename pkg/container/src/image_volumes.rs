//! Image volumes (CRI `Mount.image`, KEP-4639): a pulled image's rootfs mounted read-only into a
//! container, sharing the image's layer snapshots (nothing is copied).
//!
//! Each one is mounted at `<bundle>/image-volumes/<index of the mount>` (a read-only overlay of
//! the layers, or a read-only bind of a single layer), and the mount's `host_path` is set to it
//! (or to the image sub path inside it), so the spec binds it like any CRI mount (`rbind`, `ro`,
//! `rprivate`) — as containerd does. The mounts live as long as the container: berthd restarts
//! do not touch them, and teardown finds them by path (`unmount_all`), not through the record.
//! The snapshots stay protected from garbage collection while the container exists (see
//! `snapshots`), as the container's own image's do.

use std::path::{Component, Path};

use berth_snapshot::Snapshotter;
use berth_spec::{Mount, Propagation};

use crate::error::ContainerError;
use crate::record::ContainerRecord;

/// Under the bundle: one mount point per image volume.
const DIR: &str = "image-volumes";

/// Resolves every image volume's image against the store (it must be pulled): fills its image
/// ID and top snapshot. Checks the sub paths' shape. Changes nothing on disk.
pub(crate) fn resolve(
    images: &dyn crate::seams::ImageLookup,
    mounts: &mut [Mount],
) -> Result<(), ContainerError> {
    for m in mounts.iter_mut() {
        let Some(source) = m.image.as_mut() else {
            continue;
        };
        if !m.host_path.is_empty() {
            return Err(ContainerError::InvalidMount {
                mount: m.container_path.clone(),
                reason: "an image volume has no host path".into(),
            });
        }
        let sub = Path::new(&source.sub_path);
        if sub
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(ContainerError::InvalidMount {
                mount: m.container_path.clone(),
                reason: format!(
                    "image_sub_path {:?} must be relative and stay inside the image",
                    source.sub_path
                ),
            });
        }
        let image = images
            .image(&source.image)
            .ok_or_else(|| ContainerError::ImageNotFound(source.image.clone()))?;
        let snapshot = image.top_chain_id().ok_or_else(|| {
            ContainerError::ImageWithoutLayers(format!("{} (mount {})", image.id, m.container_path))
        })?;
        source.snapshot = snapshot.to_string();
        source.image_id = image.id.clone();
        // Read-only whatever was asked (kubelet always asks so), and never a propagation
        // channel to or from the host.
        m.readonly = true;
        m.propagation = Propagation::Private;
    }
    Ok(())
}

/// Mounts every image volume under `bundle` and points its `host_path` at what the container
/// gets. Blocking. On failure, what was mounted stays for the caller's rollback (`unmount_all`).
pub(crate) fn mount_all(
    snapshots: &Snapshotter,
    bundle: &Path,
    mounts: &mut [Mount],
) -> Result<(), ContainerError> {
    for (index, m) in mounts.iter_mut().enumerate() {
        let Some(source) = m.image.as_ref() else {
            continue;
        };
        let target = bundle.join(DIR).join(index.to_string());
        std::fs::create_dir_all(&target).map_err(ContainerError::io("create", &target))?;
        snapshots
            .prepare_readonly(&source.snapshot)?
            .mount(&target)?;
        let host_path = if source.sub_path.is_empty() {
            target
        } else {
            berth_snapshot::resolve_sub_dir(&target, &source.sub_path).map_err(|source_err| {
                ContainerError::ImageSubPath {
                    mount: m.container_path.clone(),
                    image: source.image.clone(),
                    source: source_err,
                }
            })?
        };
        m.host_path = host_path.to_string_lossy().into_owned();
    }
    Ok(())
}

/// Unmounts whatever is mounted under `<bundle>/image-volumes` and removes the mount points.
/// Idempotent. Only empty directories are removed: a mount that is somehow still there makes
/// this fail rather than have the bundle's recursive removal reach into an image.
pub(crate) fn unmount_all(bundle: &Path) -> Result<(), ContainerError> {
    let dir = bundle.join(DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ContainerError::io("read", &dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(ContainerError::io("read", &dir))?.path();
        berth_snapshot::unmount(&path)?;
        std::fs::remove_dir(&path).map_err(ContainerError::io("remove", &path))?;
    }
    std::fs::remove_dir(&dir).map_err(ContainerError::io("remove", &dir))
}

/// The snapshots the container's image volumes are mounted on.
pub(crate) fn snapshots(record: &ContainerRecord) -> impl Iterator<Item = String> + '_ {
    record
        .config
        .mounts
        .iter()
        .filter_map(|m| m.image.as_ref())
        .filter(|i| !i.snapshot.is_empty())
        .map(|i| i.snapshot.clone())
}
