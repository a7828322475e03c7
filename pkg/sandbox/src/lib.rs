//! Pod sandboxes without a pause image.
//!
//! A sandbox is what its containers share: network, IPC and UTS namespaces that Berth creates and
//! pins itself (bind-mounted nsfs files, see `berth-namespace`), the pod's resolv.conf, hosts,
//! hostname and /dev/shm, its cgroup, and its CNI network. No process runs for a pod that has no
//! containers.
//!
//! Crash safety: a record is written before the first side effect and updated after each one, and
//! every teardown step is idempotent, so Stop and Remove clean up whatever a crashed RunPodSandbox
//! left, from the record alone (the CNI result and network config are in it).

mod bandwidth;
mod config;
mod error;
mod files;
mod host;
mod ids;
// raw syscalls between fork and exec: open, write, close; Command::pre_exec
#[allow(unsafe_code)]
mod init;
mod lifecycle;
mod net;
mod port_forward;
mod record;
mod resize;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_store::{OneAtATime, RecordCache, RecordLock, Store};

use crate::host::Host;

pub use config::{
    DnsConfig, IdMapping, NamespaceMode, NamespaceOptions, PodMetadata, PortMapping, Protocol,
    Resources, SandboxConfig, UserNamespaceMappings,
};
pub use error::SandboxError;
pub use init::InitProcess;
pub use record::{Phase, SandboxRecord, SandboxState};

/// ListPodSandbox's conditions.
pub type SandboxFilter = berth_store::ListFilter<SandboxState>;

/// What the sandbox service needs from the rest of berthd.
pub struct SandboxDeps {
    /// `<state>`: sandboxes live in `<state>/sandboxes/<id>`.
    pub state_dir: PathBuf,
    pub store: Store,
    pub cni: berth_network::Cni,
    pub cgroups: berth_cgroup::Cgroups,
    /// Configured runtime handlers, and the one used when a pod names none.
    pub handlers: Vec<String>,
    pub default_handler: String,
    /// The `berth-init` binary for pods with a shared PID namespace.
    pub init_binary: PathBuf,
}

impl SandboxDeps {
    /// `berth-init` installed beside berthd (or found in PATH).
    pub fn default_init_binary() -> PathBuf {
        init::default_binary()
    }
}

/// A pod's containers, as the container layer manages them: StopPodSandbox must stop them before
/// the network goes, RemovePodSandbox must remove them before the namespaces and cgroup go.
///
/// Passed to each [`SandboxService`] operation that needs it rather than attached to the service
/// after construction: the container layer is built on this service, and an operation that could
/// run without its containers (a forgotten wire) would stop a pod while they still run.
pub trait PodContainers: Send + Sync {
    fn stop_all<'a>(
        &'a self,
        sandbox_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SandboxError>> + Send + 'a>>;
    fn remove_all<'a>(
        &'a self,
        sandbox_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), SandboxError>> + Send + 'a>>;
    /// Why pods with a user namespace cannot run here (the container layer must idmap their
    /// rootfs and volumes), or None when they can. Asked before RunPodSandbox creates anything.
    fn user_namespaces_unsupported(&self) -> Option<String> {
        Some("the container layer does not support user namespaces".into())
    }
}

#[derive(Clone)]
pub struct SandboxService {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    cni: berth_network::Cni,
    /// Configured runtime handlers, and the one used when a pod names none.
    handlers: Vec<String>,
    default_handler: String,
    /// Namespaces, /dev/shm, cgroups and the init process.
    host: Host,
    dir: PathBuf,
    /// Write-through cache of the store's sandbox records (lists and status never touch disk),
    /// with one lock per sandbox: stop, remove and status updates of one pod never interleave.
    records: RecordCache<SandboxRecord>,
    /// One lock per pod metadata: a kubelet retry waits for the first RunPodSandbox and then finds
    /// its sandbox instead of creating a second one.
    creating: OneAtATime<PodMetadata>,
}

impl SandboxService {
    /// Loads the sandboxes recorded in the store. Pods whose network namespace vanished (a reboot
    /// empties the state dir) report NOTREADY; kubelet then stops and removes them.
    pub fn open(deps: SandboxDeps) -> Result<SandboxService, SandboxError> {
        let SandboxDeps {
            state_dir,
            store,
            cni,
            cgroups,
            handlers,
            default_handler,
            init_binary,
        } = deps;
        let host = Host::linux(cgroups, init_binary);
        SandboxService::open_on(&state_dir, store, cni, handlers, default_handler, host)
    }

