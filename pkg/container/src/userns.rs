//! Containers of pods with a user namespace (`hostUsers: false`).
//!
//! runc 1.1 joins the pod's pinned user namespace by path (it still wants the mappings in the
//! spec, for the ids it chowns to), but cannot make idmapped mounts, so Berth makes them:
//! * Rootfs: overlayfs itself cannot be idmapped, its layers can. The image layers are
//!   idmapped (0 on disk shows as the pod's host root) into `<rw_dir>/l/<n>`, the overlay is
//!   mounted on those, and the staging mounts are detached right away (overlayfs keeps private
//!   clones of its layers). The writable upper dir is not idmapped: overlayfs creates files in
//!   it with the mounter's credentials (host root, which has no id in the pod's mapping), so it
//!   holds host ids instead; the few entries berthd put there while building the spec (which
//!   used the container's ids) are shifted to host ids before the overlay is mounted.
//! * Bind mounts (CRI mounts, the pod's hosts/resolv.conf/hostname files and /dev/shm, image
//!   volume dirs): an idmapped clone of each source in `<bundle>/idmap/<n>`, which runc binds
//!   from instead. Through it files are stored with the ids the pod sees.
//!
//! Everything mounted here lives under the bundle or the writable layer dir and is unmounted by
//! [`unstage`] before those are removed (a mount left there would make a recursive removal
//! delete through it into the host's files, so removal of a staging entry is never recursive).

use std::fs::{self, File};
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use berth_sandbox::UserNamespaceMappings;
use berth_snapshot::RootfsMount;
use oci_spec::runtime::{
    LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespaceBuilder, LinuxNamespaceType, Spec,
};

use crate::error::ContainerError;

/// Subdir of the bundle with the idmapped bind sources.
pub(crate) const BIND_STAGING: &str = "idmap";
/// Subdir of the writable layer dir with the idmapped image layers (only during create).
pub(crate) const LAYER_STAGING: &str = "l";
/// Bound on the upper-dir entries shifted (berthd only creates the working dir's path there).
const MAX_SHIFTED: usize = 4096;

/// The pod's user namespace, as a container needs it.
pub(crate) struct PodUserns {
    pub path: PathBuf,
    pub maps: UserNamespaceMappings,
    fd: File,
}

impl PodUserns {
    pub(crate) fn open(path: &Path, maps: &UserNamespaceMappings) -> Result<Self, ContainerError> {
        let fd = berth_namespace::open_user_namespace(path).map_err(ContainerError::namespace(
            "opening the pod's user namespace",
        ))?;
        Ok(PodUserns {
            path: path.to_path_buf(),
            maps: maps.clone(),
            fd,
        })
    }
}

fn oci_mappings(
    ranges: &[berth_sandbox::IdMapping],
) -> Result<Vec<LinuxIdMapping>, ContainerError> {
    ranges
        .iter()
        .map(|m| {
            LinuxIdMappingBuilder::default()
                .container_id(m.container_id)
                .host_id(m.host_id)
                .size(m.length)
                .build()
                .map_err(ContainerError::oci_spec("id mapping"))
        })
        .collect()
}

/// Joins the pod's user namespace by path and sets the mappings runc 1.1 wants anyway (with a
/// path it does not write them, but derives the host ids it chowns to from them).
pub(crate) fn apply_to_spec(spec: &mut Spec, userns: &PodUserns) -> Result<(), ContainerError> {
    let linux = spec
        .linux_mut()
        .as_mut()
        .ok_or_else(|| ContainerError::MalformedBundleConfig {
            path: PathBuf::from("config.json"),
            reason: "the spec has no linux section",
        })?;
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    namespaces.retain(|n| n.typ() != LinuxNamespaceType::User);
    let user = LinuxNamespaceBuilder::default()
        .typ(LinuxNamespaceType::User)
        .path(userns.path.clone())
        .build()
        .map_err(ContainerError::oci_spec("user namespace entry"))?;
    namespaces.insert(0, user);
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(Some(oci_mappings(&userns.maps.uids)?));
    linux.set_gid_mappings(Some(oci_mappings(&userns.maps.gids)?));
    Ok(())
}

/// Shifts the owners of everything in the fresh upper dir (and the dir itself) from container
/// ids to host ids; ids outside the mapping are left alone.
pub(crate) fn shift_upper(
    upper: &Path,
    maps: &UserNamespaceMappings,
) -> Result<(), ContainerError> {
    let mut todo = vec![upper.to_path_buf()];
    let mut done = 0;
    while let Some(path) = todo.pop() {
        done += 1;
        if done > MAX_SHIFTED {
            return Err(ContainerError::UpperDirTooLarge {
                dir: upper.to_path_buf(),
                max: MAX_SHIFTED,
            });
        }
        let md = fs::symlink_metadata(&path).map_err(ContainerError::io("stat", &path))?;
        let uid = maps.host_uid(md.uid()).unwrap_or(md.uid());
        let gid = maps.host_gid(md.gid()).unwrap_or(md.gid());
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid))
            .map_err(ContainerError::io("chown", &path))?;
        if md.is_dir() {
            for entry in fs::read_dir(&path).map_err(ContainerError::io("read", &path))? {
                todo.push(entry.map_err(ContainerError::io("read", &path))?.path());
            }
        }
    }
    Ok(())
}

