//! `mounts` and `linux.rootfsPropagation`: the standard filesystems, the pod's files, the CRI
//! mounts and the image's volumes, merged as containerd's `WithMounts` does.
//!
//! Order: the standard set first (minus any entry a later mount replaces: same destination, or
//! anything under `/dev` when `/dev` itself is mounted), then the CRI mounts together with the
//! pod files and image volumes that no CRI mount replaces, stably sorted by path depth so that a
//! mount never hides a deeper one listed before it.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount as OciMount, MountBuilder};

use crate::rootfs::{clean_absolute, is_missing};
use crate::{Propagation, SpecError, SpecInput};

/// The OCI mount option of a recursively read-only mount (runc 1.2+, kernel 5.12+).
pub const RECURSIVE_READ_ONLY: &str = "rro";

/// The mounts, and the rootfs propagation the CRI mounts need (None: runc's default).
#[derive(Debug)]
pub(crate) struct MountPlan {
    pub mounts: Vec<OciMount>,
    pub rootfs_propagation: Option<String>,
}

/// A bind mount before it becomes an OCI mount.
struct Bind {
    destination: PathBuf,
    source: PathBuf,
    options: Vec<String>,
}

/// Builds the mounts. Side effects: missing CRI host paths are created as directories (as
/// kubelet and containerd do), and the image volume directories under `volumes_dir`. All input
/// is validated before anything is created.
pub(crate) fn plan(input: &SpecInput) -> Result<MountPlan, SpecError> {
    let security = &input.config.security;
    let ro = |readonly: bool| if readonly { "ro" } else { "rw" }.to_string();

    // Validate first.
    let mut cri = Vec::with_capacity(input.config.mounts.len());
    for m in &input.config.mounts {
        let dest = clean_absolute(&m.container_path).ok_or_else(|| {
            SpecError::InvalidMount(format!(
                "mount container path {:?} is not absolute",
                m.container_path
            ))
        })?;
        let host = Path::new(&m.host_path);
        if !host.is_absolute() {
            return Err(SpecError::InvalidMount(format!(
                "mount host path {:?} is not absolute",
                m.host_path
            )));
        }
        if m.recursive_read_only && (!m.readonly || m.propagation != Propagation::Private) {
            return Err(SpecError::InvalidMount(format!(
                "mount {:?}: recursive_read_only needs readonly and private propagation",
                m.container_path
            )));
        }
        cri.push((dest, host, m));
    }
    let mut volumes = Vec::new();
    for v in &input.image.volumes {
        let dest = clean_absolute(v).ok_or_else(|| {
            SpecError::InvalidMount(format!("image volume {v:?} is not an absolute path"))
        })?;
        volumes.push(dest);
    }

    // CRI mounts.
    let mut rootfs_propagation: Option<String> = None;
    let mut binds: Vec<Bind> = Vec::new();
    for (dest, host, m) in cri {
        let source = prepare_host_path(host)?;
        let propagation = match m.propagation {
            Propagation::Private => "rprivate",
            Propagation::HostToContainer => {
                if rootfs_propagation.as_deref() != Some("rshared") {
                    rootfs_propagation = Some("rslave".into());
                }
                "rslave"
            }
            Propagation::Bidirectional => {
                rootfs_propagation = Some("rshared".into());
                "rshared"
            }
        };
        let mut options = vec!["rbind".into(), propagation.into(), ro(m.readonly)];
        // runc 1.2's recursive read-only option; berth-container replaces it with a read-only
        // clone of the source for runtimes without it (a runtime that gets it unreplaced and
        // does not know it fails the mount rather than leaving submounts writable).
        if m.recursive_read_only {
            options.push(RECURSIVE_READ_ONLY.into());
        }
        binds.push(Bind {
            destination: dest,
            source,
            options,
        });
    }
    let taken = |binds: &[Bind], dest: &Path| binds.iter().any(|b| b.destination == dest);

    // The pod's files: writable unless the rootfs is read-only (containerd).
    let sandbox = &input.sandbox;
    let files = [
        ("/etc/hostname", sandbox.hostname_file),
        ("/etc/hosts", sandbox.hosts),
        ("/etc/resolv.conf", sandbox.resolv_conf),
    ];
    for (dest, source) in files {
        let (dest, Some(source)) = (Path::new(dest), source) else {
            continue;
        };
        if !taken(&binds, dest) {
            binds.push(Bind {
                destination: dest.to_path_buf(),
                source: source.to_path_buf(),
                options: vec![
                    "rbind".into(),
                    "rprivate".into(),
                    ro(security.readonly_rootfs),
                ],
            });
        }
    }
    if let Some(shm) = sandbox.shm {
        let dest = Path::new("/dev/shm");
        if !taken(&binds, dest) {
            binds.push(Bind {
                destination: dest.to_path_buf(),
                source: shm.to_path_buf(),
                options: ["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"]
                    .map(String::from)
                    .to_vec(),
            });
        }
    }

    // Image volumes not replaced by a CRI mount (or a pod file): an empty directory of their
    // own. Unlike containerd we don't copy the image's content at that path into it; the volume
    // starts empty.
    for dest in volumes {
        if taken(&binds, &dest) {
            continue;
        }
        let source = input.volumes_dir.join(volume_dir_name(&dest));
        create_dir_all(&source)?;
        binds.push(Bind {
            destination: dest,
            source,
            options: vec!["rbind".into(), "rprivate".into(), "rw".into()],
        });
    }

    binds.sort_by_key(|b| b.destination.components().count());

    let replaced = |dest: &Path| {
        binds.iter().any(|b| b.destination == dest)
            || (dest.starts_with("/dev")
                && dest != Path::new("/dev")
                && binds.iter().any(|b| b.destination == Path::new("/dev")))
    };
    let mut mounts: Vec<OciMount> = standard(security.privileged, input.cgroup_unified)?
        .into_iter()
        .filter(|m| !replaced(m.destination()))
        .collect();
    for b in binds {
        mounts.push(
            MountBuilder::default()
                .destination(b.destination)
                .typ("bind")
                .source(b.source)
                .options(b.options)
                .build()?,
        );
    }
    Ok(MountPlan {
        mounts,
        rootfs_propagation,
    })
}