    /// [`SandboxService::open`] on the given host (the unit tests' fakes).
    fn open_on(
        state_dir: &Path,
        store: Store,
        cni: berth_network::Cni,
        handlers: Vec<String>,
        default_handler: String,
        host: Host,
    ) -> Result<SandboxService, SandboxError> {
        let dir = state_dir.join("sandboxes");
        files::create_dir(&dir)?;

        let records = RecordCache::<SandboxRecord>::load(store)?;
        for record in records.read().values() {
            if record.phase == Phase::Created && record.state() == SandboxState::NotReady {
                tracing::warn!(sandbox_id = %record.id, "pod network namespace is gone; reporting the sandbox NOTREADY");
            }
        }
        Ok(SandboxService {
            inner: Arc::new(Inner {
                cni,
                handlers,
                default_handler,
                host,
                dir,
                records,
                creating: OneAtATime::default(),
            }),
        })
    }

    /// RunPodSandbox. Returns the new sandbox's ID, or the existing one's for a retry.
    /// `containers`: asked whether pods with a user namespace can run, and used to clear out a
    /// sandbox a crash left half-made.
    pub async fn run(
        &self,
        config: SandboxConfig,
        containers: Arc<dyn PodContainers>,
    ) -> Result<String, SandboxError> {
        let inner = self.inner.clone();
        detached(async move { lifecycle::run(&inner, config, containers.as_ref()).await }).await
    }

    /// StopPodSandbox: `containers` stopped, network torn down, NOTREADY. Idempotent.
    pub async fn stop(
        &self,
        id_or_prefix: &str,
        containers: Arc<dyn PodContainers>,
    ) -> Result<(), SandboxError> {
        let id = self.resolve(id_or_prefix)?;
        let inner = self.inner.clone();
        detached(async move { lifecycle::stop(&inner, &id, containers.as_ref()).await }).await
    }

    /// PortForward: a connection to `port` on the pod's loopback, made in its network namespace.
    pub async fn connect_port(
        &self,
        id_or_prefix: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, SandboxError> {
        let record = self.get(id_or_prefix)?;
        port_forward::connect(&record, port).await
    }

    /// RemovePodSandbox: everything the pod created is gone, `containers` first. Removing an
    /// unknown sandbox succeeds.
    pub async fn remove(
        &self,
        id_or_prefix: &str,
        containers: Arc<dyn PodContainers>,
    ) -> Result<(), SandboxError> {
        let id = match self.resolve(id_or_prefix) {
            Ok(id) => id,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let inner = self.inner.clone();
        detached(async move { lifecycle::remove(&inner, &id, containers.as_ref()).await }).await
    }

    /// The sandbox an ID or unique ID prefix names.
    pub fn get(&self, id_or_prefix: &str) -> Result<SandboxRecord, SandboxError> {
        let id = self.resolve(id_or_prefix)?;
        self.inner
            .records
            .get(&id)
            .ok_or(SandboxError::NotFound(id))
    }

    pub fn list(&self, filter: &SandboxFilter) -> Vec<SandboxRecord> {
        let records = self.inner.records();
        records
            .values()
            .filter(|r| filter.matches(*r))
            .cloned()
            .collect()
    }

    /// Full ID for an ID or a unique prefix of one.
    pub fn resolve(&self, id_or_prefix: &str) -> Result<String, SandboxError> {
        self.inner
            .records
            .resolve(id_or_prefix)
            .map_err(|e| ids::lookup_error(e, id_or_prefix))
    }

    /// Where sandbox directories live.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// Runs a lifecycle operation as a task of its own: a caller that goes away (kubelet's deadline,
/// a closed connection) drops only its wait, never a RunPodSandbox half-way through its steps or
/// its rollback.
async fn detached<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, SandboxError>> + Send + 'static,
) -> Result<T, SandboxError> {
    tokio::spawn(work)
        .await
        .map_err(SandboxError::task("sandbox"))?
}

impl Inner {
    fn records(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, SandboxRecord>> {
        self.records.read()
    }

    fn lock_for(&self, id: &str) -> RecordLock {
        self.records.lock(id)
    }

    fn forget_lock(&self, id: &str) {
        self.records.forget_lock(id);
    }

    /// Writes the record to the store (durably), then to the cache.
    async fn save(&self, record: &SandboxRecord) -> Result<(), SandboxError> {
        self.records.save(record).await?;
        Ok(())
    }

    async fn delete(&self, id: &str) -> Result<(), SandboxError> {
        self.records.delete(id).await?;
        Ok(())
    }
}
