//! The persisted sandbox: everything needed to report it, and to tear it down after a crash or a
//! restart of berthd from the record alone.

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_store::{Record, RecordKind};
use serde::{Deserialize, Serialize};

use crate::config::{DnsConfig, NamespaceOptions, PodMetadata, PortMapping};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// How far creation got. A record is written before the first side effect, so a berthd that
/// crashes half-way leaves a record saying what may exist; Stop and Remove undo all of it
/// idempotently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// RunPodSandbox has not finished (or berthd died during it).
    Creating,
    /// RunPodSandbox returned this sandbox.
    Created,
    /// StopPodSandbox finished: network torn down, containers stopped.
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub metadata: PodMetadata,
    pub phase: Phase,
    pub created_at_ns: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
    pub hostname: String,
    pub log_directory: String,
    pub namespaces: NamespaceOptions,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub sysctls: BTreeMap<String, String>,
    /// `<state>/sandboxes/<id>`: pinned namespaces, resolv.conf, hosts, hostname, shm.
    pub dir: PathBuf,
    /// Pinned namespace files (absent for the host's).
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pod's /dev/shm (a tmpfs under `dir`), or none with the host's IPC namespace.
    pub shm: Option<PathBuf>,
    pub cgroup: Option<berth_cgroup::PodCgroup>,
    /// The CNI ADD result, persisted before RunPodSandbox returns; DEL uses it after a crash.
    pub network: Option<berth_network::PodNetwork>,
    /// A CNI ADD began and its outcome is not recorded: berthd died during it, so DEL must run
    /// (without a result) to release whatever it reserved.
    #[serde(default)]
    pub network_pending: bool,
    /// PID 1 of the pod's shared PID namespace (PID mode POD only).
    #[serde(default)]
    pub init: Option<crate::InitProcess>,
    /// See [`crate::SandboxConfig::seccomp_profile`].
    #[serde(default)]
    pub seccomp_profile: Option<String>,
    /// The pod's user namespace mappings (CRI mode POD); None = the host's.
    #[serde(default)]
    pub userns: Option<crate::UserNamespaceMappings>,
    /// The pinned user namespace (`<dir>/ns/user`) that owns the pod's other namespaces.
    #[serde(default)]
    pub userns_path: Option<PathBuf>,
}

impl berth_store::Listed for SandboxRecord {
    type State = SandboxState;
    fn id(&self) -> &str {
        &self.id
    }
    fn state(&self) -> SandboxState {
        SandboxRecord::state(self)
    }
    fn labels(&self) -> &BTreeMap<String, String> {
        &self.labels
    }
}

impl Record for SandboxRecord {
    const KIND: RecordKind = RecordKind::Sandbox;

    fn id(&self) -> &str {
        &self.id
    }
}

impl SandboxRecord {
    /// CRI's view: READY only once created and until stopped, and only while its network
    /// namespace is still there (it is gone after a reboot).
    pub fn state(&self) -> SandboxState {
        let alive = self
            .netns
            .as_ref()
            .is_none_or(|ns| berth_namespace::is_pinned(ns));
        let init_alive = self.init.as_ref().is_none_or(crate::InitProcess::alive);
        if self.phase == Phase::Created && alive && init_alive {
            SandboxState::Ready
        } else {
            SandboxState::NotReady
        }
    }

    /// The pod's /etc/resolv.conf, /etc/hosts and /etc/hostname, bind-mounted into its containers.
    pub fn resolv_conf_path(&self) -> PathBuf {
        self.dir.join(crate::files::RESOLV_CONF)
    }

    pub fn hosts_path(&self) -> PathBuf {
        self.dir.join(crate::files::HOSTS)
    }

    pub fn hostname_path(&self) -> PathBuf {
        self.dir.join(crate::files::HOSTNAME)
    }

    /// The pod's IPs, primary first.
    pub fn ips(&self) -> Vec<String> {
        self.network
            .as_ref()
            .map(|n| n.ips.iter().map(|ip| ip.to_string()).collect())
            .unwrap_or_default()
    }
}
