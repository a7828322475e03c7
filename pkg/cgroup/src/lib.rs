//! Pod-level cgroups for Berth.
//!
//! Berth runs pods without a pause container, so the pod cgroup kubelet names in
//! `RunPodSandbox.cgroup_parent` is an empty directory that Berth must make sure exists in every
//! hierarchy runc will use, with the pod's resources applied, before runc creates containers
//! below it. [`Cgroups`] does that for pure v1, pure v2 and hybrid hosts, with both kubelet
//! drivers, and removes at `RemovePodSandbox` exactly what it created.
//!
//! What comes from youki's `libcgroups`: layout detection (`get_cgroup_setup_with_root`, which
//! recognises hybrid hosts) and applying resources (its v1 and v2 managers' `apply`). What is
//! written here, and why: slice-name expansion (libcgroups has it only in its D-Bus systemd
//! manager, not built), the list of hierarchies (`hierarchy.rs`), and creating/removing the
//! directories (`fsops.rs`).

mod container;
mod error;
mod fsops;
mod hierarchy;
mod leftovers;
pub mod parent;
mod pod;
mod resources;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Once;

use libcgroups::common::{AnyManagerError, CgroupManager, ControllerOpt};
use serde::{Deserialize, Serialize};

pub use container::{INIT_CGROUP, MONITOR_CGROUP};
pub use error::CgroupError;
pub use pod::PodCgroup;
pub use resources::{DEFAULT_CPU_PERIOD, PodResources};
pub use stats::{CgroupStats, CpuStats, MemoryStats, PidsStats, Pressure, PsiData, PsiStats};

use hierarchy::Hierarchy;

/// Where cgroup hierarchies are mounted on every supported host.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// Parent of Berth's own pod cgroups with the cgroupfs driver (`/berth/<sandbox-id>`).
pub const DEFAULT_CGROUPFS_PARENT: &str = "/berth";
/// Parent slice of Berth's own pod cgroups with the systemd driver (`berth-<sandbox-id>.slice`,
/// on disk `berth.slice/berth-<sandbox-id>.slice`).
pub const DEFAULT_SYSTEMD_PARENT: &str = "berth.slice";

/// kubelet's cgroup driver, from berthd's `cgroup.driver` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    /// `cgroup_parent` is an absolute cgroup path.
    Cgroupfs,
    /// `cgroup_parent` is a systemd slice name.
    Systemd,
}

impl std::str::FromStr for Driver {
    type Err = CgroupError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "cgroupfs" => Ok(Driver::Cgroupfs),
            "systemd" => Ok(Driver::Systemd),
            other => Err(CgroupError::InvalidDriver {
                value: other.to_owned(),
            }),
        }
    }
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::Cgroupfs => "cgroupfs",
            Driver::Systemd => "systemd",
        })
    }
}

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only cgroup v1 hierarchies.
    V1,
    /// cgroup2 mounted at the root.
    V2,
    /// v1 controller hierarchies plus a (controller-less, or nearly) cgroup2 at `<root>/unified`.
    Hybrid,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::V1 => "cgroup v1",
            Layout::V2 => "cgroup v2",
            Layout::Hybrid => "hybrid cgroup v1/v2",
        })
    }
}

static SYSTEMD_FALLBACK_WARNING: Once = Once::new();

/// The host's cgroups, as Berth uses them for pods. Detected once; cheap to share.
#[derive(Debug, Clone)]
pub struct Cgroups {
    driver: Driver,
    layout: Layout,
    root: PathBuf,
    hierarchies: Vec<Hierarchy>,
    default_parent: String,
    systemd_running: bool,
}

impl Cgroups {
    /// Detects the layout under `/sys/fs/cgroup`.
    pub fn new(driver: Driver) -> Result<Cgroups, CgroupError> {
        Self::with_root(driver, DEFAULT_ROOT)
    }

    /// Like [`Cgroups::new`] with another root. Mainly for tests: a cgroup2 mount given as root
    /// is treated as a pure v2 host (on a hybrid host, `/sys/fs/cgroup/unified` exercises the v2
    /// code); for v1 layouts the hierarchies are the cgroup mounts below `root`.
    pub fn with_root(driver: Driver, root: impl Into<PathBuf>) -> Result<Cgroups, CgroupError> {
        let root = root.into();
        let (layout, hierarchies) = hierarchy::detect(&root)?;
        // sd_booted(3): systemd is PID 1 exactly when this directory exists.
        let systemd_running = Path::new("/run/systemd/system").is_dir();
        if driver == Driver::Systemd {
            SYSTEMD_FALLBACK_WARNING.call_once(|| {
                if systemd_running {
                    tracing::warn!(
                        "systemd cgroup driver: Berth creates missing pod slices through the cgroup \
                         filesystem, not through systemd's D-Bus API"
                    );
                } else {
                    tracing::warn!(
                        "systemd cgroup driver but systemd is not running: managing slice paths \
                         directly through the cgroup filesystem, runc will run in cgroupfs mode"
                    );
                }
            });
        }
        tracing::debug!(%layout, root = %root.display(), hierarchies = hierarchies.len(), "cgroups detected");
        Ok(Cgroups {
            driver,
            layout,
            root,
            hierarchies,
            default_parent: match driver {
                Driver::Cgroupfs => DEFAULT_CGROUPFS_PARENT,
                Driver::Systemd => DEFAULT_SYSTEMD_PARENT,
            }
            .to_owned(),
            systemd_running,
        })
    }

