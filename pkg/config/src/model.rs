//! The configuration model. Every struct denies unknown keys and fills missing ones from its default, so a
//! file only needs to say what it changes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::registry::RegistryConfig;

/// 16 MiB: kubelet sends messages up to this size; tonic's own default (4 MiB) is too small.
pub const MIN_GRPC_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Persistent data: metadata store, image content, snapshots.
    pub root: PathBuf,
    /// Volatile data: sockets, pinned namespaces, runtime state. Expected on a tmpfs.
    pub state: PathBuf,
    /// The CRI endpoint, `unix:///path`.
    pub listen: String,
    pub log: LogConfig,
    pub grpc: GrpcConfig,
    pub metrics: MetricsConfig,
    pub streaming: StreamingConfig,
    pub cgroup: CgroupConfig,
    pub runtime: RuntimeConfig,
    pub cni: CniConfig,
    pub image: ImageConfig,
    pub registry: RegistryConfig,
    pub seccomp: SeccompConfig,
    pub cdi: crate::CdiConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/var/lib/berth"),
            state: PathBuf::from("/run/berth"),
            listen: "unix:///run/berth/berth.sock".to_string(),
            log: LogConfig::default(),
            grpc: GrpcConfig::default(),
            metrics: MetricsConfig::default(),
            streaming: StreamingConfig::default(),
            cgroup: CgroupConfig::default(),
            runtime: RuntimeConfig::default(),
            cni: CniConfig::default(),
            image: ImageConfig::default(),
            registry: RegistryConfig::default(),
            seccomp: SeccompConfig::default(),
            cdi: crate::CdiConfig::default(),
        }
    }
}

impl Config {
    /// The socket path of `listen` (validated to be `unix://` + absolute path at load time).
    pub fn socket_path(&self) -> &Path {
        Path::new(self.listen.strip_prefix("unix://").unwrap_or(&self.listen))
    }

    /// Path of the metadata store.
    pub fn store_path(&self) -> PathBuf {
        self.root.join("berth.db")
    }

    /// The handler used when a pod names none (RuntimeClass unset).
    pub fn default_handler(&self) -> Option<(&str, &RuntimeHandler)> {
        let name = self.runtime.default_handler.as_str();
        self.runtime.handlers.get(name).map(|h| (name, h))
    }

    /// The configuration as JSON, for `Status` verbose info. Registry secrets are redacted: any
    /// CRI client can ask for this.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail; fall back to an empty object regardless.
        let Ok(mut value) = serde_json::to_value(self) else {
            return "{}".to_string();
        };
        if let Some(registry) = value.pointer_mut("/registry") {
            crate::registry::redact_json(registry);
        }
        value.to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            other => Err(format!(
                "unknown log level {other:?} (expected error, warn, info, debug or trace)"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected text or json)"
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    pub max_recv_message_size: usize,
    pub max_send_message_size: usize,
    /// Group owning the socket (mode 0660), so a non-root group can be given access. Unset: root's group.
    pub socket_gid: Option<u32>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            max_recv_message_size: MIN_GRPC_MESSAGE_SIZE,
            max_send_message_size: MIN_GRPC_MESSAGE_SIZE,
            socket_gid: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub address: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            address: SocketAddr::from(([127, 0, 0, 1], 9190)),
        }
    }
}

/// The exec/attach/port-forward server whose URLs CRI Exec, Attach and PortForward return.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    /// Port 0 picks a free port at startup (the URLs carry it).
    pub address: SocketAddr,
    /// Serve HTTPS with this certificate chain and key (PEM); both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// A session with no traffic either way for this long is closed (kubelet's default: 4 h).
    pub idle_timeout_secs: u64,
    /// How long a client may take to open the streams a session needs.
    pub stream_creation_timeout_secs: u64,
    /// How long a URL stays usable before its first use.
    pub token_ttl_secs: u64,
    /// ExecSync keeps at most this many bytes of stdout and of stderr each.
    pub exec_sync_output_limit: usize,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls_cert_file: None,
            tls_key_file: None,
            idle_timeout_secs: 4 * 3600,
            stream_creation_timeout_secs: 30,
            token_ttl_secs: 60,
            exec_sync_output_limit: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    #[default]
    Cgroupfs,
    Systemd,
}

