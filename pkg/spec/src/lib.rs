//! The OCI runtime spec (`config.json`) for a container, from its CRI config, its image's config
//! and its pod: what containerd's CRI plugin and CRI-O put there, for runc.
//!
//! [`build`] does it all. It reads the image's /etc/passwd and /etc/group inside the rootfs
//! (never following a symlink out of it) and has a few documented side effects, done only after
//! the whole input validated: the working directory is created in the rootfs if missing (owned
//! by the container user), missing CRI mount host paths are created as directories (as kubelet
//! and containerd do), and the image volumes get empty directories under `volumes_dir`.
//!
//! The security context is applied whole: seccomp (`seccomp/`: the built-in RuntimeDefault
//! profile, Localhost files), which profile applies (`profiles`), AppArmor and SELinux where the
//! host has them (`lsm`), capabilities with ambient ones (`caps`), masked and read-only paths,
//! users and groups (`user`), host devices for privileged containers (`devices`).
//!
//! Not done yet: copying an image's content at a VOLUME path into the new volume, and
//! containerd's check that the host path of a Bidirectional / HostToContainer mount sits on a
//! shared / slave mount (without it the propagation silently doesn't happen).

mod annotations;
mod caps;
mod cdi;
mod config;
mod defaults;
mod devices;
mod error;
mod image;
mod lsm;
mod mounts;
mod namespaces;
// getrlimit(RLIMIT_NOFILE): berthd's own hard limit caps a container's.
#[allow(unsafe_code)]
mod process;
mod profiles;
mod resources;
mod rootfs;
mod seccomp;
mod user;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::runtime::{LinuxBuilder, ProcessBuilder, RootBuilder, Spec, UserBuilder};

pub use config::*;
pub use defaults::DEFAULT_CAPABILITIES;
pub use error::SpecError;
pub use image::ImageConfig;
pub use lsm::{APPARMOR_DEFAULT_PROFILE, HostLsm, SelinuxLabels, SelinuxOptions};
pub use mounts::RECURSIVE_READ_ONLY;
pub use process::oom_score_adj_clamped;
pub use profiles::{
    ProfileRequest, SeccompDefault, SeccompRequest, apparmor_request, parse_seccomp_path,
    pod_seccomp, seccomp_path_form, select_seccomp,
};
pub use resources::linux_resources;
pub use user::ResolvedUser;

/// What the container takes from its pod.
#[derive(Debug, Clone, Default)]
pub struct SandboxInfo<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    /// Pinned namespace files of the pod; None = the host's namespace (host network/IPC/UTS).
    pub netns: Option<&'a Path>,
    pub ipcns: Option<&'a Path>,
    pub utsns: Option<&'a Path>,
    /// The pod's shared PID namespace (`/proc/<berth-init pid>/ns/pid`), used for PidMode::Pod.
    pub pid_ns: Option<&'a Path>,
    /// PidMode::Target: the target container's pid namespace path (`/proc/<pid>/ns/pid`),
    /// resolved by the caller.
    pub target_pid_ns: Option<&'a Path>,
    /// Set as `hostname` (with a UTS namespace of the pod's) and as `HOSTNAME` in the env.
    pub hostname: &'a str,
    /// Files prepared by the sandbox: bind-mounted at /etc/resolv.conf (None: don't mount),
    /// /etc/hosts, /etc/hostname.
    pub resolv_conf: Option<&'a Path>,
    pub hosts: Option<&'a Path>,
    pub hostname_file: Option<&'a Path>,
    /// The pod's /dev/shm (a tmpfs dir); None = give the container its own 64 MiB tmpfs.
    pub shm: Option<&'a Path>,
    /// runc's linux.cgroupsPath for this container (already computed by the caller), or None
    /// for runc's default.
    pub cgroups_path: Option<String>,
    // Pod-level sysctls are already applied to the pod namespaces; nothing to do for them here.
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct SpecInput<'a> {
    pub container_id: &'a str,
    pub config: &'a ContainerConfig,
    pub image: &'a ImageConfig,
    /// The image name for annotations (the resolved reference, e.g.
    /// "127.0.0.1:5000/berth-test/busybox:latest").
    pub image_name: &'a str,
    /// The container's root filesystem, already mounted (overlay). Read for /etc/passwd and
    /// /etc/group; the working dir is created in it.
    pub rootfs: &'a Path,
    /// A directory owned by this container where empty dirs for image VOLUMEs not covered by a
    /// CRI mount are created (`<volumes_dir>/<sanitized path>-<hash>`), bind-mounted into the
    /// container.
    pub volumes_dir: &'a Path,
    pub sandbox: SandboxInfo<'a>,
    /// Whether the host's cgroup layout is unified (v2 only): /sys/fs/cgroup is then mounted as
    /// cgroup2 and the container gets a cgroup namespace; else as "cgroup" type (runc mounts
    /// the v1 hierarchies).
    pub cgroup_unified: bool,
}

/// The spec, and what the caller needs to know about it.
#[derive(Debug, Clone)]
pub struct BuiltSpec {
    pub spec: Spec,
    pub user: ResolvedUser,
    /// The image's STOPSIGNAL, SIGTERM by default.
    pub stop_signal: i32,
}

