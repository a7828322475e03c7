//! Container errors. berth-cri maps them to gRPC codes (see its `error` module).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox {0:?} not found")]
    SandboxNotFound(String),
    #[error("container id prefix {prefix:?} is ambiguous: it matches {matches} containers")]
    Ambiguous { prefix: String, matches: usize },
    #[error("image {0:?} not found: pull it first")]
    ImageNotFound(String),
    /// A bad request: nothing was changed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The container (or its pod) is not in a state that allows the operation.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The OCI runtime refused or failed; the message is the runtime's own.
    #[error("OCI runtime: {0}")]
    Runtime(String),
    #[error(transparent)]
    Spec(#[from] berth_spec::SpecError),
    #[error("container monitor: {0}")]
    Monitor(#[from] berth_monitor_api::MonitorError),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error(transparent)]
    Snapshot(#[from] berth_snapshot::SnapshotError),
    #[error(transparent)]
    Cgroup(#[from] berth_cgroup::CgroupError),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A deadline the request set passed (ExecSync's timeout).
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Internal(String),
}

impl ContainerError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ContainerError {
        let path = path.into();
        move |source| ContainerError::Io { op, path, source }
    }

    pub(crate) fn task(e: tokio::task::JoinError) -> ContainerError {
        ContainerError::Internal(format!("container task: {e}"))
    }
}
