//! The pod cgroup as the sandbox record persists it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Driver;
use crate::parent::escape_unit_component;

/// One pod's cgroup: its path, where it lives on disk, and what Berth created for it.
///
/// Serializable so the sandbox record can persist it between `RunPodSandbox` and
/// `RemovePodSandbox` (and across berthd restarts): [`crate::Cgroups::remove`] only deletes the
/// directories recorded here as created by Berth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodCgroup {
    /// The pod cgroup's path inside every hierarchy, always in cgroupfs form: for the cgroupfs
    /// driver kubelet's parent itself (`/kubepods/burstable/pod123`), for the systemd driver the
    /// expanded slice (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod123.slice`).
    /// This is also what the pod's cgroup v1/v2 stats are read from. It is *not* a runc
    /// `cgroupsPath` by itself (runc never gets the pod cgroup, only containers below it): see
    /// [`PodCgroup::container_cgroups_path`].
    pub path: String,
    /// The driver this cgroup was named with.
    pub driver: Driver,
    /// The slice name for the systemd driver (`kubepods-burstable-pod123.slice`), else `None`.
    pub slice: Option<String>,
    /// Whether the containers' cgroups can be handed to runc in `--systemd-cgroup` mode: only
    /// with the systemd driver on a host where systemd runs. Otherwise runc must be run in its
    /// default (cgroupfs) mode with the path from [`PodCgroup::container_cgroups_path`]; runc's
    /// systemd mode fails outright without systemd ("systemd not running on this host").
    pub runc_systemd: bool,
    /// The pod directory in each hierarchy in use.
    dirs: Vec<PathBuf>,
    /// Directories Berth created for this pod (the pod's own and any missing ancestors).
    #[serde(default)]
    created: Vec<PathBuf>,
}

impl PodCgroup {
    pub(crate) fn new(
        path: String,
        driver: Driver,
        slice: Option<String>,
        runc_systemd: bool,
        dirs: Vec<PathBuf>,
    ) -> Self {
        PodCgroup {
            path,
            driver,
            slice,
            runc_systemd,
            dirs,
            created: Vec::new(),
        }
    }

    /// Every directory this cgroup has on disk, one per hierarchy in use (each v1 controller
    /// hierarchy, `name=systemd`, and the unified one on hybrid hosts). For leak checks and stats.
    pub fn fs_paths(&self) -> Vec<PathBuf> {
        self.dirs.clone()
    }

    /// Whether Berth created the pod cgroup itself (in at least one hierarchy), as opposed to
    /// finding it made by kubelet. Only then does [`crate::Cgroups::remove`] delete anything.
    pub fn created_by_berth(&self) -> bool {
        self.created.iter().any(|c| self.dirs.contains(c))
    }

    /// Every directory Berth created for this pod, the pod's own and the ancestors it had to
    /// make, in creation order.
    pub fn created_dirs(&self) -> &[PathBuf] {
        &self.created
    }

    pub(crate) fn record_created(&mut self, dirs: &[PathBuf]) {
        for d in dirs {
            if !self.created.contains(d) {
                self.created.push(d.clone());
            }
        }
    }

    pub(crate) fn is_pod_dir(&self, p: &Path) -> bool {
        self.dirs.iter().any(|d| d == p)
    }

    /// What runc should get as `linux.cgroupsPath` for a container of this pod:
    /// - systemd driver with systemd running: `<pod slice>:berth:<id>` (runc then asks systemd
    ///   for the scope `berth-<id>.scope` in the pod slice), to be used with `--systemd-cgroup`;
    /// - systemd driver without systemd: `<expanded slice path>/berth-<id>.scope`, the same
    ///   directory systemd would have made, for runc's default cgroupfs mode;
    /// - cgroupfs driver: `<pod path>/<id>`.
    pub fn container_cgroups_path(&self, container_id: &str) -> String {
        match (&self.slice, self.runc_systemd) {
            (Some(slice), true) => format!("{slice}:berth:{container_id}"),
            (Some(_), false) => format!(
                "{}/berth-{}.scope",
                self.path,
                escape_unit_component(container_id)
            ),
            (None, _) => format!("{}/{container_id}", self.path),
        }
    }
}
