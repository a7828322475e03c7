//! Test fakes of the collaborators in `seams.rs`: one shared [`World`] that journals every call
//! (`"runtime.delete <id>"`, `"monitor.create <id>"`, ...), fails the operations it is told to, and
//! keeps what a real host would: which pods have a monitor and what each monitor knows, which
//! containers have runtime state, which rootfs are mounted, the exit files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use berth_cgroup::{CgroupError, PodCgroup};
use berth_monitor_api::{ContainerInfo, CreateRequest, Exit, MonitorError};
use berth_sandbox::SandboxRecord;
use berth_spec::Mount;

use crate::error::ContainerError;
use crate::runtime::OciRuntime;
use crate::seams::{
    BoxFuture, CgroupOps, ImageLookup, MonitorConn, MountedOverlay, PodMonitors, RootfsOps,
    RuntimeCommands, SandboxLookup,
};

/// Pids no process can have (above the kernel's largest `pid_max`): signalling by pid finds
/// nothing, so berthd's stop goes through the runtime, which the fake serves.
const FIRST_PID: i32 = 1 << 23;

#[derive(Default)]
pub(crate) struct World {
    calls: Mutex<Vec<String>>,
    failing: Mutex<HashSet<String>>,
    state: Mutex<State>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Pods whose monitor runs, with the containers it knows.
    pub(crate) monitors: HashMap<String, BTreeMap<String, ContainerInfo>>,
    /// Containers the runtime has state for.
    pub(crate) runtime_state: HashSet<String>,
    pub(crate) mounted: HashSet<PathBuf>,
    /// Exit files the monitors wrote, by container.
    pub(crate) exit_files: HashMap<String, Exit>,
    /// Containers whose process ignores SIGTERM.
    pub(crate) ignore_sigterm: HashSet<String>,
    next_pid: i32,
}

impl World {
    pub(crate) fn new() -> Arc<World> {
        Arc::new(World::default())
    }

    fn call(&self, what: String) {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(what);
    }

    pub(crate) fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn clear_calls(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Makes every later `op` (`"monitor.create"`, `"rootfs.mount"`, ...) fail.
    pub(crate) fn fail(&self, op: &str) {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(op.to_string());
    }

    /// Undoes [`World::fail`].
    pub(crate) fn heal(&self, op: &str) {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(op);
    }

    fn failing(&self, op: &str) -> bool {
        self.failing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(op)
    }

    fn injected(&self, op: &str) -> Result<(), ContainerError> {
        match self.failing(op) {
            true => Err(ContainerError::Failpoint(format!(
                "injected failure of {op}"
            ))),
            false => Ok(()),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container's process exits (the monitor records it and writes its exit file).
    pub(crate) fn exit(&self, id: &str, exit_code: i32, signal: i32) {
        let mut state = self.state();
        let exit = Exit {
            exit_code,
            signal,
            finished_at_ns: berth_clock::now_ns(),
            oom_killed: false,
            log_bytes: 0,
        };
        let known = state
            .monitors
            .values_mut()
            .filter_map(|pod| pod.get_mut(id))
            .find(|c| c.exit.is_none());
        if let Some(info) = known {
            info.exit = Some(exit.clone());
            state.exit_files.insert(id.to_string(), exit);
        }
    }

    /// Where a monitor directory of [`FakeMonitors`] belongs: its last component is the pod.
    fn pod_of(dir: &Path) -> String {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

pub(crate) struct FakeRuntime(pub(crate) Arc<World>);

impl RuntimeCommands for FakeRuntime {
    fn kill<'a>(
        &'a self,
        _runtime: &'a OciRuntime,
        id: &'a str,
        signal: i32,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(async move {
            self.0.call(format!("runtime.kill {id} {signal}"));
            self.0.injected("runtime.kill")?;
            let ignored = signal == libc::SIGTERM && self.0.state().ignore_sigterm.contains(id);
            if !ignored {
                self.0.exit(id, 128 + signal, signal);
            }
            Ok(())
        })
    }

    fn delete<'a>(
        &'a self,
        _runtime: &'a OciRuntime,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(async move {
            self.0.call(format!("runtime.delete {id}"));
            self.0.injected("runtime.delete")?;
            // `delete --force` kills what still runs.
            self.0.exit(id, 128 + libc::SIGKILL, libc::SIGKILL);
            self.0.state().runtime_state.remove(id);
            Ok(())
        })
    }

    fn update<'a>(
        &'a self,
        _runtime: &'a OciRuntime,
        id: &'a str,
        _resources: &'a oci_spec::runtime::LinuxResources,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(async move {
            self.0.call(format!("runtime.update {id}"));
            self.0.injected("runtime.update")
        })
    }

    fn has_state(&self, _runtime: &OciRuntime, id: &str) -> bool {
        self.0.state().runtime_state.contains(id)
    }
}

pub(crate) struct FakeMonitors {
    pub(crate) world: Arc<World>,
    pub(crate) dir: PathBuf,
}

