//! What the profile's conditions are evaluated against: the native architecture (in libseccomp's
//! and in Go's naming, since Docker's `includes.arches` use Go's `GOARCH` names) and the running
//! kernel's version. Both are fixed for the life of the process, so they are computed once.

use std::ffi::CStr;
use std::sync::OnceLock;

use oci_spec::runtime::Arch;

/// A kernel version as `minKernel` compares it: major and minor only, as moby does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    /// `4.8`, or a uname release such as `6.18.44-fc-v1272` (anything after the minor number
    /// is ignored). None when it doesn't start with `<major>.<minor>`.
    pub(crate) fn parse(s: &str) -> Option<KernelVersion> {
        let mut parts = s.trim().splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor_part = parts.next()?;
        let digits = minor_part
            .find(|c: char| !c.is_ascii_digit())
            .map_or(minor_part, |end| &minor_part[..end]);
        let minor = digits.parse().ok()?;
        Some(KernelVersion { major, minor })
    }
}

/// The machine the container runs on.
#[derive(Debug, Clone)]
pub(crate) struct Host {
    /// libseccomp's name of the native architecture; None for one it has no name for (the
    /// profile's `archMap` then selects nothing and runc uses the native one).
    pub arch: Option<Arch>,
    /// Go's `GOARCH` for the same machine: Docker-format `includes.arches` / `excludes.arches`
    /// name architectures this way (`amd64`, `arm64`...).
    pub go_arch: &'static str,
    /// None when uname's release could not be parsed: then no `minKernel` condition holds.
    pub kernel: Option<KernelVersion>,
    /// Whether the kernel runs x32 syscalls (x86_64 kernels built with `CONFIG_X86_X32_ABI` and
    /// not booted with it disabled). False only when a probe showed it doesn't; then no process
    /// can make an x32 syscall do anything, and the built-in filter leaves `SCMP_ARCH_X32` out.
    pub x32: bool,
}

/// The running machine, computed on first use.
pub(crate) fn current() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let (arch, go_arch) = native_arch();
        Host {
            arch,
            go_arch,
            kernel: kernel_release().as_deref().and_then(KernelVersion::parse),
            x32: x32_runs(),
        }
    })
}

/// The architecture this binary was built for, which is the one its containers' processes
/// (normally) use.
fn native_arch() -> (Option<Arch>, &'static str) {
    if cfg!(target_arch = "x86_64") {
        (Some(Arch::ScmpArchX86_64), "amd64")
    } else if cfg!(target_arch = "x86") {
        (Some(Arch::ScmpArchX86), "386")
    } else if cfg!(target_arch = "aarch64") {
        (Some(Arch::ScmpArchAarch64), "arm64")
    } else if cfg!(target_arch = "arm") {
        (Some(Arch::ScmpArchArm), "arm")
    } else if cfg!(target_arch = "s390x") {
        (Some(Arch::ScmpArchS390x), "s390x")
    } else if cfg!(target_arch = "riscv64") {
        (Some(Arch::ScmpArchRiscv64), "riscv64")
    } else if cfg!(target_arch = "loongarch64") {
        (Some(Arch::ScmpArchLoongarch64), "loong64")
    } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
        (Some(Arch::ScmpArchPpc64le), "ppc64le")
    } else if cfg!(target_arch = "powerpc64") {
        (Some(Arch::ScmpArchPpc64), "ppc64")
    } else if cfg!(all(target_arch = "mips64", target_endian = "little")) {
        (Some(Arch::ScmpArchMipsel64), "mips64le")
    } else if cfg!(target_arch = "mips64") {
        (Some(Arch::ScmpArchMips64), "mips64")
    } else {
        (None, std::env::consts::ARCH)
    }
}

/// Whether an x32 syscall reaches the kernel's x32 table: `getpid` with the x32 bit
/// (`__X32_SYSCALL_BIT`, 0x40000000) returns our pid when it does, and fails with ENOSYS when the
/// kernel has no x32 ABI. True (what the filter assumed before the probe existed) wherever the
/// answer isn't certain: another architecture (no x32 there, but no `SCMP_ARCH_X32` either), an
/// unexpected answer, or this thread already running under a seccomp filter, which might kill it
/// for an x32 syscall (libseccomp's action for an architecture it wasn't given).
fn x32_runs() -> bool {
    if !cfg!(target_arch = "x86_64") || !unconfined() {
        return true;
    }
    const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
    // SAFETY: getpid takes no argument and changes nothing; with the x32 bit it is either x32's
    // getpid or an unknown syscall, and this thread has no seccomp filter to act on it.
    let ret = unsafe { libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    !(ret == -1 && errno == Some(libc::ENOSYS))
}

/// Whether this thread runs without any seccomp filter (`Seccomp: 0` in its status).
fn unconfined() -> bool {
    std::fs::read_to_string("/proc/thread-self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|l| l.strip_prefix("Seccomp:").is_some_and(|m| m.trim() == "0"))
    })
}

/// uname(2)'s release, e.g. `6.1.0-18-amd64`.
fn kernel_release() -> Option<String> {
    // SAFETY: utsname is plain old data for which all-zero bytes are valid, and uname only
    // writes NUL-terminated strings into the struct we own.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes only into `uts`, which lives for the call.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return None;
    }
    // SAFETY: on success the kernel filled `release` with a NUL-terminated string, and the
    // array is still borrowed from `uts` for the conversion.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    Some(release.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        let v = |major, minor| Some(KernelVersion { major, minor });
        assert_eq!(KernelVersion::parse("4.8"), v(4, 8));
        assert_eq!(KernelVersion::parse("6.18.44-fc-v1272"), v(6, 18));
        assert_eq!(KernelVersion::parse("5.10-rc1"), v(5, 10));
        assert_eq!(KernelVersion::parse(" 3.13 "), v(3, 13));
        for bad in ["", "4", "four.8", "4.", "4.x"] {
            assert_eq!(KernelVersion::parse(bad), None, "{bad:?}");
        }
        assert!(KernelVersion::parse("4.10") > KernelVersion::parse("4.9"));
    }

    #[test]
    fn the_running_host_is_known() {
        let host = current();
        assert!(host.kernel.is_some(), "{host:?}");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host.arch, Some(Arch::ScmpArchX86_64));
            assert_eq!(host.go_arch, "amd64");
        } else {
            // Nothing to probe: X32 is only ever a sub-architecture of x86_64.
            assert!(host.x32);
        }
    }

    /// The probe agrees with the kernel's configuration where that is readable (it isn't on
    /// every machine: /proc/config.gz needs CONFIG_IKCONFIG_PROC, /boot may be absent).
    #[test]
    fn the_x32_probe_agrees_with_the_kernel_config() {
        if !cfg!(target_arch = "x86_64") || !unconfined() {
            return;
        }
        let release = kernel_release().unwrap();
        let config = std::fs::read_to_string(format!("/boot/config-{release}"))
            .ok()
            .or_else(|| {
                let out = std::process::Command::new("zcat")
                    .arg("/proc/config.gz")
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
            });
        let Some(config) = config else {
            eprintln!("no kernel config to compare with");
            return;
        };
        if !config.lines().any(|l| l == "CONFIG_X86_X32_ABI=y") {
            assert!(!x32_runs(), "the kernel has no x32 ABI");
        } else if !std::fs::read_to_string("/proc/cmdline")
            .unwrap()
            .contains("x32")
        {
            assert!(x32_runs(), "the kernel has the x32 ABI");
        }
    }
}
