//! The crate's one error type; berth-cri maps each variant to a gRPC code.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// Not a name docker would accept.
    #[error("{0:?} is not a valid volume name: it must match [a-zA-Z0-9][a-zA-Z0-9_.-]*")]
    InvalidName(String),
    #[error("volume name {name:?} is longer than {max} characters")]
    NameTooLong { name: String, max: usize },
    #[error("label key {0:?} is empty")]
    EmptyLabelKey(String),
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
    /// A volume's metadata file could not be encoded, or decoded when read back.
    #[error("{op} {path}: {source}")]
    Metadata {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
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
