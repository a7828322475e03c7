//! Containers: CreateContainer builds the bundle (OCI spec from the CRI config, the image's config
//! and the pod; an overlay rootfs on the image's snapshots with a writable layer of its own),
//! StartContainer has the pod's berth-monitor run it through the OCI runtime, and the monitor
//! parents it, writes its CRI log and records its exit, so containers outlive berthd.
//!
//! Crash safety: a record is written before each step's side effects and every teardown step is
//! idempotent; on start, [`ContainerService::recover`] reconciles the records with what the
//! monitors and the runtime report (see `recover.rs`).

mod checkpoint;
mod copy;
mod create;
mod error;
mod events;
mod exec;
#[cfg(test)]
mod fakes;
mod filter;
mod gates;
mod ids;
mod image_volumes;
mod inner;
mod kill;
mod lifecycle;
mod logs;
mod metrics;
mod monitors;
mod record;
mod recover;
mod removal;
// raw syscalls: openat2, fstatat, openat on descriptors of the container's rootfs
#[allow(unsafe_code)]
mod resolve;
mod rro;
mod runtime;
mod seams;
// raw syscalls: pidfd_open, pidfd_send_signal
#[allow(unsafe_code)]
mod signal;
// non-blocking pipe and pty descriptors: fcntl, ioctl, read, write, AsyncFd::register
#[allow(unsafe_code)]
mod stdio;
// raw syscalls relative to a directory descriptor: fchmod, symlinkat, mknodat, linkat
#[allow(unsafe_code)]
mod tarin;
mod tarout;
#[cfg(test)]
mod tests;
// sysconf(_SC_CLK_TCK)
#[allow(unsafe_code)]
mod top;
mod userns;
mod watch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_sandbox::{PodContainers, SandboxError};
use berth_store::{OneAtATime, RecordCache, Store};

pub use berth_spec::{
    ContainerConfig, Device, Mount, PidMode, Propagation, ResolvedUser, Resources, Security,
};
pub use copy::PathStat;
pub use error::ContainerError;
pub use events::{ContainerEvent, ContainerEventKind, EVENT_BUFFER};
pub use exec::{Attached, ExecOptions, ExecProcess, ExecSyncOutput};
pub use filter::ContainerFilter;
pub use kill::parse_signal;
pub use logs::{CLI_LOG_DIR_ANNOTATION, CLI_LOG_ROOT};
pub use metrics::ContainerMetrics;
pub use record::{ContainerRecord, ContainerState, Phase};
pub use runtime::OciRuntime;
pub use stdio::{PipeReader, PipeWriter, Pty};
pub use tarin::CopyStats;
pub use top::ProcessInfo;

/// One configured RuntimeClass handler.
#[derive(Debug, Clone)]
pub struct Handler {
    /// The runtime binary, resolved; `None` if it is not installed (pods naming it fail).
    pub path: Option<PathBuf>,
    /// Its `--root`.
    pub root: PathBuf,
}

/// What the container service needs from the rest of berthd.
pub struct ContainerDeps {
    /// Volatile state (`/run/berth`): bundles, monitors, runtime state.
    pub state_dir: PathBuf,
    /// Persistent data (`/var/lib/berth`): writable layers.
    pub root_dir: PathBuf,
    pub store: Store,
    pub images: berth_image::ImageService,
    pub sandboxes: berth_sandbox::SandboxService,
    pub cgroups: berth_cgroup::Cgroups,
    pub handlers: BTreeMap<String, Handler>,
    pub monitor_binary: PathBuf,
    pub metrics: ContainerMetrics,
}

impl ContainerDeps {
    /// `berth-monitor` installed beside berthd (or found in PATH).
    pub fn default_monitor_binary() -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("berth-monitor")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("berth-monitor"))
    }

    /// The runtime dir of a handler the configuration gives no `root` for.
    pub fn default_runtime_root(state_dir: &std::path::Path, handler: &str) -> PathBuf {
        runtime::default_root(state_dir, handler)
    }
}

#[derive(Clone)]
pub struct ContainerService {
    inner: Arc<Inner>,
}

/// kubelet's identity of a container: a retry with the same one finds the first container.
type NameKey = (String, String, u32);

/// What the service holds of [`ContainerDeps`]: the collaborators that need root or a real host
/// behind the traits of `seams.rs`, so unit tests can give fakes.
pub(crate) struct Deps {
    pub(crate) store: Store,
    pub(crate) images: Arc<dyn seams::ImageLookup>,
    pub(crate) sandboxes: Arc<dyn seams::SandboxLookup>,
    pub(crate) cgroups: Arc<dyn seams::CgroupOps>,
    pub(crate) runtime: Arc<dyn seams::RuntimeCommands>,
    pub(crate) rootfs: Arc<dyn seams::RootfsOps>,
    pub(crate) handlers: BTreeMap<String, Handler>,
    pub(crate) monitor_binary: PathBuf,
    pub(crate) metrics: ContainerMetrics,
}

