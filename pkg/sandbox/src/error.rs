//! Sandbox errors. The CRI layer maps them to gRPC codes.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox id prefix {prefix:?} is ambiguous: it matches {matches} sandboxes")]
    Ambiguous { prefix: String, matches: usize },
    #[error(
        "runtime handler {handler:?} is not configured (configured: {known}); add [runtime.handlers.{handler}] to the berthd config"
    )]
    UnknownHandler { handler: String, known: String },
    /// A feature of the request Berth does not implement yet (gRPC UNIMPLEMENTED).
    #[error("{0} is not implemented by berth yet")]
    Unsupported(String),
    #[error("{what}: {reason}")]
    FailedPrecondition { what: String, reason: String },
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
    #[error(transparent)]
    Namespace(#[from] berth_namespace::NamespaceError),
    #[error(transparent)]
    Cgroup(#[from] berth_cgroup::CgroupError),
    #[error(transparent)]
    Cni(#[from] berth_network::CniError),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error("{0}")]
    Internal(String),
}
