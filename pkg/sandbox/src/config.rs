//! What a pod asks for, in plain Rust: the CRI layer translates `PodSandboxConfig` into this, so the
//! sandbox crate (and its tests) never depend on gRPC types.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A pod user namespace's id mappings (CRI `UserNamespace` with mode POD).
pub use berth_namespace::{IdMapping, UserNamespaceMappings};
/// Port mappings and DNS settings are handed to CNI as they are.
pub use berth_network::{Dns as DnsConfig, PortMapping, Protocol};

/// The pod's identity as kubelet sees it. Two RunPodSandbox calls with equal metadata are the
/// same request (kubelet retrying), never two pods.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub struct PodMetadata {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
}

/// How a pod uses one kind of namespace (CRI `NamespaceMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum NamespaceMode {
    /// One namespace for the whole pod.
    Pod,
    /// One per container (CRI's default for PID).
    #[default]
    Container,
    /// The host's.
    Node,
    /// Another container's (PID only).
    Target,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NamespaceOptions {
    pub network: NamespaceMode,
    pub pid: NamespaceMode,
    pub ipc: NamespaceMode,
    /// The container whose PID namespace `pid: Target` names.
    pub target_id: String,
}

impl NamespaceOptions {
    pub fn host_network(&self) -> bool {
        self.network == NamespaceMode::Node
    }

    pub fn host_ipc(&self) -> bool {
        self.ipc == NamespaceMode::Node
    }
}

/// Pod-level resources (CRI `LinuxContainerResources` on the sandbox) or overhead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Resources {
    pub cpu_period: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub memory_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// (page size such as "2MB", limit in bytes)
    pub hugepage_limits: Vec<(String, u64)>,
    pub unified: BTreeMap<String, String>,
}

/// Everything RunPodSandbox takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxConfig {
    pub metadata: PodMetadata,
    pub hostname: String,
    pub log_directory: String,
    pub dns: Option<DnsConfig>,
    pub port_mappings: Vec<PortMapping>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub cgroup_parent: String,
    pub sysctls: BTreeMap<String, String>,
    pub namespaces: NamespaceOptions,
    pub resources: Resources,
    pub overhead: Resources,
    /// RuntimeClass handler; empty means the configured default.
    pub runtime_handler: String,
    /// The pod's seccomp profile (`LinuxSandboxSecurityContext.seccomp`), the default of its
    /// containers that name none, in the deprecated string form (`runtime/default`,
    /// `unconfined`, `localhost/<path>`); None = the pod names none. Kept as a string so this
    /// crate needs no spec types; berth-cri writes and reads it.
    pub seccomp_profile: Option<String>,
    /// CRI `userns_options` with mode POD: the pod (and all its containers) run in one user
    /// namespace with these mappings. None: the host's (mode NODE, or no options).
    pub userns: Option<UserNamespaceMappings>,
}
