//! A container's configuration as Berth keeps it: the CRI `ContainerConfig` translated into plain
//! types (berth-cri does the translation), persisted in the container record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// CRI metadata: name and attempt (kubelet's restart counter).
    pub name: String,
    pub attempt: u32,
    /// The image as the request named it (a reference or an image ID).
    pub image: String,
    /// Replaces the image's Entrypoint (and then its Cmd is dropped).
    pub command: Vec<String>,
    /// Replaces the image's Cmd.
    pub args: Vec<String>,
    /// Empty: the image's WorkingDir, else `/`.
    pub working_dir: String,
    /// In order; a later key overrides an earlier one and the image's.
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the sandbox's log directory; empty for no log.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub resources: Resources,
    pub security: Security,
    /// The signal StopContainer sends first when the CRI config names one (kubelet 1.33+,
    /// `ContainerConfig.stop_signal`); None: the image's STOPSIGNAL, else SIGTERM. Absent in
    /// records written before it existed.
    #[serde(default)]
    pub stop_signal: Option<i32>,
    /// CDI devices, resolved at CreateContainer (the record keeps the edits: a restart does not
    /// need the spec files). Absent in records written before CDI support.
    #[serde(default)]
    pub cdi: berth_cdi::Resolved,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub propagation: Propagation,
    /// An image volume (CRI `Mount.image`): the image's rootfs, read-only, instead of a host
    /// path. CreateContainer sets `host_path` to where it mounted it (as containerd does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSource>,
    /// CRI `recursive_read_only`: submounts of the host path are read-only too (with `readonly`
    /// and private propagation). Emitted as runc 1.2's `rro` option (see `mounts.rs`).
    #[serde(default)]
    pub recursive_read_only: bool,
}

/// The image of an image volume, as requested and as resolved at CreateContainer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageSource {
    /// The reference or ID the request named.
    pub image: String,
    /// A directory inside the image to mount instead of its root; empty for the root.
    #[serde(default)]
    pub sub_path: String,
    /// Resolved: the image ID and the top snapshot mounted (kept from garbage collection).
    #[serde(default)]
    pub image_id: String,
    #[serde(default)]
    pub snapshot: String,
}

/// CRI's `MountPropagation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Propagation {
    /// `rprivate`.
    #[default]
    Private,
    /// `rslave`: mounts made on the host appear in the container.
    HostToContainer,
    /// `rshared`: mounts propagate both ways.
    Bidirectional,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub container_path: String,
    pub host_path: String,
    /// Any of `r`, `w`, `m`; empty means `rwm`.
    pub permissions: String,
}

/// CRI's `LinuxContainerResources`. Zero / empty means unset, as in CRI.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// Page size (`2MB`, `1GB`) and limit in bytes.
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files, e.g. `memory.high`.
    pub unified: BTreeMap<String, String>,
}

/// CRI's `LinuxContainerSecurityContext`, with the profiles already chosen (berth-cri resolves
/// the deprecated string forms, the pod's profile and the node default into these). Fields added
/// after the first release carry `serde(default)` so records written before them still load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Security {
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_username: String,
    pub run_as_group: Option<i64>,
    pub supplemental_groups: Vec<i64>,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    /// Capability names as CRI gives them (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    /// Added to the ambient set (and so to the inheritable one, as the kernel requires): a
    /// non-root process keeps them across exec.
    #[serde(default)]
    pub add_ambient_capabilities: Vec<String>,
    pub pid_mode: PidMode,
    #[serde(default)]
    pub seccomp: SeccompProfile,
    /// `None`: Berth's default lists. `Some`: exactly these (empty = nothing masked, kubelet's
    /// `procMount: Unmasked`). Ignored for privileged containers.
    #[serde(default)]
    pub masked_paths: Option<Vec<String>>,
    #[serde(default)]
    pub readonly_paths: Option<Vec<String>>,
    /// The AppArmor profile name for `process.apparmorProfile`; None = none applied (no
    /// AppArmor on the host, unconfined, or privileged).
    #[serde(default)]
    pub apparmor_profile: Option<String>,
    /// The SELinux process label (`process.selinuxLabel`) and mount label; None = none (no
    /// SELinux on the host, or privileged).
    #[serde(default)]
    pub selinux_labels: Option<crate::SelinuxLabels>,
    #[serde(default)]
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
}

/// Which seccomp filter the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SeccompProfile {
    /// No filter.
    #[default]
    Unconfined,
    /// Berth's built-in default profile (Docker's and containerd's coverage).
    RuntimeDefault,
    /// A profile file on the node (absolute path), in OCI `linux.seccomp` or Docker's format.
    Localhost(String),
}

/// How the process's supplementary groups are computed (CRI `SupplementalGroupsPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupplementalGroupsPolicy {
    /// The primary gid, the image's /etc/group memberships and the requested groups.
    #[default]
    Merge,
    /// The primary gid and the requested groups only; /etc/group is not read for groups.
    Strict,
}

/// Which PID namespace the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum PidMode {
    /// Its own.
    #[default]
    Container,
    /// The pod's shared one (the sandbox's berth-init is PID 1).
    Pod,
    /// The host's.
    Node,
    /// Another container's (CRI `TARGET`, by container ID).
    Target(String),
}
