//! Sandbox errors, named after what failed. The CRI layer maps them to gRPC codes.

use std::path::PathBuf;

pub use crate::init::InitError;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// An empty pod sandbox ID where one is required.
    #[error("a pod sandbox ID is required")]
    MissingId,
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox id prefix {prefix:?} is ambiguous: it matches {matches} sandboxes")]
    Ambiguous { prefix: String, matches: usize },
    /// The pod's metadata lacks one of the fields that identify it.
    #[error("pod sandbox metadata needs a name, a namespace and a uid")]
    IncompleteMetadata,
    #[error(
        "runtime handler {handler:?} is not configured (configured: {known}); add [runtime.handlers.{handler}] to the berthd config"
    )]
    UnknownHandler { handler: String, known: String },
    /// A combination of namespace modes the pod may not ask for.
    #[error("{0}")]
    InvalidNamespaces(&'static str),
    #[error("hostname {0:?} is not a valid DNS-1123 label sequence of at most 64 characters")]
    InvalidHostname(String),
    /// A DNS server, search domain or option that would break (or inject lines into) resolv.conf.
    #[error("DNS config entry {0:?} is empty or spans lines")]
    InvalidDnsEntry(String),
    /// A bandwidth annotation (`kubernetes.io/{ingress,egress}-bandwidth`) kubelet passed on.
    #[error("annotation {annotation}: {value:?} {problem}")]
    InvalidBandwidth {
        annotation: &'static str,
        value: String,
        problem: &'static str,
    },
    /// The pod is not ready for what was asked (resize, port-forward).
    #[error("{action} pod sandbox {id}: the pod is not ready")]
    NotReady { id: String, action: &'static str },
    /// The port-forward connection to the pod's loopback failed.
    #[error("connecting to port {port} in pod sandbox {id}: {source}")]
    PortForward {
        id: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    /// The pod asks for a user namespace (hostUsers: false) that this node cannot give it.
    #[error("pod user namespace (hostUsers: false): this node cannot run it: {problem}")]
    UserNamespacesUnavailable { problem: String },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mounting {path}: {source}")]
    Mount {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Starting or stopping the pod's `berth-init`.
    #[error(transparent)]
    Init(#[from] InitError),
    /// A task the sandbox ran its work on panicked or was cancelled.
    #[error("{what} task: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The container layer failed to stop or remove the pod's containers.
    #[error("containers: {0}")]
    Containers(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A failpoint set to `error` (tests only: see `berth-failpoint`).
    #[error("{0}")]
    Failpoint(String),
    #[error(transparent)]
    Namespace(#[from] berth_namespace::NamespaceError),
    #[error(transparent)]
    Cgroup(#[from] berth_cgroup::CgroupError),
    #[error(transparent)]
    Cni(#[from] berth_network::CniError),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
}

impl SandboxError {
    /// For `.map_err` on a join of a task the sandbox spawned for `what`.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> SandboxError {
        move |source| SandboxError::Task { what, source }
    }
}