/// The startup probes' findings (see [`ContainerService::user_namespaces_unsupported`] and
/// [`ContainerService::recursive_read_only_unsupported`]).
pub(crate) struct Probes {
    pub(crate) userns_problem: Option<String>,
    pub(crate) rro_problem: Option<String>,
}

pub(crate) struct Inner {
    deps: Deps,
    bundles: PathBuf,
    layers: PathBuf,
    monitors: Arc<dyn seams::PodMonitors>,
    gates: gates::PodGates,
    /// Write-through cache of the store's container records, with one lock per container:
    /// start, stop, remove and updates of one container never interleave.
    records: RecordCache<ContainerRecord>,
    creating: OneAtATime<NameKey>,
    /// Runtime-state deletions started in the background when a container exited; Remove waits
    /// for its container's instead of running a second one.
    deleting: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Containers RemoveContainer has answered for whose cleanup is still to finish (in the
    /// background, or after a crash); out of `records`, so CRI no longer sees them.
    removing: Mutex<HashMap<String, removal::Removal>>,
    events: events::Events,
    /// Why containers of pods with a user namespace cannot be made here (no idmapped mounts
    /// for the layers dir's filesystem or overlayfs layers); None when they can.
    userns_problem: Option<String>,
    /// Why recursive read-only mounts cannot be made here (startup probe); None when they can.
    rro_problem: Option<String>,
}

impl ContainerService {
    /// Loads the container records. Call [`ContainerService::recover`] before serving.
    pub fn open(deps: ContainerDeps) -> Result<ContainerService, ContainerError> {
        let bundles = deps.state_dir.join("containers");
        let layers = deps.root_dir.join("containers");
        for dir in [&bundles, &layers] {
            std::fs::create_dir_all(dir).map_err(ContainerError::io("create", dir))?;
        }
        let monitors =
            monitors::Monitors::new(deps.monitor_binary.clone(), deps.state_dir.join("mon"));
        // Once at startup: the kernel and filesystem don't change under a running berthd.
        let userns_problem = berth_namespace::probe_idmapped_mounts(&layers).err();
        match &userns_problem {
            None => tracing::info!("idmapped mounts work: pods may use user namespaces"),
            Some(p) => tracing::info!(problem = %p, "pods with user namespaces are refused"),
        }
        // The same for every handler: Berth makes the read-only clones, the runtime only binds.
        let rro_problem = berth_namespace::probe_recursive_read_only(&bundles).err();
        match &rro_problem {
            None => tracing::info!("recursive read-only mounts work"),
            Some(p) => tracing::info!(problem = %p, "recursive read-only mounts are refused"),
        }
        let rootfs = seams::SnapshotRootfs(deps.images.snapshotter().clone());
        let parts = Deps {
            store: deps.store,
            images: Arc::new(deps.images),
            sandboxes: Arc::new(deps.sandboxes),
            cgroups: Arc::new(deps.cgroups),
            runtime: Arc::new(seams::CommandLine),
            rootfs: Arc::new(rootfs),
            handlers: deps.handlers,
            monitor_binary: deps.monitor_binary,
            metrics: deps.metrics,
        };
        let probes = Probes {
            userns_problem,
            rro_problem,
        };
        Self::open_with(
            parts,
            Arc::new(monitors),
            probes,
            &deps.state_dir,
            &deps.root_dir,
        )
    }

    /// [`ContainerService::open`] with the collaborators given (fakes, in unit tests).
    pub(crate) fn open_with(
        deps: Deps,
        monitors: Arc<dyn seams::PodMonitors>,
        probes: Probes,
        state_dir: &std::path::Path,
        root_dir: &std::path::Path,
    ) -> Result<ContainerService, ContainerError> {
        let bundles = state_dir.join("containers");
        let layers = root_dir.join("containers");
        for dir in [&bundles, &layers] {
            std::fs::create_dir_all(dir).map_err(ContainerError::io("create", dir))?;
        }
        let (removing, records): (Vec<ContainerRecord>, Vec<ContainerRecord>) = deps
            .store
            .list::<ContainerRecord>()?
            .into_iter()
            .partition(|r| r.phase == Phase::Removing);
        let records = RecordCache::with_records(deps.store.clone(), records);
        let removing = removing
            .into_iter()
            .map(|r| (r.id.clone(), removal::Removal::pending(r)))
            .collect();
        Ok(ContainerService {
            inner: Arc::new(Inner {
                deps,
                bundles,
                layers,
                monitors,
                gates: gates::PodGates::default(),
                records,
                creating: OneAtATime::default(),
                deleting: Mutex::new(HashMap::new()),
                removing: Mutex::new(removing),
                events: events::Events::new(),
                userns_problem: probes.userns_problem,
                rro_problem: probes.rro_problem,
            }),
        })
    }