/// The filesystems every container gets (containerd's defaults, without `/run`). sysfs and the
/// cgroup filesystem are read-only unless privileged.
fn standard(privileged: bool, cgroup_unified: bool) -> Result<Vec<OciMount>, SpecError> {
    let ro = if privileged { "rw" } else { "ro" };
    let cgroup_type = if cgroup_unified { "cgroup2" } else { "cgroup" };
    let table: [(&str, &str, &str, Vec<&str>); 7] = [
        ("/proc", "proc", "proc", vec!["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            vec!["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            vec![
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            vec!["nosuid", "noexec", "nodev"],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            vec!["nosuid", "noexec", "nodev", ro],
        ),
        (
            "/sys/fs/cgroup",
            cgroup_type,
            "cgroup",
            vec!["nosuid", "noexec", "nodev", "relatime", ro],
        ),
        // Replaced by the pod's /dev/shm when the sandbox has one.
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            vec!["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
    ];
    table
        .into_iter()
        .map(|(dest, typ, source, options)| {
            Ok(MountBuilder::default()
                .destination(dest)
                .typ(typ)
                .source(source)
                .options(options.into_iter().map(String::from).collect::<Vec<_>>())
                .build()?)
        })
        .collect()
}

/// Creates a missing CRI host path as a directory (a file that exists is bound as a file), then
/// resolves its symlinks, as containerd does with `filepath.EvalSymlinks`.
fn prepare_host_path(host: &Path) -> Result<PathBuf, SpecError> {
    match fs::metadata(host) {
        Ok(_) => {}
        Err(e) if is_missing(&e) => create_dir_all(host)?,
        Err(e) => return Err(SpecError::io(format!("inspecting {}", host.display()), e)),
    }
    fs::canonicalize(host).map_err(|e| SpecError::io(format!("resolving {}", host.display()), e))
}

fn create_dir_all(dir: &Path) -> Result<(), SpecError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
        .map_err(|e: io::Error| SpecError::io(format!("creating {}", dir.display()), e))
}

/// A file name for the volume at `dest`: readable (`data-cache`) and unique (a hash of the whole
/// path, since sanitizing alone could map `/a_b` and `/a/b` to one name), short enough for any
/// filesystem.
fn volume_dir_name(dest: &Path) -> String {
    let path = dest.as_os_str().as_encoded_bytes();
    let readable: String = dest
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    // FNV-1a, 64 bits: stable across builds and releases (std's hasher is not).
    let hash = path.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{readable}-{hash:016x}")
}

#[cfg(test)]
#[path = "mounts_tests.rs"]
mod tests;
