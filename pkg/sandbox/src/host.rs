//! What a sandbox needs root for, behind narrow seams: pinned namespaces, the /dev/shm tmpfs, the
//! pod cgroup and the pod's init process. [`Host::linux`] is the real host (what
//! [`crate::SandboxService::open`] wires); the unit tests substitute fakes that record what
//! exists, so lifecycle, rollback and crash recovery run without root and in milliseconds.
//! (The CNI plugins have their seam in `berth-network`: `Cni::with_executor`.)

use std::path::{Path, PathBuf};

use berth_cgroup::{CgroupError, Cgroups, PodCgroup, PodResources};
use berth_namespace::{NsKind, PinRequest};

use crate::error::SandboxError;
use crate::files;
use crate::init::{self, InitProcess};

pub(crate) use futures_core::future::BoxFuture;

/// The namespace files a pin made; `None` for the kinds the pod shares with the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PinnedPaths {
    pub net: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub user: Option<PathBuf>,
}

/// The pod's namespaces, created and kept alive as files under the sandbox dir.
pub(crate) trait PodNamespaces: Send + Sync {
    /// Creates and pins the requested namespaces; everything or nothing.
    fn pin(&self, req: &PinRequest<'_>) -> Result<PinnedPaths, SandboxError>;
    /// Unpins whatever is pinned under `dir` and removes it; fine if nothing is.
    fn unpin(&self, dir: &Path) -> Result<(), SandboxError>;
    /// Whether `path` still holds a namespace (it does not after a reboot).
    fn is_pinned(&self, path: &Path) -> bool;
}

/// The pod's /dev/shm.
pub(crate) trait ShmMounts: Send + Sync {
    /// Mounts it under the sandbox dir and returns where; idempotent.
    fn mount(&self, sandbox_dir: &Path) -> Result<PathBuf, SandboxError>;
    /// Unmounts it if mounted; idempotent.
    fn unmount(&self, shm: &Path) -> Result<(), SandboxError>;
}

/// The pod cgroup, as `berth_cgroup::Cgroups` manages it (see there for each step's contract).
pub(crate) trait PodCgroups: Send + Sync {
    fn pod_cgroup(&self, cgroup_parent: &str, sandbox_id: &str) -> Result<PodCgroup, CgroupError>;
    fn plan(&self, cgroup: &mut PodCgroup) -> Result<bool, CgroupError>;
    fn ensure(&self, cgroup: &mut PodCgroup, resources: &PodResources)
    -> Result<bool, CgroupError>;
    fn init_procs_files(&self, cgroup: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError>;
    /// Kills what is left in the pod's own cgroups and returns the pids; blocks until they left.
    fn kill_leftovers(&self, cgroup: &PodCgroup) -> Result<Vec<i32>, CgroupError>;
    fn remove(&self, cgroup: &PodCgroup) -> Result<(), CgroupError>;
}

/// The pod's init process (PID namespace mode POD only).
pub(crate) trait PodInits: Send + Sync {
    /// Starts it inside the cgroups whose `cgroup.procs` files are given.
    fn start(&self, cgroup_procs: &[PathBuf]) -> Result<InitProcess, SandboxError>;
    /// Kills it without waiting; idempotent.
    fn stop(&self, init: &InitProcess);
    /// Kills it and waits until it has exited; idempotent.
    fn stop_and_wait<'a>(
        &'a self,
        init: &'a InitProcess,
    ) -> BoxFuture<'a, Result<(), SandboxError>>;
}

/// The host as the sandbox lifecycle sees it.
pub(crate) struct Host {
    pub namespaces: Box<dyn PodNamespaces>,
    pub shm: Box<dyn ShmMounts>,
    pub cgroups: Box<dyn PodCgroups>,
    pub inits: Box<dyn PodInits>,
}

impl Host {
    /// The real host: nsfs pins, a tmpfs, the cgroup filesystem and `berth-init`.
    pub fn linux(cgroups: Cgroups, init_binary: PathBuf) -> Host {
        Host {
            namespaces: Box::new(NsfsPins),
            shm: Box::new(TmpfsShm),
            cgroups: Box::new(cgroups),
            inits: Box::new(BerthInit {
                binary: init_binary,
            }),
        }
    }
}

/// Namespaces pinned by bind mounts of their nsfs files (`berth_namespace`).
struct NsfsPins;

impl PodNamespaces for NsfsPins {
    fn pin(&self, req: &PinRequest<'_>) -> Result<PinnedPaths, SandboxError> {
        let pinned = berth_namespace::pin(req)?;
        Ok(PinnedPaths {
            net: pinned.path(NsKind::Net).map(Into::into),
            uts: pinned.path(NsKind::Uts).map(Into::into),
            ipc: pinned.path(NsKind::Ipc).map(Into::into),
            user: pinned.user().map(Into::into),
        })
    }

    fn unpin(&self, dir: &Path) -> Result<(), SandboxError> {
        Ok(berth_namespace::unpin(dir)?)
    }

    fn is_pinned(&self, path: &Path) -> bool {
        berth_namespace::is_pinned(path)
    }
}

/// /dev/shm as a tmpfs mounted under the sandbox dir.
struct TmpfsShm;

impl ShmMounts for TmpfsShm {
    fn mount(&self, sandbox_dir: &Path) -> Result<PathBuf, SandboxError> {
        files::mount_shm(sandbox_dir)
    }

    fn unmount(&self, shm: &Path) -> Result<(), SandboxError> {
        files::unmount_shm(shm)
    }
}

impl PodCgroups for Cgroups {
    fn pod_cgroup(&self, cgroup_parent: &str, sandbox_id: &str) -> Result<PodCgroup, CgroupError> {
        Cgroups::pod_cgroup(self, cgroup_parent, sandbox_id)
    }

    fn plan(&self, cgroup: &mut PodCgroup) -> Result<bool, CgroupError> {
        Cgroups::plan(self, cgroup)
    }

    fn ensure(
        &self,
        cgroup: &mut PodCgroup,
        resources: &PodResources,
    ) -> Result<bool, CgroupError> {
        Cgroups::ensure(self, cgroup, resources)
    }

    fn init_procs_files(&self, cgroup: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError> {
        Cgroups::init_procs_files(self, cgroup)
    }

    fn kill_leftovers(&self, cgroup: &PodCgroup) -> Result<Vec<i32>, CgroupError> {
        Cgroups::kill_leftovers(self, cgroup)
    }

    fn remove(&self, cgroup: &PodCgroup) -> Result<(), CgroupError> {
        Cgroups::remove(self, cgroup)
    }
}

/// `berth-init` as PID 1 of a new PID namespace (see `init.rs`).
struct BerthInit {
    binary: PathBuf,
}

impl PodInits for BerthInit {
    fn start(&self, cgroup_procs: &[PathBuf]) -> Result<InitProcess, SandboxError> {
        Ok(init::start(&self.binary, cgroup_procs)?)
    }

    fn stop(&self, init: &InitProcess) {
        init::stop(init)
    }

    fn stop_and_wait<'a>(
        &'a self,
        init: &'a InitProcess,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        Box::pin(async move { Ok(init::stop_and_wait(init).await?) })
    }
}
