//! What the container layer needs from a pod's cgroup: where each container's cgroup lives on
//! disk (for OOM counters and stats), live resource updates, and the monitor's own cgroup.

use std::path::PathBuf;

use crate::error::CgroupError;
use crate::hierarchy::Kind;
use crate::{Cgroups, Layout, PodCgroup};

/// The child cgroup of a pod that holds its berth-monitor: the monitor is accounted to the pod
/// and lives outside berthd's cgroup (a restart of berthd's service must not kill it). A child,
/// not the pod cgroup itself, because cgroup v2 forbids processes in a cgroup whose controllers
/// are delegated to children ("no internal processes").
pub const MONITOR_CGROUP: &str = "berth-monitor";

/// The child cgroup of a pod that holds its `berth-init` (pods with a shared PID namespace): the
/// init is the pod's, accounted and limited with it, and must not stay in berthd's cgroup (a
/// restart of berthd's service would kill it). A child of its own for the same "no internal
/// processes" reason as [`MONITOR_CGROUP`].
pub const INIT_CGROUP: &str = "berth-init";

impl PodCgroup {
    /// A container's cgroup path in cgroupfs form (what runc creates for
    /// [`PodCgroup::container_cgroups_path`]).
    pub fn container_fs_path(&self, container_id: &str) -> String {
        match &self.slice {
            Some(_) => format!(
                "{}/berth-{}.scope",
                self.path,
                crate::parent::escape_unit_component(container_id)
            ),
            None => format!("{}/{container_id}", self.path),
        }
    }
}

impl Cgroups {
    /// The container's cgroup directory in every hierarchy in use.
    pub fn container_dirs(&self, pod: &PodCgroup, container_id: &str) -> Vec<PathBuf> {
        self.dirs_for(&pod.container_fs_path(container_id))
    }

    /// The files that count OOM kills in the container's cgroup: `memory.oom_control` of the v1
    /// memory hierarchy, `memory.events` on a v2 host.
    pub fn oom_files(&self, pod: &PodCgroup, container_id: &str) -> Vec<PathBuf> {
        let rel = pod.container_fs_path(container_id);
        let rel = rel.trim_start_matches('/');
        self.hierarchies
            .iter()
            .filter_map(|h| match &h.kind {
                Kind::V1 { .. } if h.has_controller("memory") => {
                    Some(h.mount.join(rel).join("memory.oom_control"))
                }
                Kind::V2 { managed: true } => Some(h.mount.join(rel).join("memory.events")),
                _ => None,
            })
            .collect()
    }

    /// Creates the pod's monitor cgroup (`<pod>/berth-monitor`) in every hierarchy and returns
    /// the `cgroup.procs` files the monitor moves itself into. The pod cgroup must exist.
    /// [`Cgroups::remove`] deletes it with the pod (the monitor has exited by then).
    pub fn monitor_procs_files(&self, pod: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError> {
        helper_procs_files(pod, MONITOR_CGROUP)
    }

    /// Creates the pod's init cgroup (`<pod>/berth-init`) in every hierarchy and returns the
    /// `cgroup.procs` files the init joins before it execs. The pod cgroup must exist.
    /// [`Cgroups::remove`] deletes it with the pod (the init must have exited by then).
    pub fn init_procs_files(&self, pod: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError> {
        helper_procs_files(pod, INIT_CGROUP)
    }

    /// Whether the host's cgroups are cgroup v2 only (containers then get a cgroup namespace and
    /// a cgroup2 `/sys/fs/cgroup`).
    pub fn unified(&self) -> bool {
        self.layout == Layout::V2
    }

    /// The memory limit currently set on a container's cgroup, for status after an update
    /// (`None` for unlimited or unreadable).
    pub fn container_memory_limit(&self, pod: &PodCgroup, container_id: &str) -> Option<i64> {
        let rel = pod.container_fs_path(container_id);
        let rel = rel.trim_start_matches('/');
        for h in &self.hierarchies {
            let file = match &h.kind {
                Kind::V1 { .. } if h.has_controller("memory") => {
                    h.mount.join(rel).join("memory.limit_in_bytes")
                }
                Kind::V2 { managed: true } => h.mount.join(rel).join("memory.max"),
                _ => continue,
            };
            let text = std::fs::read_to_string(file).ok()?;
            return text.trim().parse::<i64>().ok();
        }
        None
    }
}

/// Creates the pod's helper child cgroup `name` in every hierarchy (with the parent's cpuset on
/// v1, or nothing can join it) and returns its `cgroup.procs` files.
fn helper_procs_files(pod: &PodCgroup, name: &str) -> Result<Vec<PathBuf>, CgroupError> {
    let mut files = Vec::new();
    for dir in pod.fs_paths() {
        let child = dir.join(name);
        match std::fs::create_dir(&child) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("mkdir", child, e)),
        }
        inherit_cpuset(&dir, &child)?;
        files.push(child.join("cgroup.procs"));
    }
    Ok(files)
}

/// A new v1 cpuset cgroup starts with empty `cpuset.cpus` and `cpuset.mems`, and a process can't
/// join it (ENOSPC) until they are set: give it its parent's, as runc does for its own cgroups.
fn inherit_cpuset(parent: &std::path::Path, child: &std::path::Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let target = child.join(file);
        let Ok(current) = std::fs::read_to_string(&target) else {
            continue; // not the cpuset hierarchy
        };
        if !current.trim().is_empty() {
            continue;
        }
        let source = parent.join(file);
        let value =
            std::fs::read_to_string(&source).map_err(|e| CgroupError::io("read", &source, e))?;
        std::fs::write(&target, value.trim()).map_err(|e| CgroupError::io("write", &target, e))?;
    }
    Ok(())
}
