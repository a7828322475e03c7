//! The one error type of this crate.

use std::path::PathBuf;

use crate::Layout;

/// Everything that can go wrong while naming, creating, configuring or removing a pod cgroup.
/// The variants say what went wrong; berth-cri decides which gRPC code each one becomes.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// `cgroup_parent` (or a configured default parent) is not something we may turn into a path.
    #[error("invalid cgroup parent {value:?}: {reason}")]
    InvalidParent { value: String, reason: String },

    /// The sandbox id cannot be used as a cgroup directory name.
    #[error("invalid sandbox id {value:?} for a cgroup name: {reason}")]
    InvalidSandboxId { value: String, reason: String },

    /// `cgroup.driver` in the config is neither `cgroupfs` nor `systemd`.
    #[error("unknown cgroup driver {value:?} (expected \"cgroupfs\" or \"systemd\")")]
    InvalidDriver { value: String },

    /// A resource value that cannot be represented (for example a hugepage limit above i64::MAX).
    #[error("invalid pod resources: {reason}")]
    InvalidResources { reason: String },

    /// The request needs something this host's cgroup layout does not offer, e.g. `unified`
    /// keys on cgroup v1 (runc refuses those too) or hugepage limits without a hugetlb hierarchy.
    #[error("{what} is not supported on this {layout} cgroup host")]
    Unsupported { what: String, layout: Layout },

    /// The cgroup layout under the root could not be determined.
    #[error("cannot detect the cgroup layout under {root}: {reason}")]
    Detect { root: PathBuf, reason: String },

    /// A filesystem operation on a cgroup directory or file failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The pod cgroup still has processes or child cgroups; nothing was removed.
    #[error("cgroup {path} is not empty: {detail}")]
    Busy { path: PathBuf, detail: String },

    /// A persisted [`crate::PodCgroup`] names a directory outside the cgroup hierarchies in use;
    /// we refuse to rmdir it rather than trust a corrupted record.
    #[error("refusing to touch {path}: not inside a cgroup hierarchy in use")]
    ForeignPath { path: PathBuf },

    /// The cgroup whose statistics were asked for does not exist (its directory is missing in a
    /// hierarchy that should have it): the container or pod is gone. The CRI layer maps this to
    /// `NOT_FOUND`.
    #[error("cgroup {path} does not exist")]
    NotFound { path: PathBuf },

    /// A statistics file of an existing cgroup is missing or does not hold what the kernel
    /// writes there (unreadable files are [`CgroupError::Io`]).
    #[error("cgroup statistics file {file}: {reason}")]
    StatsFile { file: PathBuf, reason: String },

    /// youki's libcgroups failed while applying resources.
    #[error("applying resources to cgroup {path}: {source}")]
    Libcgroups {
        path: String,
        #[source]
        source: libcgroups::common::AnyManagerError,
    },
}

impl CgroupError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