impl CgroupDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupDriver::Cgroupfs => "cgroupfs",
            CgroupDriver::Systemd => "systemd",
        }
    }
}

/// Seccomp for containers whose request (and pod) name no profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SeccompConfig {
    /// What an empty profile means. kubelet itself sends `Unconfined` unless it runs with
    /// `--seccomp-default`; this key is for nodes that want RuntimeDefault for every client.
    pub default_profile: SeccompDefault,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SeccompDefault {
    /// No filter, as kubelet's own default.
    #[default]
    Unconfined,
    /// Berth's built-in default profile.
    RuntimeDefault,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupConfig {
    /// Must match kubelet's `--cgroup-driver`.
    pub driver: CgroupDriver,
}

/// OCI runtimes, keyed by RuntimeClass handler name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Handler used when a pod asks for none.
    pub default_handler: String,
    pub handlers: BTreeMap<String, RuntimeHandler>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        let mut handlers = BTreeMap::new();
        handlers.insert(
            "runc".to_string(),
            RuntimeHandler {
                path: PathBuf::from("runc"),
                root: None,
            },
        );
        RuntimeConfig {
            default_handler: "runc".to_string(),
            handlers,
        }
    }
}

/// One OCI-CLI runtime (runc, crun, youki, runsc...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandler {
    /// Binary: an absolute path, or a name looked up in PATH.
    pub path: PathBuf,
    /// The runtime's own state dir (`--root`). Unset: `<state>/runtime/<handler>`.
    #[serde(default)]
    pub root: Option<PathBuf>,
}

impl RuntimeHandler {
    /// Resolves the binary to an executable file, searching PATH for a bare name.
    pub fn resolve_binary(&self) -> Option<PathBuf> {
        if self.path.components().count() > 1 || self.path.is_absolute() {
            return is_executable(&self.path).then(|| self.path.clone());
        }
        let path_var =
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
        std::env::split_paths(&path_var)
            .map(|dir| dir.join(&self.path))
            .find(|candidate| is_executable(candidate))
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    /// Where network configurations are read from; the lexically first valid one is used.
    pub conf_dir: PathBuf,
    /// Where plugin binaries are searched, in order.
    pub bin_dirs: Vec<PathBuf>,
    /// How long one plugin call (ADD, DEL, CHECK) may take before the plugin is killed and the
    /// call fails.
    pub plugin_timeout_secs: u64,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            plugin_timeout_secs: 60,
        }
    }
}

/// Image pulls and the image store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImageConfig {
    /// Layers of one pull downloaded at the same time.
    pub max_concurrent_downloads: usize,
    /// A pull that receives no data for this many seconds fails.
    pub pull_stall_timeout_secs: u64,
    /// Images reported as pinned to kubelet, which then never garbage-collects them.
    pub pinned: Vec<String>,
    /// Most bytes one layer may unpack to (its uncompressed tar stream and the file content it
    /// writes): a pull whose layer goes over it fails and the partial snapshot is removed. Bounds
    /// decompression bombs; default 64 GiB.
    pub max_layer_unpacked_bytes: u64,
    /// Where image content and layer snapshots live; None: the root dir. On a filesystem of its
    /// own, pulls cannot fill the disk containers write to, and ImageFsInfo reports the image
    /// and container filesystems apart (kubelet's split image filesystem).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_dir: Option<PathBuf>,
}

impl ImageConfig {
    /// The directory holding image content and snapshots.
    pub fn store_dir<'a>(&'a self, root: &'a Path) -> &'a Path {
        self.store_dir.as_deref().unwrap_or(root)
    }
}

impl Default for ImageConfig {
    fn default() -> Self {
        ImageConfig {
            max_concurrent_downloads: 3,
            pull_stall_timeout_secs: 60,
            pinned: Vec::new(),
            max_layer_unpacked_bytes: 64 << 30,
            store_dir: None,
        }
    }
}
