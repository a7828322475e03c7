//! Fakes of the host seams and of the container layer: they keep what exists (pins, mounts,
//! cgroups, init processes) in one shared [`World`] that outlives a simulated berthd crash, and
//! fail or crash at the step a test names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use berth_cgroup::{CgroupError, PodCgroup, PodResources};
use berth_namespace::PinRequest;
pub use berth_network::testing::Fault;

use crate::host::{BoxFuture, Host, PinnedPaths, PodCgroups, PodInits, PodNamespaces, ShmMounts};
use crate::{InitProcess, PodContainers, SandboxError};

/// The steps of the fake host that a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Pin,
    Unpin,
    MountShm,
    UnmountShm,
    PlanCgroup,
    EnsureCgroup,
    RemoveCgroup,
    StartInit,
}

/// What exists on the fake host.
#[derive(Debug, Default)]
pub struct World {
    /// Pinned namespace files.
    pub pins: BTreeSet<PathBuf>,
    /// Mounted /dev/shm directories.
    pub shm: BTreeSet<PathBuf>,
    /// Existing pod cgroups, by path.
    pub cgroups: BTreeSet<String>,
    /// Running init processes, and the pod cgroup each is in.
    pub inits: BTreeMap<i32, String>,
    next_pid: i32,
    faults: Vec<(Step, Fault)>,
}

impl World {
    /// Nothing of any pod is left.
    pub fn is_clean(&self) -> bool {
        self.pins.is_empty()
            && self.shm.is_empty()
            && self.cgroups.is_empty()
            && self.inits.is_empty()
    }
}

#[derive(Clone, Default)]
pub struct FakeHost {
    world: Arc<Mutex<World>>,
}

fn injected(step: Step) -> String {
    format!("injected failure at {step:?}")
}

impl FakeHost {
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inject(&self, step: Step, fault: Fault) {
        self.world().faults.push((step, fault));
    }

    pub fn heal(&self) {
        self.world().faults.clear();
    }

    /// The host seams, all backed by this fake.
    pub fn host(&self) -> Host {
        Host {
            namespaces: Box::new(self.clone()),
            shm: Box::new(self.clone()),
            cgroups: Box::new(self.clone()),
            inits: Box::new(self.clone()),
        }
    }

    fn fault(&self, step: Step) -> Option<Fault> {
        self.world()
            .faults
            .iter()
            .find(|(s, _)| *s == step)
            .map(|(_, f)| *f)
    }

    /// Runs `effect` unless an error is injected at `step`; panics after it for a crash (the
    /// world keeps the effect, as the kernel would after berthd died).
    fn step<T, E>(
        &self,
        step: Step,
        error: impl FnOnce(String) -> E,
        effect: impl FnOnce(&mut World) -> Result<T, E>,
    ) -> Result<T, E> {
        let fault = self.fault(step);
        if fault == Some(Fault::Error) {
            return Err(error(injected(step)));
        }
        let out = effect(&mut self.world());
        if fault == Some(Fault::Crash) {
            panic!("injected crash after {step:?}");
        }
        out
    }
}

/// A failure of the fake host, as the real one reports its file operations.
fn internal(message: String) -> SandboxError {
    SandboxError::Io {
        op: "fake",
        path: PathBuf::from("/fake"),
        source: std::io::Error::other(message),
    }
}

fn cgroup_error(message: String) -> CgroupError {
    CgroupError::Io {
        op: "fake",
        path: PathBuf::from("/fake"),
        source: std::io::Error::other(message),
    }
}

impl PodNamespaces for FakeHost {
    fn pin(&self, req: &PinRequest<'_>) -> Result<PinnedPaths, SandboxError> {
        self.step(Step::Pin, internal, |world| {
            std::fs::create_dir_all(req.dir).map_err(|e| internal(e.to_string()))?;
            let mut pin = |name: &str| -> Result<PathBuf, SandboxError> {
                let path = req.dir.join(name);
                std::fs::write(&path, "").map_err(|e| internal(e.to_string()))?;
                world.pins.insert(path.clone());
                Ok(path)
            };
            let mut pinned = PinnedPaths::default();
            for kind in req.kinds {
                let path = pin(kind.file_name())?;
                match kind {
                    berth_namespace::NsKind::Net => pinned.net = Some(path),
                    berth_namespace::NsKind::Uts => pinned.uts = Some(path),
                    berth_namespace::NsKind::Ipc => pinned.ipc = Some(path),
                }
            }
            if req.userns.is_some() {
                pinned.user = Some(pin("user")?);
            }
            Ok(pinned)
        })
    }

    fn unpin(&self, dir: &Path) -> Result<(), SandboxError> {
        self.step(Step::Unpin, internal, |world| {
            world.pins.retain(|p| !p.starts_with(dir));
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(internal(e.to_string())),
                _ => Ok(()),
            }
        })
    }

    fn is_pinned(&self, path: &Path) -> bool {
        self.world().pins.contains(path)
    }
}

