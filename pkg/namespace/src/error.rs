use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Errors from creating, pinning, entering and removing pod namespaces.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// A sysctl in the pod config may not be set (or is malformed). A client error.
    #[error("invalid sysctl {name:?}: {reason}")]
    InvalidSysctl { name: String, reason: String },

    /// The request itself is inconsistent (e.g. a hostname without a new UTS namespace).
    #[error("invalid namespace request: {0}")]
    InvalidRequest(String),

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

    /// The dedicated namespace thread could not be spawned or panicked.
    #[error("namespace thread: {0}")]
    Thread(String),
}

impl NamespaceError {
    /// True when the error is the caller's fault (map to gRPC `INVALID_ARGUMENT`); everything
    /// else is an internal/OS failure. A sysctl the kernel rejects at write time is reported as
    /// [`NamespaceError::Sysctl`] with EINVAL, which is also treated as the caller's fault.
    pub fn is_invalid_argument(&self) -> bool {
        match self {
            NamespaceError::InvalidSysctl { .. } | NamespaceError::InvalidRequest(_) => true,
            NamespaceError::Sysctl { source, .. } => {
                matches!(
                    source.raw_os_error(),
                    Some(libc::EINVAL) | Some(libc::ENOENT)
                )
            }
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        NamespaceError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