    /// Sets the parent used when kubelet passes no `cgroup_parent`: an absolute path for the
    /// cgroupfs driver (pods become `<parent>/<sandbox-id>`), a slice name for systemd (pods
    /// become `<parent prefix>-<sandbox-id>.slice`; `-.slice` puts them at the top).
    pub fn with_default_parent(mut self, parent: &str) -> Result<Cgroups, CgroupError> {
        self.default_parent = match self.driver {
            Driver::Cgroupfs => parent::validate_cgroupfs_path(parent)?,
            Driver::Systemd => {
                parent::expand_slice(parent)?;
                parent.to_owned()
            }
        };
        Ok(self)
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The pod cgroup for kubelet's `cgroup_parent`, or Berth's default for `sandbox_id` when it
    /// is empty. Validated (an absolute path without `.`/`..`/NUL for cgroupfs, a well-formed
    /// `*.slice` name for systemd); errors are [`CgroupError::InvalidParent`] and
    /// [`CgroupError::InvalidSandboxId`]. Touches nothing on disk.
    pub fn pod_cgroup(
        &self,
        cgroup_parent: &str,
        sandbox_id: &str,
    ) -> Result<PodCgroup, CgroupError> {
        let (path, slice) = match (self.driver, cgroup_parent.is_empty()) {
            (Driver::Cgroupfs, false) => (parent::validate_cgroupfs_path(cgroup_parent)?, None),
            (Driver::Cgroupfs, true) => {
                parent::validate_sandbox_id(sandbox_id)?;
                let p = format!("{}/{sandbox_id}", self.default_parent);
                (parent::validate_cgroupfs_path(&p)?, None)
            }
            (Driver::Systemd, false) => (
                parent::validate_slice(cgroup_parent)?,
                Some(cgroup_parent.to_owned()),
            ),
            (Driver::Systemd, true) => {
                let slice = parent::child_slice(&self.default_parent, sandbox_id)?;
                (parent::validate_slice(&slice)?, Some(slice))
            }
        };
        let dirs = self.dirs_for(&path);
        let runc_systemd = self.driver == Driver::Systemd && self.systemd_running;
        Ok(PodCgroup::new(path, self.driver, slice, runc_systemd, dirs))
    }

    fn dirs_for(&self, path: &str) -> Vec<PathBuf> {
        let rel = path.trim_start_matches('/');
        self.hierarchies.iter().map(|h| h.mount.join(rel)).collect()
    }

    /// Records in `cg` the directories [`Cgroups::ensure`] is about to create (what is missing
    /// now), before they exist, and returns whether there are any. The caller persists `cg`
    /// before calling `ensure`: a crash between a mkdir and the next record write then leaves
    /// nothing unaccounted. [`Cgroups::remove`] skips a recorded directory that was never made.
    pub fn plan(&self, cg: &mut PodCgroup) -> Result<bool, CgroupError> {
        parent::validate_cgroupfs_path(&cg.path)?;
        let missing: Vec<PathBuf> = self
            .hierarchies
            .iter()
            .flat_map(|h| fsops::missing_in(h, &cg.path))
            .collect();
        cg.record_created(&missing);
        Ok(!missing.is_empty())
    }

    /// Makes sure the pod cgroup exists in every hierarchy in use, creating what is missing
    /// (ancestors included), and applies `resources` to it. Records what it created in `cg`
    /// (persist it afterwards) and returns whether Berth created the pod cgroup itself.
    /// Idempotent: calling it again creates nothing new and re-applies the resources. On error
    /// the directories made by this call are removed again.
    pub fn ensure(
        &self,
        cg: &mut PodCgroup,
        resources: &PodResources,
    ) -> Result<bool, CgroupError> {
        parent::validate_cgroupfs_path(&cg.path)?;
        let oci = resources.to_oci()?;
        self.check_supported(resources)?;

        let mut created = Vec::new();
        for h in &self.hierarchies {
            match fsops::create_in(h, &cg.path) {
                Ok(mut c) => created.append(&mut c),
                Err(e) => {
                    fsops::rollback(&created);
                    return Err(e);
                }
            }
        }
        if !resources.is_empty()
            && let Err(e) = self.apply(&cg.path, &oci)
        {
            fsops::rollback(&created);
            return Err(e);
        }
        let created_pod = created.iter().any(|c| cg.is_pod_dir(c));
        if !created.is_empty() {
            tracing::debug!(path = %cg.path, created = created.len(), "pod cgroup created");
        }
        cg.record_created(&created);
        Ok(created_pod)
    }

    /// Refuses, before anything is created, what the layout cannot do.
    fn check_supported(&self, resources: &PodResources) -> Result<(), CgroupError> {
        if self.layout == Layout::V2 {
            return Ok(());
        }
        if !resources.unified.is_empty() {
            // runc's fs manager returns ErrV1NoUnified for the same request.
            return Err(CgroupError::Unsupported {
                what: "`unified` cgroup v2 resources".into(),
                layout: self.layout,
            });
        }
        if !resources.hugepage_limits.is_empty()
            && !self.hierarchies.iter().any(|h| h.has_controller("hugetlb"))
        {
            return Err(CgroupError::Unsupported {
                what: "hugepage limits (no hugetlb v1 hierarchy is mounted)".into(),
                layout: self.layout,
            });
        }
        Ok(())
    }

    fn apply(
        &self,
        path: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), CgroupError> {
        let opt = ControllerOpt {
            resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        };
        let lib_err = |source: AnyManagerError| CgroupError::Libcgroups {
            path: path.to_owned(),
            source,
        };
        match self.layout {
            // The v1 manager finds each controller's mount itself and joins the absolute path
            // to it. Its apply() also writes libcgroups' default device rules into the devices
            // cgroup; those only allow, and a fresh v1 devices cgroup allows everything, so this
            // changes nothing (runc replaces the rules in each container's own cgroup anyway).
            Layout::V1 | Layout::Hybrid => {
                let m = libcgroups::v1::manager::Manager::new(Path::new(path))
                    .map_err(|e| lib_err(e.into()))?;
                m.apply(&opt).map_err(|e| lib_err(e.into()))
            }
            Layout::V2 => {
                let m = libcgroups::v2::manager::Manager::new(self.root.clone(), path.into())
                    .map_err(|e| lib_err(e.into()))?;
                m.apply(&opt).map_err(|e| lib_err(e.into()))
            }
        }
    }

    /// Removes what Berth created for this pod cgroup: nothing if kubelet made it. Idempotent,
    /// and fine if it is already gone. Kills nothing: if the pod cgroup still holds processes
    /// or child cgroups (containers runc has not deleted yet) this fails with
    /// [`CgroupError::Busy`] naming the directory, and deletes nothing. Created ancestors are
    /// removed too when empty; one still holding another pod's cgroup stays.
    pub fn remove(&self, cg: &PodCgroup) -> Result<(), CgroupError> {
        parent::validate_cgroupfs_path(&cg.path)?;
        // The monitor's and the init's child cgroups are always Berth's, even in a pod cgroup
        // kubelet made.
        for dir in cg.fs_paths() {
            for helper in [MONITOR_CGROUP, INIT_CGROUP] {
                let child = dir.join(helper);
                match std::fs::remove_dir(&child) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) if e.kind() == std::io::ErrorKind::ResourceBusy => {
                        return Err(CgroupError::Busy {
                            path: child,
                            detail: format!("{helper} still has a process"),
                        });
                    }
                    Err(e) => return Err(CgroupError::io("rmdir", child, e)),
                }
            }
        }
        let created = cg.created_dirs();
        for dir in created {
            let inside = self
                .hierarchies
                .iter()
                .any(|h| dir.starts_with(&h.mount) && dir != &h.mount);
            if !inside {
                return Err(CgroupError::ForeignPath { path: dir.clone() });
            }
        }
        for dir in created.iter().filter(|d| cg.is_pod_dir(d)) {
            if let Some(detail) = fsops::busy_reason(dir)? {
                return Err(CgroupError::Busy {
                    path: dir.clone(),
                    detail,
                });
            }
        }
        for dir in fsops::sorted_deepest_first(created) {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) if cg.is_pod_dir(&dir) && e.kind() == std::io::ErrorKind::ResourceBusy => {
                    return Err(CgroupError::Busy {
                        path: dir,
                        detail: "busy on rmdir (a process or child cgroup appeared)".into(),
                    });
                }
                Err(e) if cg.is_pod_dir(&dir) => return Err(CgroupError::io("rmdir", dir, e)),
                Err(e) => {
                    // An ancestor shared with another pod, or otherwise not ours to force.
                    tracing::debug!(path = %dir.display(), error = %e, "keeping cgroup ancestor");
                }
            }
        }
        Ok(())
    }

    /// Whether the pod cgroup exists in every hierarchy in use.
    pub fn exists(&self, cg: &PodCgroup) -> bool {
        let dirs = cg.fs_paths();
        !dirs.is_empty() && dirs.iter().all(|d| d.is_dir())
    }
}
