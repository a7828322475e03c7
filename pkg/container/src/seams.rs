//! The container service's collaborators that need root or a real host to act: the OCI runtime's
//! command line, the pods' monitors, cgroups, the rootfs mounts, and the sandboxes and images it
//! builds on. Each is a narrow trait here, as the lifecycle code uses it, with the real one beside
//! it; `ContainerService::open` wires the real ones, and the unit tests (`tests/`) fakes that
//! record calls and fail on request, so lifecycle, rollback and recovery run without root.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_cgroup::{CgroupError, PodCgroup};
use berth_monitor_api::{ContainerInfo, CreateRequest, Exit, MonitorError};
use berth_sandbox::SandboxRecord;
use berth_spec::Mount;

use crate::error::ContainerError;
use crate::runtime::OciRuntime;

pub(crate) use futures_core::future::BoxFuture;

/// The OCI runtime commands berthd runs itself (`run` is the monitor's). `runtime` says which
/// binary and state dir.
pub(crate) trait RuntimeCommands: Send + Sync {
    /// Signals the container; one already gone is not an error.
    fn kill<'a>(
        &'a self,
        runtime: &'a OciRuntime,
        id: &'a str,
        signal: i32,
    ) -> BoxFuture<'a, Result<(), ContainerError>>;
    /// Deletes the runtime's state, killing what still runs. Idempotent.
    fn delete<'a>(
        &'a self,
        runtime: &'a OciRuntime,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ContainerError>>;
    /// New resource limits for a running container.
    fn update<'a>(
        &'a self,
        runtime: &'a OciRuntime,
        id: &'a str,
        resources: &'a oci_spec::runtime::LinuxResources,
    ) -> BoxFuture<'a, Result<(), ContainerError>>;
    /// Whether the runtime still has state for `id`.
    fn has_state(&self, runtime: &OciRuntime, id: &str) -> bool;
}

/// The real runtime: its binary, run as a child process.
pub(crate) struct CommandLine;

impl RuntimeCommands for CommandLine {
    fn kill<'a>(
        &'a self,
        runtime: &'a OciRuntime,
        id: &'a str,
        signal: i32,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(runtime.kill(id, signal))
    }

    fn delete<'a>(
        &'a self,
        runtime: &'a OciRuntime,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(runtime.delete(id))
    }

    fn update<'a>(
        &'a self,
        runtime: &'a OciRuntime,
        id: &'a str,
        resources: &'a oci_spec::runtime::LinuxResources,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(runtime.update(id, resources))
    }

    fn has_state(&self, runtime: &OciRuntime, id: &str) -> bool {
        runtime.has_state(id)
    }
}

/// One container's runtime: which binary (from its record) and the commands to run it with.
pub(crate) struct BoundRuntime {
    pub(crate) commands: Arc<dyn RuntimeCommands>,
    pub(crate) oci: OciRuntime,
}

impl BoundRuntime {
    pub(crate) async fn kill(&self, id: &str, signal: i32) -> Result<(), ContainerError> {
        self.commands.kill(&self.oci, id, signal).await
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), ContainerError> {
        self.commands.delete(&self.oci, id).await
    }

    pub(crate) async fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), ContainerError> {
        self.commands.update(&self.oci, id, resources).await
    }

    pub(crate) fn has_state(&self, id: &str) -> bool {
        self.commands.has_state(&self.oci, id)
    }
}

/// A connection to one pod's monitor (blocking calls, as `berth_monitor_api::Monitor` makes them).
pub(crate) trait MonitorConn: Send + Sync {
    /// Has the runtime create and start the container; its pid.
    fn create(&self, request: &CreateRequest) -> Result<i32, MonitorError>;
    fn list(&self) -> Result<Vec<ContainerInfo>, MonitorError>;
    /// `stay`: the monitor keeps running even if this was its last container.
    fn forget(&self, container_id: &str, stay: bool) -> Result<(), MonitorError>;
    fn reopen_log(&self, container_id: &str) -> Result<(), MonitorError>;
}

impl MonitorConn for berth_monitor_api::Monitor {
    fn create(&self, request: &CreateRequest) -> Result<i32, MonitorError> {
        berth_monitor_api::Monitor::create(self, request)
    }