/// Mounts the container's overlay on `rootfs` with idmapped image layers.
pub(crate) fn mount_rootfs(
    mount: &RootfsMount,
    rootfs: &Path,
    rw_dir: &Path,
    userns: &PodUserns,
) -> Result<(), ContainerError> {
    let staging = rw_dir.join(LAYER_STAGING);
    mkdir(&staging)?;
    let mut idmapped = mount.clone();
    idmapped.lowerdirs.clear();
    for (i, lower) in mount.lowerdirs.iter().enumerate() {
        let target = staging.join(i.to_string());
        mkdir(&target)?;
        berth_namespace::mount_idmapped(lower, &target, userns.fd.as_fd(), false)
            .map_err(ContainerError::namespace("idmapping an image layer"))?;
        idmapped.lowerdirs.push(target);
    }
    let mounted = idmapped.mount(rootfs, false);
    // The overlay holds private clones of its layers: the staging mounts can go either way.
    unstage(&staging)?;
    Ok(mounted?)
}

/// Replaces the source of every bind mount in `spec` by an idmapped clone of it under
/// `<bundle>/idmap`.
pub(crate) fn stage_binds(
    spec: &mut Spec,
    bundle: &Path,
    userns: &PodUserns,
) -> Result<(), ContainerError> {
    let staging = bundle.join(BIND_STAGING);
    mkdir(&staging)?;
    let Some(mounts) = spec.mounts_mut().as_mut() else {
        return Ok(());
    };
    for (i, m) in mounts.iter_mut().enumerate() {
        let is_bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
        let Some(source) = m.source().clone().filter(|_| is_bind) else {
            continue;
        };
        let md = fs::metadata(&source).map_err(ContainerError::io("stat", &source))?;
        let target = staging.join(i.to_string());
        if md.is_dir() {
            mkdir(&target)?;
        } else {
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&target)
                .map_err(ContainerError::io("create", &target))?;
        }
        berth_namespace::mount_idmapped(&source, &target, userns.fd.as_fd(), true).map_err(
            ContainerError::namespace(format!(
                "idmapping bind mount source {} for {}",
                source.display(),
                m.destination().display()
            )),
        )?;
        m.set_source(Some(target));
    }
    Ok(())
}

/// Unmounts and removes every entry of a staging dir, then the dir. Idempotent. Never removes
/// recursively: an entry that is still a mounted directory makes this fail instead.
pub(crate) fn unstage(dir: &Path) -> Result<(), ContainerError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ContainerError::io("read", dir)(e)),
    };
    for entry in entries {
        let path = entry.map_err(ContainerError::io("read", dir))?.path();
        berth_namespace::unmount_all(&path)
            .map_err(ContainerError::namespace("unmounting a staging mount"))?;
        let md = fs::symlink_metadata(&path).map_err(ContainerError::io("stat", &path))?;
        let removed = if md.is_dir() {
            fs::remove_dir(&path)
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(ContainerError::io("remove", &path)(e));
            }
            _ => {}
        }
    }
    match fs::remove_dir(dir) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(ContainerError::io("remove", dir)(e)),
        _ => Ok(()),
    }
}

fn mkdir(dir: &Path) -> Result<(), ContainerError> {
    match fs::DirBuilder::new().mode(0o711).create(dir) {
        Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(ContainerError::io("create", dir)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_joins_the_pod_user_namespace() {
        let mut spec = Spec::default();
        let tmp = tempfile::tempdir().unwrap();
        let fake = tmp.path().join("user");
        fs::write(&fake, "").unwrap();
        let maps = UserNamespaceMappings::single(65536 * 2, 65536);
        let userns = PodUserns::open(&fake, &maps).unwrap();
        apply_to_spec(&mut spec, &userns).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let ns = linux.namespaces().as_ref().unwrap();
        assert_eq!(ns[0].typ(), LinuxNamespaceType::User);
        assert_eq!(ns[0].path().as_deref(), Some(fake.as_path()));
        assert_eq!(
            ns.iter()
                .filter(|n| n.typ() == LinuxNamespaceType::User)
                .count(),
            1
        );
        let uids = linux.uid_mappings().as_ref().unwrap();
        assert_eq!(
            (uids[0].container_id(), uids[0].host_id(), uids[0].size()),
            (0, 131072, 65536)
        );
        assert_eq!(linux.gid_mappings().as_ref().unwrap().len(), 1);
    }

    #[test]
    fn unstage_tolerates_missing_and_keeps_foreign_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        unstage(&tmp.path().join("nope")).unwrap();
        let dir = tmp.path().join("idmap");
        fs::create_dir_all(dir.join("0/inner")).unwrap();
        fs::write(dir.join("1"), "").unwrap();
        // A non-empty dir (what a mount that failed to go away looks like) is not deleted.
        assert!(unstage(&dir).is_err());
        assert!(dir.join("0/inner").exists());
    }
}