struct FakeConn {
    world: Arc<World>,
    sandbox_id: String,
}

impl MonitorConn for FakeConn {
    fn create(&self, request: &CreateRequest) -> Result<i32, MonitorError> {
        let id = &request.container_id;
        self.world.call(format!("monitor.create {id}"));
        let mut state = self.world.state();
        if !state.monitors.contains_key(&self.sandbox_id) {
            return Err(MonitorError::NotRunning(PathBuf::from(&self.sandbox_id)));
        }
        // The runtime's `create` leaves state behind whether or not its `start` succeeds.
        state.runtime_state.insert(id.clone());
        if self.world.failing("monitor.create") {
            return Err(MonitorError::Runtime(
                "injected failure of the runtime".into(),
            ));
        }
        state.next_pid += 1;
        let pid = FIRST_PID + state.next_pid;
        let info = ContainerInfo {
            container_id: id.clone(),
            pid,
            exit: None,
            log_bytes: 0,
            creating: false,
        };
        if let Some(pod) = state.monitors.get_mut(&self.sandbox_id) {
            pod.insert(id.clone(), info);
        }
        Ok(pid)
    }

    fn list(&self) -> Result<Vec<ContainerInfo>, MonitorError> {
        match self.world.state().monitors.get(&self.sandbox_id) {
            Some(pod) => Ok(pod.values().cloned().collect()),
            None => Err(MonitorError::NotRunning(PathBuf::from(&self.sandbox_id))),
        }
    }

    fn forget(&self, container_id: &str, stay: bool) -> Result<(), MonitorError> {
        self.world
            .call(format!("monitor.forget {container_id} stay={stay}"));
        let mut state = self.world.state();
        if let Some(pod) = state.monitors.get_mut(&self.sandbox_id) {
            pod.remove(container_id);
            if !stay && pod.is_empty() {
                state.monitors.remove(&self.sandbox_id);
            }
        }
        Ok(())
    }

    fn reopen_log(&self, container_id: &str) -> Result<(), MonitorError> {
        self.world
            .call(format!("monitor.reopen_log {container_id}"));
        Ok(())
    }
}

impl FakeMonitors {
    fn conn(&self, sandbox_id: &str) -> Arc<dyn MonitorConn> {
        Arc::new(FakeConn {
            world: self.world.clone(),
            sandbox_id: sandbox_id.to_string(),
        })
    }
}

impl PodMonitors for FakeMonitors {
    fn dir_for(&self, sandbox_id: &str) -> PathBuf {
        self.dir.join(sandbox_id)
    }

    fn get_or_spawn<'a>(
        &'a self,
        sandbox_id: &'a str,
        _cgroup_procs: Vec<PathBuf>,
    ) -> BoxFuture<'a, Result<Arc<dyn MonitorConn>, ContainerError>> {
        Box::pin(async move {
            if !self.world.state().monitors.contains_key(sandbox_id) {
                self.world.call(format!("monitor.spawn {sandbox_id}"));
                self.world.injected("monitor.spawn")?;
                self.world
                    .state()
                    .monitors
                    .insert(sandbox_id.to_string(), BTreeMap::new());
            }
            Ok(self.conn(sandbox_id))
        })
    }

    fn get<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Option<Arc<dyn MonitorConn>>> {
        Box::pin(async move {
            let alive = self.world.state().monitors.contains_key(sandbox_id);
            alive.then(|| self.conn(sandbox_id))
        })
    }

    fn live(&self) -> Vec<Arc<dyn MonitorConn>> {
        let pods: Vec<String> = self.world.state().monitors.keys().cloned().collect();
        pods.iter().map(|p| self.conn(p)).collect()
    }

    fn forget<'a>(
        &'a self,
        sandbox_id: &'a str,
        container_id: &'a str,
        last: bool,
        only_if_known: bool,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(async move {
            let mut state = self.world.state();
            let Some(pod) = state.monitors.get_mut(sandbox_id) else {
                return Ok(());
            };
            if only_if_known && !pod.contains_key(container_id) {
                return Ok(());
            }
            self.world
                .call(format!("monitor.forget {container_id} last={last}"));
            self.world.injected("monitor.forget")?;
            pod.remove(container_id);
            if last {
                state.monitors.remove(sandbox_id);
            }
            Ok(())
        })
    }

    fn retire<'a>(
        &'a self,
        sandbox_id: &'a str,
        _cgroup: Option<&'a PodCgroup>,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(async move {
            self.world.call(format!("monitor.retire {sandbox_id}"));
            self.world.state().monitors.remove(sandbox_id);
            Ok(())
        })
    }

    fn wait_exit<'a>(
        &'a self,
        monitor_dir: &'a Path,
        container_id: &'a str,
    ) -> BoxFuture<'a, Result<Exit, ContainerError>> {
        Box::pin(async move {
            let pod = World::pod_of(monitor_dir);
            loop {
                let known = self
                    .world
                    .state()
                    .monitors
                    .get(&pod)
                    .map(|p| p.get(container_id).map(|c| c.exit.clone()));
                match known {
                    None => return Err(MonitorError::NotRunning(monitor_dir.into()).into()),
                    Some(None) => {
                        return Err(MonitorError::UnknownContainer(container_id.into()).into());
                    }
                    Some(Some(Some(exit))) => return Ok(exit),
                    Some(Some(None)) => tokio::time::sleep(Duration::from_millis(1)).await,
                }
            }
        })
    }

    fn read_exit_file(
        &self,
        _monitor_dir: &Path,
        container_id: &str,
    ) -> Result<Option<Exit>, MonitorError> {
        Ok(self.world.state().exit_files.get(container_id).cloned())
    }
}

