//! The crate's error type. The variants say what is wrong; berth-cri alone decides which gRPC
//! code each one becomes.

use std::path::PathBuf;

/// Why a spec could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    // The request's (or the image's) mistakes: user and group.
    /// `run_as_user`, `run_as_username` and `run_as_group` do not go together.
    #[error("{0}")]
    InvalidRunAs(&'static str),
    /// A user or group id in the request does not fit a `u32`.
    #[error("{what} {id} is not a valid id")]
    InvalidId { what: &'static str, id: i64 },
    #[error("user {name:?} not found in the image's /etc/passwd (image {image:?})")]
    UnknownUser { name: String, image: String },
    #[error("group {name:?} not found in the image's /etc/group (image {image:?})")]
    UnknownGroup { name: String, image: String },

    // The process.
    #[error("no command specified")]
    NoCommand,
    /// `origin` says where the variable came from (the request or the image).
    #[error("invalid environment variable {key:?} in {origin}")]
    InvalidEnv { key: String, origin: String },
    #[error("working directory {0:?} is not an absolute path")]
    RelativeWorkingDir(String),
    #[error("oom_score_adj {0} is outside -1000..=1000")]
    OomScoreAdjOutOfRange(i64),
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("ALL is not accepted in add_ambient_capabilities: name each capability")]
    AllAmbientCapabilities,
    /// A resource limit that cannot be expressed (negative, too large, a page size missing).
    #[error("{0}")]
    InvalidResources(String),
    #[error("the pod has no shared PID namespace (PidMode::Pod)")]
    NoPodPidNamespace,
    #[error("the PID namespace of target container {0:?} is unknown")]
    UnknownTargetPidNamespace(String),

    // Mounts and devices.
    /// A mount, an image volume, a masked or read-only path, or a mount point in the image.
    #[error("{0}")]
    InvalidMount(String),
    #[error("{0}")]
    InvalidDevice(String),
    #[error("device {host_path:?} not found on the host: {source}")]
    DeviceNotFound {
        host_path: String,
        #[source]
        source: std::io::Error,
    },
    /// A CDI spec's edits name a hook or a device type the OCI spec has no place for.
    #[error("{0}")]
    InvalidCdiEdits(String),

    // Security profiles and labels.
    /// The seccomp profile named (string form) is none Berth knows or not a usable path.
    #[error("{0}")]
    InvalidSeccompRequest(String),
    /// A Localhost seccomp profile's file is not a usable profile.
    #[error("seccomp profile {}: {reason}", path.display())]
    InvalidSeccompProfile { path: PathBuf, reason: String },
    /// A Localhost seccomp profile's file could not be opened, inspected or read.
    #[error("seccomp profile {}: cannot {op} it: {source}", path.display())]
    UnreadableSeccompProfile {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The AppArmor profile requested is malformed, or not one this host can apply.
    #[error("{0}")]
    InvalidApparmorRequest(String),
    #[error("{0}")]
    InvalidSelinuxOptions(String),

    // The image config.
    #[error("parsing the image config: {0}")]
    InvalidImageConfig(#[source] serde_json::Error),
    #[error("invalid stop signal {0:?} in the image config")]
    InvalidStopSignal(String),

    // The node's state.
    /// RuntimeDefault AppArmor was asked for, but berthd could not load its profile at startup.
    #[error(
        "the AppArmor profile {0} for RuntimeDefault is not loaded (berthd could not load it at \
         startup; see its log)"
    )]
    ApparmorDefaultNotLoaded(&'static str),

    // Berth's own failures.
    /// A filesystem operation on the host failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// oci-spec refused to build a part of the spec.
    #[error("building the OCI spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
    /// The seccomp profile compiled into Berth does not parse (a unit test guards this).
    #[error("the built-in seccomp profile: {0}")]
    DefaultSeccompProfile(String),
    #[error("rootfs {} is not an absolute path", .0.display())]
    RelativeRootfs(PathBuf),
    #[error("serializing config.json: {0}")]
    Serialize(#[source] serde_json::Error),
    #[error("apparmor_parser {status}: {stderr}")]
    ApparmorParser {
        status: std::process::ExitStatus,
        stderr: String,
    },
}

impl SpecError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        SpecError::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_context() {
        let io = SpecError::io("reading x", std::io::Error::other("boom"));
        assert_eq!(io.to_string(), "reading x: boom");
        let id = SpecError::InvalidId {
            what: "run_as_user",
            id: -1,
        };
        assert_eq!(id.to_string(), "run_as_user -1 is not a valid id");
    }
}
