//! Every error that reaches a CRI caller is mapped to a gRPC status here, and only here.

use berth_container::ContainerError;
use berth_image::ImageError;
use berth_network::{CniError, NetworkError};
use berth_registry::RegistryError;
use berth_sandbox::SandboxError;
use berth_snapshot::SnapshotError;
use berth_stats::StatsError;
use berth_store::StoreError;
use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    NotFound(String),
    /// A transient limit (e.g. too many streaming sessions waiting): retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Boxed: sandbox errors carry CNI plugin output and would bloat every `Result` here.
    #[error(transparent)]
    Sandbox(Box<SandboxError>),
    #[error(transparent)]
    Container(Box<ContainerError>),
    /// Handing out an Exec, Attach or PortForward URL.
    #[error(transparent)]
    Streaming(#[from] berth_streaming::StreamingError),
    #[error(transparent)]
    Stats(Box<StatsError>),
    #[error(transparent)]
    Volume(#[from] berth_volume::VolumeError),
    /// Every CDI error is about the request's devices or the node's spec files for them.
    #[error(transparent)]
    Cdi(#[from] berth_cdi::CdiError),
    /// A blocking task of the gRPC layer's own (fs usage, logout, CDI resolution) panicked or was
    /// cancelled.
    #[error("{what} task: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// The OCI runtime could not pause or resume a container around a commit.
    #[error("{command}: {failure}")]
    PauseRuntime {
        command: String,
        #[source]
        failure: crate::image_archive_api::RuntimeFailure,
    },
}

impl CriError {
    fn code(&self) -> Code {
        match self {
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::NotFound(_) => Code::NotFound,
            CriError::Unavailable(_) => Code::Unavailable,
            CriError::Network(NetworkError::InvalidCidr { .. }) => Code::InvalidArgument,
            CriError::Network(NetworkError::Persist { .. }) => Code::Internal,
            CriError::Store(e) => store_code(e),
            CriError::Image(e) => image_code(e),
            CriError::Sandbox(e) => sandbox_code(e),
            CriError::Container(e) => container_code(e),
            CriError::Streaming(e) => streaming_code(e),
            CriError::Stats(e) => stats_code(e),
            CriError::Volume(e) => volume_code(e),
            CriError::Cdi(_) => Code::InvalidArgument,
            CriError::Task { .. } | CriError::PauseRuntime { .. } => Code::Internal,
        }
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::NotFound { .. } => Code::NotFound,
        StoreError::AlreadyExists { .. } => Code::AlreadyExists,
        StoreError::Ambiguous { .. } | StoreError::InvalidId { .. } => Code::InvalidArgument,
        _ => Code::Internal,
    }
}

fn image_code(e: &ImageError) -> Code {
    match e {
        ImageError::Registry(e) => registry_code(e),
        ImageError::Snapshot(SnapshotError::UnsafePath { .. }) => Code::InvalidArgument,
        ImageError::Snapshot(SnapshotError::DiffIdMismatch { .. }) => Code::DataLoss,
        ImageError::Snapshot(SnapshotError::LayerTooLarge { .. }) => Code::ResourceExhausted,
        ImageError::Snapshot(_) => Code::Internal,
        ImageError::Store(e) => store_code(e),
        ImageError::Shared(inner) => image_code(inner),
        // The request named, or sent, something that is not a usable image.
        ImageError::InvalidDigest(_)
        | ImageError::UnsupportedLayer(_)
        | ImageError::UnsupportedManifest(_)
        | ImageError::InvalidImage { .. }
        | ImageError::InvalidConfig { .. }
        | ImageError::ArchiveTar { .. }
        | ImageError::ArchiveStream { .. }
        | ImageError::ArchiveJson { .. } => Code::InvalidArgument,
        // The bytes received are not the ones the image declares.
        ImageError::DigestMismatch { .. }
        | ImageError::SizeMismatch { .. }
        | ImageError::ReadLayer { .. }
        | ImageError::Zstd { .. } => Code::DataLoss,
        ImageError::Stalled { .. } => Code::DeadlineExceeded,
        ImageError::Cancelled => Code::Aborted,
        // Every caller of the pull went away.
        ImageError::Abandoned => Code::Cancelled,
        // Berth's own failures.
        ImageError::UnpackerStopped { .. }
        | ImageError::DownloadSlots { .. }
        | ImageError::Io { .. }
        | ImageError::Task { .. }
        | ImageError::Encode { .. } => Code::Internal,
    }
}

fn sandbox_code(e: &SandboxError) -> Code {
    match e {
        // The request's mistakes.
        SandboxError::MissingId
        | SandboxError::Ambiguous { .. }
        | SandboxError::IncompleteMetadata
        | SandboxError::UnknownHandler { .. }
        | SandboxError::InvalidNamespaces(_)
        | SandboxError::InvalidHostname(_)
        | SandboxError::InvalidDnsEntry(_)
        | SandboxError::InvalidBandwidth { .. } => Code::InvalidArgument,
        SandboxError::Namespace(e) => namespace_code(e),
        SandboxError::Cgroup(e) => cgroup_code(e),
        SandboxError::NotFound(_) => Code::NotFound,
        // What the pod or the node is not ready for: the request may succeed later or elsewhere.
        SandboxError::NotReady { .. }
        | SandboxError::PortForward { .. }
        | SandboxError::UserNamespacesUnavailable { .. } => Code::FailedPrecondition,
        SandboxError::Cni(e) => cni_code(e),
        SandboxError::Store(e) => store_code(e),
        // The pod's containers could not be stopped or removed: the container layer's error
        // keeps its own code (a timeout stays DEADLINE_EXCEEDED).
        SandboxError::Containers(e) => e
            .downcast_ref::<ContainerError>()
            .map_or(Code::Internal, container_code),
        // Berth's own failures.
        SandboxError::Io { .. }
        | SandboxError::Mount { .. }
        | SandboxError::Init(_)
        | SandboxError::Task { .. }
        | SandboxError::Failpoint(_) => Code::Internal,
    }
}

/// A request's mistake is INVALID_ARGUMENT (or NOT_FOUND), a container, pod or node not in the
/// state the operation needs is FAILED_PRECONDITION, a deadline the request set is
/// DEADLINE_EXCEEDED; everything else failed in Berth (or under it) and is INTERNAL.
fn container_code(e: &ContainerError) -> Code {
    use berth_monitor_api::MonitorError;
    match e {
        ContainerError::NotFound(_)
        | ContainerError::SandboxNotFound(_)
        | ContainerError::ImageNotFound(_) => Code::NotFound,
        ContainerError::MissingId
        | ContainerError::Ambiguous { .. }
        | ContainerError::InvalidConfig(_)
        | ContainerError::InvalidMount { .. }
        | ContainerError::InvalidSignal { .. }
        | ContainerError::EmptyCommand
        | ContainerError::InvalidCheckpointLocation { .. }
        | ContainerError::InvalidCopy(_) => Code::InvalidArgument,
        ContainerError::ImageSubPath {
            source: berth_snapshot::SubPathError::Io { .. },
            ..
        } => Code::Internal,
        ContainerError::ImageSubPath { .. } => Code::InvalidArgument,
        ContainerError::CopyPath { source, .. } => copy_path_code(source.kind()),
        // The command is missing (or not executable) in the container's filesystem: the
        // container's image and command do not fit, which no retry of Berth's changes.
        ContainerError::WrongState { .. }
        | ContainerError::NotRunning { .. }
        | ContainerError::SandboxUnusable { .. }
        | ContainerError::ImageWithoutLayers(_)
        | ContainerError::HandlerUnavailable { .. }
        | ContainerError::LogDirectory { .. }
        | ContainerError::LogPathIsDirectory(_)
        | ContainerError::RootfsUnavailable { .. }
        | ContainerError::CriuUnavailable(_)
        | ContainerError::CommandNotStartable(_) => Code::FailedPrecondition,
        ContainerError::ExecTimedOut { .. } | ContainerError::CheckpointTimedOut { .. } => {
            Code::DeadlineExceeded
        }
        ContainerError::Spec(e) => spec_code(e),
        ContainerError::Cgroup(e) => cgroup_code(e),
        ContainerError::Store(e) => store_code(e),
        ContainerError::ImageConfig { source, .. } => image_code(source),
        ContainerError::Monitor(MonitorError::UnknownContainer(_)) => Code::NotFound,
        ContainerError::Monitor(MonitorError::FailedPrecondition(_)) => Code::FailedPrecondition,
        ContainerError::Monitor(MonitorError::Timeout(_)) => Code::DeadlineExceeded,
        ContainerError::Runtime { .. }
        | ContainerError::RuntimeTimedOut { .. }
        | ContainerError::SurvivedSigkill { .. }
        | ContainerError::Monitor(_)
        | ContainerError::Snapshot(_)
        | ContainerError::Io { .. }
        | ContainerError::Stdio { .. }
        | ContainerError::Json { .. }
        | ContainerError::OciSpec { .. }
        | ContainerError::MalformedBundleConfig { .. }
        | ContainerError::Namespace { .. }
        | ContainerError::UpperDirTooLarge { .. }
        | ContainerError::NoScratchDir(_)
        | ContainerError::RootfsNotMounted { .. }
        | ContainerError::Task { .. }
        | ContainerError::CopyEndedEarly
        | ContainerError::Failpoint(_) => Code::Internal,
    }
}

fn streaming_code(e: &berth_streaming::StreamingError) -> Code {
    use berth_streaming::StreamingError;
    match e {
        StreamingError::InvalidRequest(_) => Code::InvalidArgument,
        StreamingError::TooManyInFlight { .. } => Code::Unavailable,
        StreamingError::Bind { .. }
        | StreamingError::TlsFile { .. }
        | StreamingError::Tls(_)
        | StreamingError::Random(_) => Code::Internal,
    }
}

/// A path a copy names in the container: missing, in the way or out of reach is the request's;
/// a full disk is transient; anything else failed in Berth.
fn copy_path_code(kind: std::io::ErrorKind) -> Code {
    use std::io::ErrorKind as Kind;
    match kind {
        Kind::NotFound | Kind::NotADirectory => Code::NotFound,
        Kind::CrossesDevices => Code::InvalidArgument,
        Kind::AlreadyExists | Kind::IsADirectory | Kind::DirectoryNotEmpty => {
            Code::FailedPrecondition
        }
        Kind::StorageFull | Kind::QuotaExceeded => Code::Unavailable,
        _ => Code::Internal,
    }
}

fn stats_code(e: &StatsError) -> Code {
    match e {
        StatsError::ContainerNotFound(_) | StatsError::SandboxNotFound(_) => Code::NotFound,
        StatsError::Container(e) => container_code(e),
        StatsError::Sandbox(e) => sandbox_code(e),
        StatsError::EnterNetns { .. }
        | StatsError::ReadNetDev { .. }
        | StatsError::NetDevNumber { .. }
        | StatsError::NetDevFields { .. } => Code::Internal,
    }
}

fn volume_code(e: &berth_volume::VolumeError) -> Code {
    use berth_volume::VolumeError;
    match e {
        VolumeError::InvalidName(_)
        | VolumeError::NameTooLong { .. }
        | VolumeError::EmptyLabelKey(_) => Code::InvalidArgument,
        VolumeError::AlreadyExists(_) => Code::AlreadyExists,
        VolumeError::NotFound(_) => Code::NotFound,
        VolumeError::InUse { .. } => Code::FailedPrecondition,
        VolumeError::Metadata { .. } | VolumeError::Io { .. } => Code::Internal,
    }
}

fn cni_code(e: &CniError) -> Code {
    match e {
        // The node's CNI configuration: retrying with it cannot help.
        CniError::NoConfig { .. }
        | CniError::InvalidConfig { .. }
        | CniError::ReadConfig { .. }
        | CniError::PluginNotFound { .. }
        | CniError::IncompatibleVersion { .. } => Code::FailedPrecondition,
        // A DEL whose every failure is the configuration's is too.
        CniError::Teardown { errors }
            if errors
                .iter()
                .all(|e| cni_code(e) == Code::FailedPrecondition) =>
        {
            Code::FailedPrecondition
        }
        CniError::InvalidRequest(_) => Code::InvalidArgument,
        CniError::NetnsMissing { .. } => Code::NotFound,
        CniError::Timeout { .. } => Code::DeadlineExceeded,
        CniError::Plugin { .. }
        | CniError::PluginOutput { .. }
        | CniError::PluginExec { .. }
        | CniError::Teardown { .. } => Code::Internal,
    }
}

/// Spec errors are the request's or the image's mistakes (checked before any side effect), a
/// profile the node could not load, or Berth's own failures.
pub(crate) fn spec_code(e: &berth_spec::SpecError) -> Code {
    use berth_spec::SpecError;
    match e {
        SpecError::InvalidRunAs(_)
        | SpecError::InvalidId { .. }
        | SpecError::UnknownUser { .. }
        | SpecError::UnknownGroup { .. }
        | SpecError::NoCommand
        | SpecError::InvalidEnv { .. }
        | SpecError::RelativeWorkingDir(_)
        | SpecError::OomScoreAdjOutOfRange(_)
        | SpecError::UnknownCapability(_)
        | SpecError::AllAmbientCapabilities
        | SpecError::InvalidResources(_)
        | SpecError::NoPodPidNamespace
        | SpecError::UnknownTargetPidNamespace(_)
        | SpecError::InvalidMount(_)
        | SpecError::InvalidDevice(_)
        | SpecError::DeviceNotFound { .. }
        | SpecError::InvalidCdiEdits(_)
        | SpecError::InvalidSeccompRequest(_)
        | SpecError::InvalidSeccompProfile { .. }
        | SpecError::UnreadableSeccompProfile { .. }
        | SpecError::InvalidApparmorRequest(_)
        | SpecError::InvalidSelinuxOptions(_)
        | SpecError::InvalidImageConfig(_)
        | SpecError::InvalidStopSignal(_) => Code::InvalidArgument,
        SpecError::ApparmorDefaultNotLoaded(_) => Code::FailedPrecondition,
        SpecError::Io { .. }
        | SpecError::Build(_)
        | SpecError::DefaultSeccompProfile(_)
        | SpecError::RelativeRootfs(_)
        | SpecError::Serialize(_)
        | SpecError::ApparmorParser { .. } => Code::Internal,
    }
}

/// The pod's namespace request is checked before anything is created; a sysctl the kernel
/// refuses at write time (EINVAL: a bad value, ENOENT: no such sysctl) is the request's too.
fn namespace_code(e: &berth_namespace::NamespaceError) -> Code {
    use berth_namespace::NamespaceError;
    match e {
        NamespaceError::InvalidSysctl { .. }
        | NamespaceError::InconsistentNamespaces(_)
        | NamespaceError::InvalidHostname { .. }
        | NamespaceError::InvalidIdMappings { .. }
        | NamespaceError::PathWithNul { .. } => Code::InvalidArgument,
        NamespaceError::Sysctl { source, .. }
            if matches!(source.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) =>
        {
            Code::InvalidArgument
        }
        NamespaceError::AlreadyPinned { .. }
        | NamespaceError::Unshare { .. }
        | NamespaceError::Loopback { .. }
        | NamespaceError::Hostname { .. }
        | NamespaceError::Sysctl { .. }
        | NamespaceError::Mount { .. }
        | NamespaceError::Unmount { .. }
        | NamespaceError::Setns { .. }
        | NamespaceError::Io { .. }
        | NamespaceError::SpawnThread { .. }
        | NamespaceError::ThreadPanicked { .. } => Code::Internal,
    }
}

/// A bad parent, sandbox id, driver or resource value, or a feature this host's cgroups lack,
/// is the request's; a cgroup that is gone is NOT_FOUND; the rest failed on the host.
fn cgroup_code(e: &berth_cgroup::CgroupError) -> Code {
    use berth_cgroup::CgroupError;
    match e {
        CgroupError::InvalidParent { .. }
        | CgroupError::InvalidSandboxId { .. }
        | CgroupError::InvalidDriver { .. }
        | CgroupError::InvalidResources { .. }
        | CgroupError::Unsupported { .. } => Code::InvalidArgument,
        CgroupError::NotFound { .. } => Code::NotFound,
        CgroupError::Detect { .. }
        | CgroupError::Io { .. }
        | CgroupError::Busy { .. }
        | CgroupError::ForeignPath { .. }
        | CgroupError::StatsFile { .. }
        | CgroupError::Libcgroups { .. } => Code::Internal,
    }
}

fn registry_code(e: &RegistryError) -> Code {
    match e {
        RegistryError::InvalidReference { .. }
        | RegistryError::InvalidDigest { .. }
        | RegistryError::InvalidCredentials(_)
        | RegistryError::UnsupportedMediaType { .. }
        | RegistryError::InvalidManifest { .. }
        | RegistryError::ParseManifest { .. }
        | RegistryError::NoMatchingPlatform { .. } => Code::InvalidArgument,
        RegistryError::NotFound { .. } | RegistryError::BlobNotFound { .. } => Code::NotFound,
        RegistryError::Unauthorized { .. } => Code::Unauthenticated,
        RegistryError::DigestMismatch { .. }
        | RegistryError::SizeMismatch { .. }
        | RegistryError::TooLarge { .. } => Code::DataLoss,
        RegistryError::Http { .. } | RegistryError::Network { .. } => Code::Unavailable,
        // The node's registry configuration (TLS files, hosts dir, credentials) is wrong.
        RegistryError::Tls { .. }
        | RegistryError::ReadTlsFile { .. }
        | RegistryError::InvalidPem { .. }
        | RegistryError::HttpClient { .. }
        | RegistryError::Config { .. }
        | RegistryError::HostsDir { .. }
        | RegistryError::HostCredentials { .. } => Code::FailedPrecondition,
    }
}

impl From<SandboxError> for CriError {
    fn from(e: SandboxError) -> CriError {
        CriError::Sandbox(Box::new(e))
    }
}

impl From<ContainerError> for CriError {
    fn from(e: ContainerError) -> CriError {
        CriError::Container(Box::new(e))
    }
}

impl From<StatsError> for CriError {
    fn from(e: StatsError) -> Self {
        CriError::Stats(Box::new(e))
    }
}

impl From<CriError> for Status {
    fn from(e: CriError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

/// The gRPC code's canonical name (as in grpc-go), used as the `code` metric label.
pub(crate) fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_cidr_is_invalid_argument() {
        let err = berth_network::PodCidrs::parse("nope").unwrap_err();
        assert_eq!(
            Status::from(CriError::from(err)).code(),
            Code::InvalidArgument
        );
    }

    #[test]
    fn a_sysctl_the_kernel_refuses_is_the_requests() {
        use berth_namespace::NamespaceError;
        let sysctl = |errno| NamespaceError::Sysctl {
            name: "net.x".into(),
            value: "1".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        assert_eq!(namespace_code(&sysctl(libc::EINVAL)), Code::InvalidArgument);
        assert_eq!(namespace_code(&sysctl(libc::ENOENT)), Code::InvalidArgument);
        assert_eq!(namespace_code(&sysctl(libc::EPERM)), Code::Internal);
    }

    #[test]
    fn a_teardown_is_the_configs_only_when_every_failure_is() {
        let config = || CniError::InvalidConfig {
            origin: "x".into(),
            reason: "y".into(),
        };
        let exec = || CniError::PluginExec {
            path: "/opt/cni/bin/x".into(),
            command: berth_network::cni::Command::Del,
            source: std::io::Error::other("boom"),
        };
        let all = CniError::Teardown {
            errors: vec![config(), config()],
        };
        assert_eq!(cni_code(&all), Code::FailedPrecondition);
        let mixed = CniError::Teardown {
            errors: vec![config(), exec()],
        };
        assert_eq!(cni_code(&mixed), Code::Internal);
    }

    #[test]
    fn spec_errors_of_the_request_are_invalid_argument() {
        use berth_spec::SpecError;
        assert_eq!(spec_code(&SpecError::NoCommand), Code::InvalidArgument);
        assert_eq!(
            spec_code(&SpecError::ApparmorDefaultNotLoaded("p")),
            Code::FailedPrecondition
        );
        let io = SpecError::Io {
            context: "writing x".into(),
            source: std::io::Error::other("boom"),
        };
        assert_eq!(spec_code(&io), Code::Internal);
    }

    #[test]
    fn a_pod_rpc_failing_in_the_container_layer_keeps_that_code() {
        let stop_timed_out = SandboxError::Containers(Box::new(ContainerError::ExecTimedOut {
            cmd: vec!["true".into()],
            after: std::time::Duration::from_secs(1),
        }));
        assert_eq!(sandbox_code(&stop_timed_out), Code::DeadlineExceeded);
        let other = SandboxError::Containers("not a container error".into());
        assert_eq!(sandbox_code(&other), Code::Internal);
    }
}
