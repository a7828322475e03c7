//! Container errors, named after what failed. berth-cri alone maps them to gRPC codes (see its
//! `error` module): the variants say whether the request, the container's state or Berth itself
//! is at fault, never which code to send.

use std::path::PathBuf;
use std::time::Duration;

use berth_monitor_api::MonitorError;

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
    #[error("a container ID is required")]
    MissingId,

    // The request asks for something malformed or refused: nothing was changed.
    /// The container config of a CreateContainer request (the message names the field).
    #[error("{0}")]
    InvalidConfig(String),
    /// One mount of the container config.
    #[error("mount {mount}: {reason}")]
    InvalidMount { mount: String, reason: String },
    /// An image volume's sub path: outside the image, missing, not a directory, or unreadable
    /// (the source tells which).
    #[error("mount {mount}: image_sub_path of image {image}: {source}")]
    ImageSubPath {
        mount: String,
        image: String,
        #[source]
        source: berth_snapshot::SubPathError,
    },
    #[error("invalid signal {text:?}: give a name (KILL, SIGUSR1, RTMIN+1) or a number 1-{max}")]
    InvalidSignal { text: String, max: i32 },
    #[error("exec needs a command")]
    EmptyCommand,
    #[error("checkpoint location {}: {reason}", location.display())]
    InvalidCheckpointLocation {
        location: PathBuf,
        reason: &'static str,
    },
    /// A copy's archive or path arguments (the message says what is wrong).
    #[error("{0}")]
    InvalidCopy(String),
    /// A path a copy names in the container's rootfs cannot be resolved, read or written: its
    /// kind says whether the path is missing, in the way, out of reach or the host failed.
    #[error("{op} {}: {}", path.display(), copy_path_reason(source))]
    CopyPath {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    // The container, its pod or the node is not in a state that allows the operation.
    /// `needs` says what the state is not and what the operation needs ("not running: ...").
    #[error("container {id} is {state}, {needs}")]
    WrongState {
        id: String,
        state: String,
        needs: &'static str,
    },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("pod sandbox {id} {reason}")]
    SandboxUnusable { id: String, reason: &'static str },
    #[error("image {0} has no layers")]
    ImageWithoutLayers(String),
    #[error("runtime handler {handler:?}: {reason}")]
    HandlerUnavailable {
        handler: String,
        reason: &'static str,
    },
    #[error("cannot create the log directory {}: {source}", dir.display())]
    LogDirectory {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("log path {} is a directory", .0.display())]
    LogPathIsDirectory(PathBuf),
    #[error("container {id}: {reason}")]
    RootfsUnavailable { id: String, reason: &'static str },
    /// CRIU is missing or `criu check` fails on this host.
    #[error("{0}")]
    CriuUnavailable(String),
    /// The OCI runtime could not start the container's (or exec's) command: not found or not
    /// executable in the container's filesystem. The message is the runtime's own.
    #[error("OCI runtime: {0}")]
    CommandNotStartable(String),

    // A deadline the request set passed.
    #[error("command {cmd:?} timed out after {after:?}")]
    ExecTimedOut { cmd: Vec<String>, after: Duration },
    #[error("checkpoint of {id} did not finish within {after:?}")]
    CheckpointTimedOut { id: String, after: Duration },

    // Berth's own failures (or the host's).
    /// The OCI runtime failed `op`; the message is the runtime's own.
    #[error("OCI runtime {op}: {message}")]
    Runtime { op: &'static str, message: String },
    #[error("OCI runtime {command} did not finish within {after:?}")]
    RuntimeTimedOut { command: String, after: Duration },
    #[error("{what} did not exit {after:?} after SIGKILL")]
    SurvivedSigkill { what: String, after: Duration },
    #[error(transparent)]
    Spec(#[from] berth_spec::SpecError),
    #[error("container monitor: {0}")]
    Monitor(MonitorError),
    #[error(transparent)]
    Store(#[from] berth_store::StoreError),
    #[error(transparent)]
    Snapshot(#[from] berth_snapshot::SnapshotError),
    #[error(transparent)]
    Cgroup(#[from] berth_cgroup::CgroupError),
    /// Boxed: an image error is large and would bloat every container `Result`.
    #[error("reading the config of image {image}: {source}")]
    ImageConfig {
        image: String,
        #[source]
        source: Box<berth_image::ImageError>,
    },
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pipes or terminal of an exec or attach.
    #[error("{what} stdio: {source}")]
    Stdio {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// Building or loading an OCI spec (or a part of it).
    #[error("{what}: {source}")]
    OciSpec {
        what: String,
        #[source]
        source: oci_spec::OciSpecError,
    },
    /// A bundle's config.json that Berth wrote lacks what it must have.
    #[error("{}: {reason}", path.display())]
    MalformedBundleConfig { path: PathBuf, reason: &'static str },
    /// Mounts and namespaces: idmapped or read-only clones, the pod's user namespace.
    #[error("{what}: {source}")]
    Namespace {
        what: String,
        #[source]
        source: berth_namespace::NamespaceError,
    },
    #[error("more than {max} entries in the new upper dir {}", dir.display())]
    UpperDirTooLarge { dir: PathBuf, max: usize },
    #[error("no free scratch dir name in {}", .0.display())]
    NoScratchDir(PathBuf),
    #[error("the rootfs of container {id} is not mounted at {}", path.display())]
    RootfsNotMounted { id: String, path: PathBuf },
    #[error("{what}: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("the copy ended before its stat")]
    CopyEndedEarly,
    /// A failpoint fired (tests inject failures this way); the message names it.
    #[error("{0}")]
    Failpoint(String),
}

impl ContainerError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> ContainerError {
        let path = path.into();
        move |source| ContainerError::Io { op, path, source }
    }

    /// A spawned task that panicked or was cancelled, doing `what`.
    pub(crate) fn task(
        what: &'static str,
    ) -> impl FnOnce(tokio::task::JoinError) -> ContainerError {
        move |source| ContainerError::Task { what, source }
    }

    pub(crate) fn namespace(
        what: impl Into<String>,
    ) -> impl FnOnce(berth_namespace::NamespaceError) -> ContainerError {
        let what = what.into();
        move |source| ContainerError::Namespace { what, source }
    }

    pub(crate) fn oci_spec(
        what: impl Into<String>,
    ) -> impl FnOnce(oci_spec::OciSpecError) -> ContainerError {
        let what = what.into();
        move |source| ContainerError::OciSpec { what, source }
    }

    pub(crate) fn json(
        what: impl Into<String>,
    ) -> impl FnOnce(serde_json::Error) -> ContainerError {
        let what = what.into();
        move |source| ContainerError::Json { what, source }
    }
}

/// What is wrong with a copy's path, in words for the CLI's user.
fn copy_path_reason(source: &std::io::Error) -> String {
    use std::io::ErrorKind as Kind;
    match source.kind() {
        Kind::NotFound => "no such file or directory".into(),
        Kind::NotADirectory => "not a directory".into(),
        Kind::CrossesDevices => "the path crosses a mount point (a volume or other mount of the \
                                 container is not reachable through its root filesystem)"
            .into(),
        _ => source.to_string(),
    }
}

/// The runtime's failure to start the container's command (reported through the monitor) is
/// about the container's image and command, not about Berth: told apart by runc's and crun's
/// words, as docker does.
impl From<MonitorError> for ContainerError {
    fn from(e: MonitorError) -> ContainerError {
        match e {
            MonitorError::Runtime(message) if command_not_startable(&message) => {
                ContainerError::CommandNotStartable(message)
            }
            e => ContainerError::Monitor(e),
        }
    }
}

/// Whether a runtime's message says the process's command could not be started (not found, not
/// executable): "no such file" alone may be about a mount source, so the message must also be
/// about starting a process.
pub(crate) fn command_not_startable(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let starting = m.contains("exec: \"") || m.contains("executable file") || m.contains("$path");
    starting
        && [
            "executable file not found",
            "not found in $path",
            "no such file or directory",
            "permission denied",
            "exec format error",
            "is a directory",
        ]
        .iter()
        .any(|words| m.contains(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_words_for_a_command_that_cannot_start() {
        let runc = "runc create failed: unable to start container process: exec: \"nope\": \
                    executable file not found in $PATH";
        assert!(command_not_startable(runc));
        let crun = "executable file `nope` not found in $PATH: No such file or directory";
        assert!(command_not_startable(crun));
        assert!(command_not_startable(
            "exec failed: unable to start container process: exec: \"/etc\": is a directory"
        ));
        assert!(!command_not_startable(
            "error mounting \"/x\" to rootfs: no such file or directory"
        ));
        assert!(!command_not_startable("cgroup: permission denied"));
        let e = ContainerError::from(MonitorError::Runtime(runc.into()));
        assert!(matches!(e, ContainerError::CommandNotStartable(_)), "{e}");
        let e = ContainerError::from(MonitorError::Runtime("mount failed".into()));
        assert!(matches!(e, ContainerError::Monitor(_)), "{e}");
    }
}