    fn list(&self) -> Result<Vec<ContainerInfo>, MonitorError> {
        berth_monitor_api::Monitor::list(self)
    }

    fn forget(&self, container_id: &str, stay: bool) -> Result<(), MonitorError> {
        berth_monitor_api::Monitor::forget(self, container_id, stay)
    }

    fn reopen_log(&self, container_id: &str) -> Result<(), MonitorError> {
        berth_monitor_api::Monitor::reopen_log(self, container_id)
    }
}

/// The pods' monitors (the real one is `monitors::Monitors`): found, spawned, told a container is
/// gone, retired with the pod; and the exits they record.
pub(crate) trait PodMonitors: Send + Sync {
    /// The pod's monitor directory (socket, exit files).
    fn dir_for(&self, sandbox_id: &str) -> PathBuf;
    /// The pod's monitor, started if it has none (or its monitor died).
    fn get_or_spawn<'a>(
        &'a self,
        sandbox_id: &'a str,
        cgroup_procs: Vec<PathBuf>,
    ) -> BoxFuture<'a, Result<Arc<dyn MonitorConn>, ContainerError>>;
    /// The pod's running monitor, if any.
    fn get<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Option<Arc<dyn MonitorConn>>>;
    /// The monitors known to be alive, for metrics; never waits.
    fn live(&self) -> Vec<Arc<dyn MonitorConn>>;
    /// Tells the monitor a container is gone; with `last` it exits and its directory goes.
    fn forget<'a>(
        &'a self,
        sandbox_id: &'a str,
        container_id: &'a str,
        last: bool,
        only_if_known: bool,
    ) -> BoxFuture<'a, Result<(), ContainerError>>;
    /// RemovePodSandbox: the pod's monitor goes, killed if need be.
    fn retire<'a>(
        &'a self,
        sandbox_id: &'a str,
        cgroup: Option<&'a PodCgroup>,
    ) -> BoxFuture<'a, Result<(), ContainerError>>;
    /// Waits for the container's exit (one `Wait` on its own connection).
    fn wait_exit<'a>(
        &'a self,
        monitor_dir: &'a Path,
        container_id: &'a str,
    ) -> BoxFuture<'a, Result<Exit, ContainerError>>;
    /// The exit file the monitor left for the container, if any.
    fn read_exit_file(
        &self,
        monitor_dir: &Path,
        container_id: &str,
    ) -> Result<Option<Exit>, MonitorError>;
}

/// What the lifecycle asks of the pods' cgroups.
pub(crate) trait CgroupOps: Send + Sync {
    fn exists(&self, pod: &PodCgroup) -> bool;
    fn container_dirs(&self, pod: &PodCgroup, container_id: &str) -> Vec<PathBuf>;
    fn oom_files(&self, pod: &PodCgroup, container_id: &str) -> Vec<PathBuf>;
    fn monitor_procs_files(&self, pod: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError>;
    fn unified(&self) -> bool;
}

impl CgroupOps for berth_cgroup::Cgroups {
    fn exists(&self, pod: &PodCgroup) -> bool {
        berth_cgroup::Cgroups::exists(self, pod)
    }

    fn container_dirs(&self, pod: &PodCgroup, container_id: &str) -> Vec<PathBuf> {
        berth_cgroup::Cgroups::container_dirs(self, pod, container_id)
    }

    fn oom_files(&self, pod: &PodCgroup, container_id: &str) -> Vec<PathBuf> {
        berth_cgroup::Cgroups::oom_files(self, pod, container_id)
    }

    fn monitor_procs_files(&self, pod: &PodCgroup) -> Result<Vec<PathBuf>, CgroupError> {
        berth_cgroup::Cgroups::monitor_procs_files(self, pod)
    }

