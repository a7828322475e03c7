//! The files a pod's containers get from their sandbox: /etc/resolv.conf, /etc/hosts,
//! /etc/hostname, and the shared /dev/shm tmpfs.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::config::DnsConfig;
use crate::error::SandboxError;

pub const RESOLV_CONF: &str = "resolv.conf";
pub const HOSTS: &str = "hosts";
pub const HOSTNAME: &str = "hostname";
pub const SHM: &str = "shm";
/// Docker's and containerd's default size for a pod's /dev/shm.
const SHM_SIZE: &str = "size=65536k";

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SandboxError + 'a {
    move |source| SandboxError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `dir/name` (mode 0644) through a temp file and a rename, so a container
/// never sees a half-written file.
fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, SandboxError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io("create", &tmp))?;
    file.write_all(contents.as_bytes())
        .map_err(io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("rename", &path))?;
    Ok(path)
}

pub fn create_dir(dir: &Path) -> Result<(), SandboxError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .map_err(io("create directory", dir))
}

/// Refuses DNS entries that would break (or inject lines into) resolv.conf.
pub fn check_dns(dns: &DnsConfig) -> Result<(), SandboxError> {
    for value in dns.servers.iter().chain(&dns.searches).chain(&dns.options) {
        if value.contains(['\n', '\r']) || value.trim().is_empty() {
            return Err(SandboxError::InvalidDnsEntry(value.clone()));
        }
    }
    Ok(())
}

/// The pod's resolv.conf: what the pod asked for, else the host's file as it is (kubelet's
/// "Default" DNS policy with no config).
pub fn resolv_conf(dns: Option<&DnsConfig>) -> Result<String, SandboxError> {
    let Some(dns) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        let host = Path::new("/etc/resolv.conf");
        return fs::read_to_string(host).or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(String::new()),
            _ => Err(io("read", host)(e)),
        });
    };
    check_dns(dns)?;
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out)
}

/// The pod's /etc/hosts: the host's for host-network pods, else localhost entries plus the pod's
/// own name on its IP (as kubelet's managed hosts file has it).
pub fn hosts(host_network: bool, hostname: &str, ips: &[String]) -> Result<String, SandboxError> {
    if host_network {
        let host = Path::new("/etc/hosts");
        return fs::read_to_string(host).map_err(io("read", host));
    }
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    for ip in ips {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    Ok(out)
}

/// Writes resolv.conf, hosts and hostname into `dir`.
pub fn write_pod_files(
    dir: &Path,
    dns: Option<&DnsConfig>,
    hostname: &str,
    host_network: bool,
    ips: &[String],
) -> Result<(), SandboxError> {
    write_file(dir, RESOLV_CONF, &resolv_conf(dns)?)?;
    write_file(dir, HOSTS, &hosts(host_network, hostname, ips)?)?;
    write_file(dir, HOSTNAME, &format!("{hostname}\n"))?;
    Ok(())
}

/// Mounts the pod's /dev/shm: a tmpfs its containers bind-mount, so they share POSIX shared memory
/// as the pod's IPC namespace promises.
pub fn mount_shm(dir: &Path) -> Result<PathBuf, SandboxError> {
    let shm = dir.join(SHM);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&shm)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Ok(()),
            _ => Err(io("create directory", &shm)(e)),
        })?;
    if is_mount_point(&shm) {
        return Ok(shm);
    }
    nix::mount::mount(
        Some("shm"),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .map_err(|e| SandboxError::Mount {
        path: shm.clone(),
        source: std::io::Error::from(e),
    })?;
    Ok(shm)
}

/// Unmounts the pod's /dev/shm if mounted; idempotent.
pub fn unmount_shm(shm: &Path) -> Result<(), SandboxError> {
    if !is_mount_point(shm) {
        return Ok(());
    }
    nix::mount::umount2(shm, MntFlags::MNT_DETACH).map_err(|e| SandboxError::Mount {
        path: shm.to_path_buf(),
        source: std::io::Error::from(e),
    })
}

/// Whether `path` is a mount point (its device differs from its parent's, or mountinfo lists it).
fn is_mount_point(path: &Path) -> bool {
    let Ok(mountinfo) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let wanted = path.to_string_lossy();
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mount_point| mount_point == wanted)
}

/// Removes the sandbox dir once nothing is mounted below it. A leftover mount makes this fail
/// rather than delete through it.
pub fn remove_dir(dir: &Path) -> Result<(), SandboxError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("remove", dir)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_pod_dns() {
        let dns = DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).unwrap(),
            "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
        let bad = DnsConfig {
            servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()],
            ..Default::default()
        };
        assert!(resolv_conf(Some(&bad)).is_err());
    }

    #[test]
    fn resolv_conf_defaults_to_the_hosts() {
        let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        assert_eq!(resolv_conf(None).unwrap(), host);
        assert_eq!(resolv_conf(Some(&DnsConfig::default())).unwrap(), host);
    }

    #[test]
    fn hosts_names_the_pod() {
        let hosts = hosts(false, "web-0", &["10.88.0.5".into()]).unwrap();
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(hosts.ends_with("10.88.0.5\tweb-0\n"));
    }
}