    /// The directory holding the containers' writable layers (ImageFsInfo's container filesystem).
    pub fn writable_layers_dir(&self) -> &std::path::Path {
        &self.inner.layers
    }

    /// Space and inodes the writable layers use (walks them: call off the async runtime).
    pub fn writable_layers_usage(&self) -> Result<berth_snapshot::Usage, ContainerError> {
        Ok(berth_snapshot::dir_usage(&self.inner.layers)?)
    }

    /// Why pods with a user namespace (`hostUsers: false`) cannot run here, or None when they
    /// can (idmapped mounts probed at startup).
    pub fn user_namespaces_unsupported(&self) -> Option<String> {
        self.inner.userns_problem.clone()
    }

    /// Why CRI mounts with `recursive_read_only` cannot be made here, or None when they can
    /// (probed at startup).
    pub fn recursive_read_only_unsupported(&self) -> Option<String> {
        self.inner.rro_problem.clone()
    }

    /// Waits up to `limit` for the cleanups of removed containers still running in the
    /// background (at shutdown: the next start would finish them, but better now).
    pub async fn drain_removals(&self, limit: Duration) {
        removal::drain_removals(&self.inner, limit).await
    }

    /// Reconciles the records with reality after a (re)start: see `recover.rs`.
    pub async fn recover(&self) {
        recover::recover(&self.inner).await
    }

    /// CreateContainer. Returns the new container's ID, or the existing one's for a retry.
    pub async fn create(
        &self,
        sandbox_id: &str,
        config: ContainerConfig,
    ) -> Result<String, ContainerError> {
        let inner = self.inner.clone();
        let sandbox_id = sandbox_id.to_string();
        detached(async move { create::create(&inner, &sandbox_id, config).await }).await
    }

    pub async fn start(&self, id_or_prefix: &str) -> Result<(), ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        let inner = self.inner.clone();
        detached(async move { lifecycle::start(&inner, &id).await }).await
    }

