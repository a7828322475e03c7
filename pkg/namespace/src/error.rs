use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Errors from creating, pinning, entering and removing pod namespaces.
///
/// Not `#[non_exhaustive]`: berth-cri matches every variant, so a new one must get a gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// A sysctl in the pod config may not be set (or is malformed). A client error.
    #[error("invalid sysctl {name:?}: {reason}")]
    InvalidSysctl { name: String, reason: String },

    /// The namespaces asked for do not go together (e.g. a hostname without a new UTS
    /// namespace).
    #[error("invalid namespace request: {0}")]
    InconsistentNamespaces(&'static str),

    /// The pod's hostname is empty, too long or contains NUL.
    #[error("invalid namespace request: hostname {hostname:?} must be 1..={max} bytes without NUL")]
    InvalidHostname { hostname: String, max: usize },

    /// The pod's uid or gid mappings break a rule of the kernel's or Berth's; `what` is "uid" or
    /// "gid".
    #[error("invalid namespace request: {what} mappings: {reason}")]
    InvalidIdMappings { what: String, reason: String },

    /// A path to idmap cannot be passed to the kernel.
    #[error("invalid namespace request: path {} contains NUL", path.display())]
    PathWithNul { path: PathBuf },

    /// The target file is already an nsfs mount; refusing to stack a second namespace on it.
    #[error("{path} already holds a pinned namespace")]
    AlreadyPinned { path: PathBuf },

    /// `unshare(2)` failed (EPERM without CAP_SYS_ADMIN, ENOSPC when user/net ns limits hit...).
    #[error("unshare({kinds}) failed: {source}")]
    Unshare { kinds: String, source: Errno },

    /// Bringing up `lo` in the new network namespace failed.
    #[error("bringing up the loopback device in the new network namespace failed: {source}")]
    Loopback { source: io::Error },

    /// `sethostname(2)` in the new UTS namespace failed.
    #[error("setting hostname {hostname:?} failed: {source}")]
    Hostname { hostname: String, source: Errno },

    /// Writing a sysctl inside the new namespaces failed (typically EINVAL: the kernel rejected
    /// the value, or ENOENT: no such sysctl).
    #[error("writing sysctl {name}={value:?} failed: {source}")]
    Sysctl {
        name: String,
        value: String,
        source: io::Error,
    },

    /// Bind-mounting a namespace file (or changing a mount's propagation) failed.
    #[error("mounting onto {path} failed: {source}")]
    Mount { path: PathBuf, source: Errno },

    /// Unmounting a pinned namespace failed.
    #[error("unmounting {path} failed: {source}")]
    Unmount { path: PathBuf, source: Errno },

    /// `setns(2)` into a namespace file failed (EINVAL: not a namespace of that kind).
    #[error("setns into {path} failed: {source}")]
    Setns { path: PathBuf, source: Errno },

    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// The dedicated thread that enters or creates namespaces could not be spawned.
    #[error("spawning the {thread} thread: {source}")]
    SpawnThread {
        thread: &'static str,
        #[source]
        source: io::Error,
    },
    /// That thread panicked (its namespaces die with it; nothing was pinned).
    #[error("the {thread} thread panicked")]
    ThreadPanicked { thread: &'static str },
}

impl NamespaceError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        NamespaceError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
