//! The crate's one error type; berth-cri maps each variant to a gRPC code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Not a name docker would accept (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`), or a bad label.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("volume {0:?} already exists")]
    AlreadyExists(String),
    #[error("no such volume: {0:?}")]
    NotFound(String),
    /// Some container (running or not) mounts it: removing its data would pull the floor from
    /// under that container.
    #[error("volume {name:?} is in use by container(s) {}: remove them first", containers.join(", "))]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl VolumeError {
    pub(crate) fn io(
        op: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| VolumeError::Io { op, path, source }
    }
}