    /// StopContainer: the stop signal, SIGKILL after `timeout` (at once for zero). Idempotent.
    pub async fn stop(&self, id_or_prefix: &str, timeout: Duration) -> Result<(), ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        let inner = self.inner.clone();
        detached(async move { lifecycle::stop(&inner, &id, timeout).await }).await
    }

    /// RemoveContainer: killed if running, then everything it had is gone. Removing an unknown
    /// container succeeds.
    pub async fn remove(&self, id_or_prefix: &str) -> Result<(), ContainerError> {
        let id = match self.resolve(id_or_prefix) {
            Ok(id) => id,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let inner = self.inner.clone();
        detached(async move { removal::remove(&inner, &id).await }).await
    }

    pub async fn update_resources(
        &self,
        id_or_prefix: &str,
        resources: Resources,
    ) -> Result<(), ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        let inner = self.inner.clone();
        detached(async move { lifecycle::update_resources(&inner, &id, resources).await }).await
    }

    pub async fn reopen_log(&self, id_or_prefix: &str) -> Result<(), ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        lifecycle::reopen_log(&self.inner, &id).await
    }

    /// Starts `options.cmd` in the running container; dropping the result kills it.
    pub async fn exec(
        &self,
        id_or_prefix: &str,
        options: &ExecOptions,
    ) -> Result<ExecProcess, ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        exec::exec(&self.inner, &id, options).await
    }

    /// ExecSync: runs `cmd` to completion, or kills it after `timeout` (DEADLINE_EXCEEDED).
    /// stdout and stderr are each capped at `limit` bytes.
    pub async fn exec_sync(
        &self,
        id_or_prefix: &str,
        cmd: Vec<String>,
        timeout: Option<Duration>,
        limit: usize,
    ) -> Result<ExecSyncOutput, ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        exec::exec_sync(&self.inner, &id, cmd, timeout, limit).await
    }

    /// Attaches to the running container's stdio (stdin only if it was created with stdin).
    pub async fn attach(
        &self,
        id_or_prefix: &str,
        stdin: bool,
    ) -> Result<Attached, ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        exec::attach(&self.inner, &id, stdin).await
    }

    /// Closes the container's stdin (stdin_once, after the first attach detached).
    pub async fn close_stdin(&self, id_or_prefix: &str) -> Result<(), ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        exec::close_stdin(&self.inner, &id).await
    }

    pub fn get(&self, id_or_prefix: &str) -> Result<ContainerRecord, ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        self.inner
            .records
            .get(&id)
            .ok_or(ContainerError::NotFound(id))
    }

    /// The OCI spec the container runs with, for verbose status.
    pub fn spec_json(&self, record: &ContainerRecord) -> Option<serde_json::Value> {
        let bytes = std::fs::read(record.bundle.join("config.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn list(&self, filter: &ContainerFilter) -> Vec<ContainerRecord> {
        self.inner
            .records()
            .values()
            .filter(|r| r.phase != Phase::Creating && filter.matches(r))
            .cloned()
            .collect()
    }

    pub fn resolve(&self, id_or_prefix: &str) -> Result<String, ContainerError> {
        self.inner
            .records
            .resolve(id_or_prefix)
            .map_err(|e| ids::lookup_error(e, id_or_prefix))
    }

    /// Why containers can't be started here, if they can't: the berth-monitor binary is missing.
    pub fn monitor_problem(&self) -> Option<String> {
        let binary = &self.inner.deps.monitor_binary;
        let candidates: Vec<PathBuf> = if binary.components().count() > 1 {
            vec![binary.clone()]
        } else {
            let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin".into());
            std::env::split_paths(&path)
                .map(|d| d.join(binary))
                .collect()
        };
        let found = candidates.iter().any(|c| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(c).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
        (!found).then(|| {
            format!(
                "{} not found or not executable: install it beside berthd",
                binary.display()
            )
        })
    }

    /// Container lifecycle events from now on. A receiver that falls more than [`EVENT_BUFFER`]
    /// events behind loses the oldest (`RecvError::Lagged` says how many).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent> {
        self.inner.events.subscribe()
    }

    /// Registers the scrape-time gauges (containers and sandboxes by state, monitors alive, log
    /// bytes) on `registry`.
    pub fn register_state_metrics(
        &self,
        registry: &prometheus::Registry,
    ) -> Result<(), prometheus::Error> {
        let collector = metrics::StateCollector::new(Arc::downgrade(&self.inner))?;
        registry.register(Box::new(collector))
    }

    /// What the pod sandbox operations (RunPodSandbox, StopPodSandbox, RemovePodSandbox) are
    /// given to ask about, stop and remove a pod's containers.
    pub fn pod_hook(&self) -> Arc<dyn PodContainers> {
        Arc::new(PodHook(self.inner.clone()))
    }
}

/// Runs a lifecycle operation as a task of its own: a caller that goes away (kubelet's deadline)
/// never interrupts a create, start or removal half-way.
async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ContainerError>> + Send + 'static,
) -> Result<T, ContainerError> {
    tokio::spawn(work)
        .await
        .map_err(ContainerError::task("a container operation"))?
}

struct PodHook(Arc<Inner>);

/// Sandbox errors carry the container layer's message; the gRPC code comes from the sandbox side.
fn to_sandbox_error(e: ContainerError) -> SandboxError {
    SandboxError::Containers(Box::new(e))
}

impl PodContainers for PodHook {
    fn stop_all<'a>(
        &'a self,
        sandbox_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), SandboxError>> + Send + 'a>> {
        Box::pin(async move {
            let inner = self.0.clone();
            let sandbox_id = sandbox_id.to_string();
            detached(async move { lifecycle::stop_pod(&inner, &sandbox_id).await })
                .await
                .map_err(to_sandbox_error)
        })
    }

    fn remove_all<'a>(
        &'a self,
        sandbox_id: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), SandboxError>> + Send + 'a>> {
        Box::pin(async move {
            let inner = self.0.clone();
            let sandbox_id = sandbox_id.to_string();
            detached(async move { removal::remove_pod(&inner, &sandbox_id).await })
                .await
                .map_err(to_sandbox_error)
        })
    }

    fn user_namespaces_unsupported(&self) -> Option<String> {
        self.0.userns_problem.clone()
    }
}

/// What image garbage collection asks for: snapshots containers are built on.
impl berth_image::SnapshotUsers for ContainerService {
    fn in_use(&self) -> HashSet<String> {
        let mut used: HashSet<String> = self
            .inner
            .records()
            .values()
            .flat_map(|r| std::iter::once(r.snapshot.clone()).chain(image_volumes::snapshots(r)))
            .collect();
        // A container being removed still has its rootfs mounted on the snapshot.
        used.extend(self.inner.removing_mut().values().flat_map(|r| {
            std::iter::once(r.record.snapshot.clone())
                .chain(image_volumes::snapshots(&r.record))
                .collect::<Vec<_>>()
        }));
        used
    }
}
