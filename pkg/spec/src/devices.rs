//! `linux.devices` and the device cgroup rules: containerd's defaults plus the CRI devices.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
};

use crate::defaults::DEFAULT_ALLOWED_DEVICES;
use crate::rootfs::clean_absolute;
use crate::{Device, SpecError};

/// How deep a device directory is searched (`/dev/dri/by-path/...` is two levels).
const MAX_DEPTH: usize = 8;

/// Directories containerd never descends into when a whole device directory is requested.
const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Host devices a privileged container does not get as nodes (runc provides them).
const HOST_DEVICES_SKIPPED: [&str; 2] = ["/dev/console", "/dev/ptmx"];

#[derive(Debug)]
pub(crate) struct DeviceSetup {
    pub devices: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

/// The device nodes to create and the cgroup rules: deny everything, allow containerd's default
/// list, then each CRI device. Privileged: a single allow-all rule and every device node of the
/// host's /dev (containerd's `WithHostDevices`), then the CRI devices.
pub(crate) fn devices(requested: &[Device], privileged: bool) -> Result<DeviceSetup, SpecError> {
    devices_with_host(requested, privileged.then_some(Path::new("/dev")))
}

/// [`devices`] with the host's /dev elsewhere (tests).
fn devices_with_host(
    requested: &[Device],
    host_dev: Option<&Path>,
) -> Result<DeviceSetup, SpecError> {
    let privileged = host_dev.is_some();
    let mut rules = if privileged {
        vec![rule(true, LinuxDeviceType::A, None, None, "rwm")?]
    } else {
        let mut r = vec![rule(false, LinuxDeviceType::A, None, None, "rwm")?];
        for (typ, major, minor) in DEFAULT_ALLOWED_DEVICES {
            let typ = if typ == 'b' {
                LinuxDeviceType::B
            } else {
                LinuxDeviceType::C
            };
            r.push(rule(true, typ, Some(major), minor, "rwm")?);
        }
        r
    };
    let mut devices = Vec::new();
    if let Some(dev) = host_dev {
        collect(dev, Path::new("/dev"), 0, &mut devices)?;
        // runc sets these up itself: /dev/console for a terminal, /dev/ptmx from devpts.
        devices.retain(|d| {
            !HOST_DEVICES_SKIPPED
                .iter()
                .any(|s| d.path() == Path::new(s))
        });
    }
    for d in requested {
        let container_path = clean_absolute(&d.container_path).ok_or_else(|| {
            SpecError::InvalidDevice(format!(
                "device container path {:?} is not absolute",
                d.container_path
            ))
        })?;
        let permissions = permissions(&d.permissions)?;
        let host = fs::canonicalize(&d.host_path).map_err(|e| SpecError::DeviceNotFound {
            host_path: d.host_path.clone(),
            source: e,
        })?;
        let mut found = Vec::new();
        collect(&host, &container_path, 0, &mut found)?;
        if found.is_empty() && !host.is_dir() {
            return Err(SpecError::InvalidDevice(format!(
                "{:?} is not a device node",
                d.host_path
            )));
        }
        for dev in found {
            // A requested device replaces a host device at the same path.
            devices.retain(|d| d.path() != dev.path());
            if !privileged {
                rules.push(rule(
                    true,
                    dev.typ(),
                    Some(dev.major()),
                    Some(dev.minor()),
                    &permissions,
                )?);
            }
            devices.push(dev);
        }
    }
    Ok(DeviceSetup { devices, rules })
}

/// The device at `host` (container path `dest`), or every device below it if it is a directory.
/// Other files inside a directory are skipped; symlinks are not followed there.
fn collect(
    host: &Path,
    dest: &Path,
    depth: usize,
    out: &mut Vec<LinuxDevice>,
) -> Result<(), SpecError> {
    let meta = fs::symlink_metadata(host)
        .map_err(|e| SpecError::io(format!("inspecting {}", host.display()), e))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        let entries = fs::read_dir(host)
            .map_err(|e| SpecError::io(format!("listing {}", host.display()), e))?;
        let mut names: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let entry =
                entry.map_err(|e| SpecError::io(format!("listing {}", host.display()), e))?;
            names.push(entry.file_name().into());
        }
        names.sort();
        for name in names {
            if SKIPPED_DIRS.iter().any(|s| name.as_os_str() == *s) {
                continue;
            }
            collect(&host.join(&name), &dest.join(&name), depth + 1, out)?;
        }
        return Ok(());
    }
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(());
    };
    let rdev = meta.rdev();
    out.push(
        LinuxDeviceBuilder::default()
            .path(dest)
            .typ(typ)
            .major(nix::sys::stat::major(rdev) as i64)
            .minor(nix::sys::stat::minor(rdev) as i64)
            .file_mode(meta.mode() & 0o7777)
            .uid(0u32)
            .gid(0u32)
            .build()?,
    );
    Ok(())
}

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    Ok(b.build()?)
}