impl ShmMounts for FakeHost {
    fn mount(&self, sandbox_dir: &Path) -> Result<PathBuf, SandboxError> {
        self.step(Step::MountShm, internal, |world| {
            let shm = sandbox_dir.join(crate::files::SHM);
            std::fs::create_dir_all(&shm).map_err(|e| internal(e.to_string()))?;
            world.shm.insert(shm.clone());
            Ok(shm)
        })
    }

    fn unmount(&self, shm: &Path) -> Result<(), SandboxError> {
        self.step(Step::UnmountShm, internal, |world| {
            world.shm.remove(shm);
            Ok(())
        })
    }
}

impl PodCgroups for FakeHost {
    fn pod_cgroup(&self, parent: &str, sandbox_id: &str) -> Result<PodCgroup, CgroupError> {
        let path = if parent.is_empty() {
            format!("/berth/{sandbox_id}")
        } else {
            parent.to_string()
        };
        let cgroup = serde_json::json!({
            "path": path,
            "driver": "cgroupfs",
            "slice": null,
            "runc_systemd": false,
            "dirs": [format!("/fake-cgroup{path}")],
        });
        serde_json::from_value(cgroup).map_err(|e| cgroup_error(e.to_string()))
    }

    fn plan(&self, cgroup: &mut PodCgroup) -> Result<bool, CgroupError> {
        self.step(Step::PlanCgroup, cgroup_error, |world| {
            Ok(!world.cgroups.contains(&cgroup.path))
        })
    }

    fn ensure(&self, cgroup: &mut PodCgroup, _: &PodResources) -> Result<bool, CgroupError> {
        self.step(Step::EnsureCgroup, cgroup_error, |world| {
            Ok(world.cgroups.insert(cgroup.path.clone()))
        })
    }

    fn init_procs_files(&self, cgroup: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(vec![
            PathBuf::from(&cgroup.path).join("berth-init/cgroup.procs"),
        ])
    }

    /// Kills the inits running in the pod cgroup, as the real one kills whatever is in it.
    fn kill_leftovers(&self, cgroup: &PodCgroup) -> Result<Vec<i32>, CgroupError> {
        let mut world = self.world();
        let killed: Vec<i32> = world
            .inits
            .iter()
            .filter(|(_, c)| **c == cgroup.path)
            .map(|(pid, _)| *pid)
            .collect();
        world.inits.retain(|pid, _| !killed.contains(pid));
        Ok(killed)
    }

    /// Busy while an init still runs in it, as rmdir of a cgroup with a process is.
    fn remove(&self, cgroup: &PodCgroup) -> Result<(), CgroupError> {
        self.step(Step::RemoveCgroup, cgroup_error, |world| {
            if world.inits.values().any(|c| *c == cgroup.path) {
                return Err(CgroupError::Busy {
                    path: PathBuf::from(&cgroup.path).join("berth-init"),
                    detail: "berth-init still has a process".into(),
                });
            }
            world.cgroups.remove(&cgroup.path);
            Ok(())
        })
    }
}

impl PodInits for FakeHost {
    fn start(&self, cgroup_procs: &[PathBuf]) -> Result<InitProcess, SandboxError> {
        self.step(Step::StartInit, internal, |world| {
            world.next_pid += 1;
            let pid = 1000 + world.next_pid;
            // <pod cgroup>/berth-init/cgroup.procs
            let cgroup = cgroup_procs
                .first()
                .and_then(|p| p.parent()?.parent())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            world.inits.insert(pid, cgroup);
            Ok(InitProcess { pid, start_time: 1 })
        })
    }

    fn stop(&self, init: &InitProcess) {
        self.world().inits.remove(&init.pid);
    }

    fn stop_and_wait<'a>(
        &'a self,
        init: &'a InitProcess,
    ) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.stop(init);
        Box::pin(async { Ok(()) })
    }
}

/// The container layer: records what the sandbox asked of it.
#[derive(Default)]
pub struct FakeContainers {
    calls: Mutex<Vec<(&'static str, String)>>,
    pub fail_stop: std::sync::atomic::AtomicBool,
    userns_problem: Option<String>,
}

impl FakeContainers {
    pub fn refusing_user_namespaces(problem: &str) -> FakeContainers {
        FakeContainers {
            userns_problem: Some(problem.to_string()),
            ..Default::default()
        }
    }

    pub fn calls(&self) -> Vec<(&'static str, String)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, op: &'static str, id: &str) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((op, id.to_string()));
    }
}

impl PodContainers for FakeContainers {
    fn stop_all<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.record("stop", sandbox_id);
        let fail = self.fail_stop.load(std::sync::atomic::Ordering::Relaxed);
        Box::pin(async move {
            if fail {
                return Err(SandboxError::Containers("injected stop failure".into()));
            }
            Ok(())
        })
    }

    fn remove_all<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Result<(), SandboxError>> {
        self.record("remove", sandbox_id);
        Box::pin(async { Ok(()) })
    }

    fn user_namespaces_unsupported(&self) -> Option<String> {
        self.userns_problem.clone()
    }
}