/// Cgroups of a host where every pod cgroup exists and is empty (test pods have none anyway).
pub(crate) struct FakeCgroups;

impl CgroupOps for FakeCgroups {
    fn exists(&self, _pod: &PodCgroup) -> bool {
        true
    }

    fn container_dirs(&self, _pod: &PodCgroup, _container_id: &str) -> Vec<PathBuf> {
        Vec::new()
    }

    fn oom_files(&self, _pod: &PodCgroup, _container_id: &str) -> Vec<PathBuf> {
        Vec::new()
    }

    fn monitor_procs_files(&self, _pod: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError> {
        Ok(Vec::new())
    }

    fn unified(&self) -> bool {
        true
    }
}

/// Mounts that are directories and a set entry.
pub(crate) struct FakeRootfs(pub(crate) Arc<World>);

struct FakeOverlay(Arc<World>);

impl MountedOverlay for FakeOverlay {
    fn remount_idmapped(
        &self,
        rootfs: &Path,
        _rw_dir: &Path,
        _userns: &crate::userns::PodUserns,
    ) -> Result<(), ContainerError> {
        self.0
            .call(format!("rootfs.remount_idmapped {}", rootfs.display()));
        Ok(())
    }
}

impl RootfsOps for FakeRootfs {
    fn mount_rootfs(
        &self,
        _snapshot: &str,
        overlay_dir: &Path,
        rootfs: &Path,
    ) -> Result<Box<dyn MountedOverlay>, ContainerError> {
        self.0.call(format!("rootfs.mount {}", rootfs.display()));
        self.0.injected("rootfs.mount")?;
        std::fs::create_dir_all(overlay_dir).map_err(ContainerError::io("create", overlay_dir))?;
        self.0.state().mounted.insert(rootfs.to_path_buf());
        Ok(Box::new(FakeOverlay(self.0.clone())))
    }

    fn unmount(&self, target: &Path) -> Result<(), ContainerError> {
        self.0.call(format!("rootfs.unmount {}", target.display()));
        self.0.injected("rootfs.unmount")?;
        self.0.state().mounted.remove(target);
        Ok(())
    }

    fn mount_image_volumes(
        &self,
        bundle: &Path,
        _mounts: &mut [Mount],
    ) -> Result<(), ContainerError> {
        self.0
            .call(format!("rootfs.mount_image_volumes {}", bundle.display()));
        self.0.injected("rootfs.mount_image_volumes")
    }

    fn unmount_image_volumes(&self, _bundle: &Path) -> Result<(), ContainerError> {
        Ok(())
    }
}

#[derive(Default)]
pub(crate) struct FakeSandboxes(pub(crate) Mutex<BTreeMap<String, SandboxRecord>>);

impl SandboxLookup for FakeSandboxes {
    fn get(&self, id: &str) -> Option<SandboxRecord> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    fn list(&self) -> Vec<SandboxRecord> {
        let pods = self.0.lock().unwrap_or_else(|p| p.into_inner());
        pods.values().cloned().collect()
    }
}

/// One pulled image, `busybox`, with a single layer.
pub(crate) struct FakeImages;

pub(crate) const IMAGE: &str = "busybox";

impl ImageLookup for FakeImages {
    fn image(&self, query: &str) -> Option<berth_image::ImageRecord> {
        (query == IMAGE).then(|| berth_image::ImageRecord {
            id: "sha256:feed".into(),
            repo_tags: vec![format!("docker.io/library/{IMAGE}:latest")],
            repo_digests: vec![],
            manifest_digest: "sha256:beef".into(),
            size: 1,
            layers: vec![berth_image::LayerRecord {
                digest: "sha256:1a".into(),
                diff_id: "sha256:1b".into(),
                chain_id: "sha256:1c".into(),
                size: 1,
                media_type: String::new(),
            }],
            user: String::new(),
            created_at_ns: 1,
        })
    }

    fn config_json(&self, _id: &str) -> Result<Vec<u8>, berth_image::ImageError> {
        Ok(br#"{"config":{"Cmd":["sh"]}}"#.to_vec())
    }
}