/// Builds the spec. Input errors (the request's or the image's, e.g.
/// [`SpecError::UnknownUser`], [`SpecError::InvalidMount`]) come before any side effect. Side effects: creates the
/// working dir inside the rootfs if missing (owned by the container user), creates missing CRI
/// mount host paths as directories, creates the volume dirs under `volumes_dir`.
pub fn build(input: &SpecInput) -> Result<BuiltSpec, SpecError> {
    let config = input.config;
    let security = &config.security;
    if !input.rootfs.is_absolute() {
        return Err(SpecError::RelativeRootfs(input.rootfs.to_path_buf()));
    }

    // Everything that can be wrong with the input, before touching anything.
    let args = process::args(config, input.image)?;
    let env = process::env(config, input.image, input.sandbox.hostname)?;
    let cwd = process::cwd(config, input.image)?;
    let user = user::resolve(input.rootfs, security, &input.image.user, input.image_name)?;
    let stop_signal = match config.stop_signal {
        Some(signal) => signal,
        None => input.image.stop_signal_number()?,
    };
    let oom = config.resources.oom_score_adj;
    if !(-1000..=1000).contains(&oom) {
        return Err(SpecError::OomScoreAdjOutOfRange(oom));
    }
    let capabilities = caps::capabilities(security)?;
    // Privileged containers run unconfined (as in containerd and CRI-O). The capability-gated
    // parts of a profile follow the bounding set, as containerd does.
    let seccomp = if security.privileged {
        None
    } else {
        let no_caps = oci_spec::runtime::Capabilities::new();
        let bounding = capabilities.bounding().as_ref().unwrap_or(&no_caps);
        seccomp::linux_seccomp(&security.seccomp, bounding)?
    };
    let namespaces =
        namespaces::namespaces(&input.sandbox, &security.pid_mode, input.cgroup_unified)?;
    let devices = devices::devices(&config.devices, security.privileged)?;
    let mut resources = linux_resources(&config.resources)?;
    resources.set_devices(Some(devices.rules));

    // Side effects.
    let mounts = mounts::plan(input)?;
    process::create_cwd(input.rootfs, &cwd, &user)?;

    let process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids.clone())
                .build()?,
        )
        .args(args)
        .env(env)
        .cwd(cwd)
        .capabilities(capabilities)
        .rlimits(process::rlimits()?)
        .no_new_privileges(security.no_new_privs)
        .oom_score_adj(oom_score_adj_clamped(oom))
        .build()?;
    let mut process = process;
    if !security.privileged {
        process.set_apparmor_profile(security.apparmor_profile.clone());
        process.set_selinux_label(security.selinux_labels.as_ref().map(|l| l.process.clone()));
    }

    // Privileged containers get neither list (CRI: sensitive paths are not masked).
    let (masked, readonly): (Vec<String>, Vec<String>) = if security.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            proc_paths(&security.masked_paths, &defaults::MASKED_PATHS, "masked")?,
            proc_paths(
                &security.readonly_paths,
                &defaults::READONLY_PATHS,
                "read-only",
            )?,
        )
    };
    let mut linux = LinuxBuilder::default()
        .resources(resources)
        .namespaces(namespaces)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .build()?;
    linux.set_cgroups_path(input.sandbox.cgroups_path.as_ref().map(Into::into));
    linux.set_devices((!devices.devices.is_empty()).then_some(devices.devices));
    linux.set_rootfs_propagation(mounts.rootfs_propagation);
    linux.set_sysctl(None);
    linux.set_seccomp(seccomp);
    if !security.privileged {
        linux.set_mount_label(security.selinux_labels.as_ref().map(|l| l.mount.clone()));
    }

    let mut spec = Spec::default();
    spec.set_root(Some(
        RootBuilder::default()
            .path(input.rootfs)
            .readonly(security.readonly_rootfs)
            .build()?,
    ));
    spec.set_mounts(Some(mounts.mounts));
    spec.set_process(Some(process));
    // runc refuses a hostname without a UTS namespace of the container's (or pod's) own.
    let hostname = input.sandbox.hostname;
    spec.set_hostname(
        (input.sandbox.utsns.is_some() && !hostname.is_empty()).then(|| hostname.into()),
    );
    spec.set_domainname(None);
    spec.set_hooks(None);
    spec.set_annotations(Some(annotations::annotations(input)));
    spec.set_linux(Some(linux));
    // CDI devices last: their edits override what Berth set (env, nodes, mounts).
    cdi::apply(&mut spec, &config.cdi.edits)?;

    Ok(BuiltSpec {
        spec,
        user,
        stop_signal,
    })
}

/// The request's masked or read-only paths (`None`: Berth's defaults); each must be absolute.
fn proc_paths(
    requested: &Option<Vec<String>>,
    defaults: &[&str],
    what: &str,
) -> Result<Vec<String>, SpecError> {
    let Some(paths) = requested else {
        return Ok(defaults.iter().map(|p| p.to_string()).collect());
    };
    for p in paths {
        if !p.starts_with('/') || p.contains('\0') {
            return Err(SpecError::InvalidMount(format!(
                "{what} path {p:?} is not an absolute path"
            )));
        }
    }
    Ok(paths.clone())
}

/// Writes `spec` as `<bundle>/config.json`: to a temporary file first, fsynced, then renamed
/// over, so a crash never leaves a half-written config for runc. Mode 0600: the env may hold
/// secrets.
pub fn write_bundle_config(bundle: &Path, spec: &Spec) -> Result<(), SpecError> {
    let data = serde_json::to_vec(spec).map_err(SpecError::Serialize)?;
    let tmp = bundle.join(".config.json.tmp");
    let dest = bundle.join("config.json");
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &dest)?;
        // The rename itself must survive a crash too.
        fs::File::open(bundle)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        SpecError::io(format!("writing {}", dest.display()), e)
    })
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
