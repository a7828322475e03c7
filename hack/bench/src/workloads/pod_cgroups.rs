//! Pod cgroups as kubelet asks for them: `linux.cgroup_parent = /berth-bench.kubepods/pod-<uid>`
//! (cgroupfs driver). containerd 1.6 reads a pod's stats from that cgroup (without one,
//! ListPodSandboxStats fails: "cgroupPath is empty"). kubelet makes and removes pod cgroups
//! itself; runtimes only put their containers below them: Berth creates the pod cgroup and
//! removes what it created, runc (containerd) creates the missing directories and removes only
//! the containers' own. So after the pods are gone, [`remove`] deletes the run's empty pod
//! cgroups and their parent, in every cgroup hierarchy (rmdir only: a cgroup that still has
//! processes or children stays).

use std::path::{Path, PathBuf};

use berth_cri_api::v1 as cri;

/// The parent of the bench's pod cgroups (a child of each hierarchy's root).
pub const PARENT: &str = "berth-bench.kubepods";

/// `config` with the pod cgroup `/PARENT/pod-<uid>`.
pub fn with_cgroup_parent(mut config: cri::PodSandboxConfig) -> cri::PodSandboxConfig {
    let uid = config
        .metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .unwrap_or_default();
    config
        .linux
        .get_or_insert_with(Default::default)
        .cgroup_parent = format!("/{PARENT}/pod-{uid}");
    config
}

/// Mount points of cgroup (v1) and cgroup2 file systems in a mountinfo text.
pub(super) fn cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mount_point = left.split_whitespace().nth(4)?;
            matches!(fstype, "cgroup" | "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .collect()
}

fn rmdir_if_there(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("removing cgroup {}: {e}", dir.display())),
    }
}

/// Remove the pod cgroups of `configs` (made by [`with_cgroup_parent`]) where a runtime left
/// them, then `PARENT` if it is empty (another run may still use it). The first failure, if any.
pub fn remove(configs: &[cri::PodSandboxConfig]) -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| cgroup_mounts(&m))
        .unwrap_or_default();
    let mut first = None;
    for mount in &mounts {
        let parent = mount.join(PARENT);
        if !parent.is_dir() {
            continue;
        }
        for config in configs {
            let Some(linux) = config.linux.as_ref() else {
                continue;
            };
            let rel = linux.cgroup_parent.trim_start_matches('/');
            if rel.is_empty() || !rel.starts_with(PARENT) {
                continue;
            }
            if let Err(e) = rmdir_if_there(&mount.join(rel)) {
                first.get_or_insert(e);
            }
        }
        // Busy or not empty: in use by another run (or a failed removal, reported above).
        let _ = std::fs::remove_dir(&parent);
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup_mounts() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n\
                  22 1 8:1 / / rw - ext4 /dev/vda rw\n";
        assert_eq!(
            cgroup_mounts(mi),
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/unified"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn cgroup_parent_is_per_pod() {
        let c = with_cgroup_parent(super::super::pods::pod_config("run", 0, 3));
        assert_eq!(
            c.linux.unwrap().cgroup_parent,
            "/berth-bench.kubepods/pod-run-0-3"
        );
    }
}