    fn unified(&self) -> bool {
        berth_cgroup::Cgroups::unified(self)
    }
}

/// The container's filesystem mounts (blocking): the overlay rootfs on the image's snapshots and
/// the image volumes.
pub(crate) trait RootfsOps: Send + Sync {
    /// Prepares the container's writable layer in `overlay_dir` over `snapshot` and mounts the
    /// overlay on `rootfs`.
    fn mount_rootfs(
        &self,
        snapshot: &str,
        overlay_dir: &Path,
        rootfs: &Path,
    ) -> Result<Box<dyn MountedOverlay>, ContainerError>;
    /// Unmounts `target`; one not mounted is fine.
    fn unmount(&self, target: &Path) -> Result<(), ContainerError>;
    /// See `image_volumes::mount_all`.
    fn mount_image_volumes(
        &self,
        bundle: &Path,
        mounts: &mut [Mount],
    ) -> Result<(), ContainerError>;
    /// See `image_volumes::unmount_all`.
    fn unmount_image_volumes(&self, bundle: &Path) -> Result<(), ContainerError>;
}

/// A container's overlay rootfs, mounted.
pub(crate) trait MountedOverlay: Send {
    /// For a pod with a user namespace, once the spec is built on the plain overlay: the
    /// writable layer is shifted into the pod's ids and the overlay mounted again, idmapped
    /// (see `userns.rs`).
    fn remount_idmapped(
        &self,
        rootfs: &Path,
        rw_dir: &Path,
        userns: &crate::userns::PodUserns,
    ) -> Result<(), ContainerError>;
}

impl MountedOverlay for berth_snapshot::RootfsMount {
    fn remount_idmapped(
        &self,
        rootfs: &Path,
        rw_dir: &Path,
        userns: &crate::userns::PodUserns,
    ) -> Result<(), ContainerError> {
        berth_snapshot::unmount(rootfs)?;
        crate::userns::shift_upper(&self.upperdir, &userns.maps)?;
        crate::userns::mount_rootfs(self, rootfs, rw_dir, userns)
    }
}

/// The real mounts, on the image service's snapshots.
pub(crate) struct SnapshotRootfs(pub(crate) berth_snapshot::Snapshotter);

impl RootfsOps for SnapshotRootfs {
    fn mount_rootfs(
        &self,
        snapshot: &str,
        overlay_dir: &Path,
        rootfs: &Path,
    ) -> Result<Box<dyn MountedOverlay>, ContainerError> {
        let mount = self.0.prepare_rootfs(snapshot, overlay_dir)?;
        mount.mount(rootfs, false)?;
        Ok(Box::new(mount))
    }

    fn unmount(&self, target: &Path) -> Result<(), ContainerError> {
        Ok(berth_snapshot::unmount(target)?)
    }

    fn mount_image_volumes(
        &self,
        bundle: &Path,
        mounts: &mut [Mount],
    ) -> Result<(), ContainerError> {
        crate::image_volumes::mount_all(&self.0, bundle, mounts)
    }

    fn unmount_image_volumes(&self, bundle: &Path) -> Result<(), ContainerError> {
        crate::image_volumes::unmount_all(bundle)
    }
}

/// The pod sandboxes containers are made in.
pub(crate) trait SandboxLookup: Send + Sync {
    /// The sandbox `id` names (an ID or a unique prefix); None if none does (every caller
    /// treats any lookup failure as "no such pod").
    fn get(&self, id: &str) -> Option<SandboxRecord>;
    fn list(&self) -> Vec<SandboxRecord>;
}

impl SandboxLookup for berth_sandbox::SandboxService {
    fn get(&self, id: &str) -> Option<SandboxRecord> {
        berth_sandbox::SandboxService::get(self, id).ok()
    }

    fn list(&self) -> Vec<SandboxRecord> {
        berth_sandbox::SandboxService::list(self, &Default::default())
    }
}

/// The pulled images containers are built from.
pub(crate) trait ImageLookup: Send + Sync {
    /// The image `query` names (tag, digest, ID), if pulled.
    fn image(&self, query: &str) -> Option<berth_image::ImageRecord>;
    /// The image's config, as pulled.
    fn config_json(&self, id: &str) -> Result<Vec<u8>, berth_image::ImageError>;
}

impl ImageLookup for berth_image::ImageService {
    fn image(&self, query: &str) -> Option<berth_image::ImageRecord> {
        self.status(query).map(|view| view.record)
    }

    fn config_json(&self, id: &str) -> Result<Vec<u8>, berth_image::ImageError> {
        berth_image::ImageService::config_json(self, id)
    }
}