/// Any of `r`, `w`, `m`; empty means `rwm`.
fn permissions(p: &str) -> Result<String, SpecError> {
    if p.is_empty() {
        return Ok("rwm".into());
    }
    if p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(p.to_string())
    } else {
        Err(SpecError::InvalidDevice(format!(
            "invalid device permissions {p:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(host: &str, container: &str, perms: &str) -> Device {
        Device {
            container_path: container.into(),
            host_path: host.into(),
            permissions: perms.into(),
        }
    }

    #[test]
    fn default_rules_deny_then_allow() {
        let s = devices(&[], false).unwrap();
        assert!(s.devices.is_empty());
        assert_eq!(s.rules.len(), 11);
        assert!(!s.rules[0].allow());
        assert_eq!(s.rules[0].typ(), Some(LinuxDeviceType::A));
        assert_eq!(s.rules[0].access().as_deref(), Some("rwm"));
        assert!(s.rules[1..].iter().all(|r| r.allow()));
        let pts = s.rules.iter().find(|r| r.major() == Some(136)).unwrap();
        assert_eq!(pts.minor(), None);
    }

    #[test]
    fn a_char_device_from_dev_null() {
        let s = devices(&[dev("/dev/null", "/dev/mynull", "rw")], false).unwrap();
        assert_eq!(s.devices.len(), 1);
        let d = &s.devices[0];
        assert_eq!(d.path(), Path::new("/dev/mynull"));
        assert_eq!(d.typ(), LinuxDeviceType::C);
        assert_eq!((d.major(), d.minor()), (1, 3));
        assert_eq!(d.file_mode(), Some(0o666));
        assert_eq!((d.uid(), d.gid()), (Some(0), Some(0)));
        let last = s.rules.last().unwrap();
        assert!(last.allow());
        assert_eq!((last.major(), last.minor()), (Some(1), Some(3)));
        assert_eq!(last.access().as_deref(), Some("rw"));
        // Default permissions.
        let s = devices(&[dev("/dev/null", "/dev/null", "")], false).unwrap();
        assert_eq!(s.rules.last().unwrap().access().as_deref(), Some("rwm"));
    }

    #[test]
    fn a_directory_of_devices() {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::create_dir_all(d.join("pts")).unwrap();
        let null = makedev(1, 3);
        mknod(
            &d.join("sub/null"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o640),
            null,
        )
        .unwrap();
        mknod(
            &d.join("pts/0"),
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            null,
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/null", d.join("link")).unwrap();
        fs::write(d.join("file"), "").unwrap();
        let s = devices(&[dev(d.to_str().unwrap(), "/dev/x", "r")], false).unwrap();
        // Only sub/null: pts is skipped, symlinks and files are not devices.
        assert_eq!(s.devices.len(), 1);
        assert_eq!(s.devices[0].path(), Path::new("/dev/x/sub/null"));
        assert_eq!(s.devices[0].file_mode(), Some(0o640));
        assert_eq!(s.rules.last().unwrap().access().as_deref(), Some("r"));
    }

    #[test]
    fn bad_devices_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        fs::write(&file, "").unwrap();
        for d in [
            dev("/nonexistent/dev", "/dev/x", ""),
            dev("/dev/null", "dev/x", ""),
            dev("/dev/null", "/dev/x", "rx"),
            dev(file.to_str().unwrap(), "/dev/x", ""),
        ] {
            assert!(matches!(
                devices(&[d], false),
                Err(SpecError::InvalidDevice(_) | SpecError::DeviceNotFound { .. })
            ));
        }
    }

    #[test]
    fn privileged_allows_all_and_gets_the_host_devices() {
        let s = devices(&[dev("/dev/null", "/dev/n", "r")], true).unwrap();
        assert_eq!(s.rules.len(), 1);
        assert!(s.rules[0].allow());
        assert_eq!(s.rules[0].typ(), Some(LinuxDeviceType::A));
        let paths: Vec<&Path> = s.devices.iter().map(|d| d.path().as_path()).collect();
        for want in ["/dev/n", "/dev/null", "/dev/zero", "/dev/full"] {
            assert!(paths.contains(&Path::new(want)), "{want} in {paths:?}");
        }
        assert!(!paths.contains(&Path::new("/dev/console")));
        assert!(!paths.contains(&Path::new("/dev/ptmx")));
        assert!(!paths.iter().any(|p| p.starts_with("/dev/pts")));
        // A requested device at a host device's path replaces it.
        let s = devices(&[dev("/dev/zero", "/dev/null", "r")], true).unwrap();
        let null: Vec<_> = s
            .devices
            .iter()
            .filter(|d| d.path() == Path::new("/dev/null"))
            .collect();
        assert_eq!(null.len(), 1);
        assert_eq!((null[0].major(), null[0].minor()), (1, 5));
        // Unprivileged: no host devices.
        assert!(devices_with_host(&[], None).unwrap().devices.is_empty());
    }
}
