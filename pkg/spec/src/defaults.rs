//! The fixed parts of every spec: containerd's and runc's defaults.

/// `PATH` for a container whose image and request give none (containerd's and docker's default).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// RLIMIT_NOFILE soft and hard limit, containerd's default. Clamped to berthd's own hard limit
/// when berthd cannot raise it (see `process::rlimits`).
pub(crate) const NOFILE_LIMIT: u64 = 1_048_576;

/// The capabilities an unprivileged container gets (containerd's and docker's default set). They
/// go into the bounding, effective and permitted sets; not inheritable nor ambient, as in
/// containerd 1.7+, so that a non-root process or an `exec` of a file without file capabilities
/// does not keep them.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability oci-spec 0.10 knows, without the `CAP_` prefix (its `Capability` enum has no
/// iterator).
pub(crate) const ALL_CAPABILITIES: [&str; 41] = [
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETGID",
    "SETFCAP",
    "SETPCAP",
    "SETUID",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "SYSLOG",
    "WAKE_ALARM",
];

/// The kernel's number of each entry of [`ALL_CAPABILITIES`] (linux/capability.h), to compare
/// with berthd's own capability mask in /proc/self/status.
pub(crate) fn capability_number(name: &str) -> Option<u32> {
    Some(match name {
        "CHOWN" => 0,
        "DAC_OVERRIDE" => 1,
        "DAC_READ_SEARCH" => 2,
        "FOWNER" => 3,
        "FSETID" => 4,
        "KILL" => 5,
        "SETGID" => 6,
        "SETUID" => 7,
        "SETPCAP" => 8,
        "LINUX_IMMUTABLE" => 9,
        "NET_BIND_SERVICE" => 10,
        "NET_BROADCAST" => 11,
        "NET_ADMIN" => 12,
        "NET_RAW" => 13,
        "IPC_LOCK" => 14,
        "IPC_OWNER" => 15,
        "SYS_MODULE" => 16,
        "SYS_RAWIO" => 17,
        "SYS_CHROOT" => 18,
        "SYS_PTRACE" => 19,
        "SYS_PACCT" => 20,
        "SYS_ADMIN" => 21,
        "SYS_BOOT" => 22,
        "SYS_NICE" => 23,
        "SYS_RESOURCE" => 24,
        "SYS_TIME" => 25,
        "SYS_TTY_CONFIG" => 26,
        "MKNOD" => 27,
        "LEASE" => 28,
        "AUDIT_WRITE" => 29,
        "AUDIT_CONTROL" => 30,
        "SETFCAP" => 31,
        "MAC_OVERRIDE" => 32,
        "MAC_ADMIN" => 33,
        "SYSLOG" => 34,
        "WAKE_ALARM" => 35,
        "BLOCK_SUSPEND" => 36,
        "AUDIT_READ" => 37,
        "PERFMON" => 38,
        "BPF" => 39,
        "CHECKPOINT_RESTORE" => 40,
        _ => return None,
    })
}

/// Paths runc hides from an unprivileged container (containerd's defaults): they leak host
/// information or allow attacks on the host kernel.
pub(crate) const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths runc makes read-only in an unprivileged container (containerd's defaults).
pub(crate) const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// containerd's default device cgroup allow list (`WithDefaultUnixDevices`), after a deny-all
/// rule: (type, major, minor; None = any). runc adds its own list on top.
pub(crate) const DEFAULT_ALLOWED_DEVICES: [(char, i64, Option<i64>); 10] = [
    ('c', 1, Some(3)),    // /dev/null
    ('c', 1, Some(8)),    // /dev/random
    ('c', 1, Some(7)),    // /dev/full
    ('c', 5, Some(0)),    // /dev/tty
    ('c', 1, Some(5)),    // /dev/zero
    ('c', 1, Some(9)),    // /dev/urandom
    ('c', 5, Some(1)),    // /dev/console
    ('c', 136, None),     // /dev/pts/*
    ('c', 5, Some(2)),    // /dev/ptmx
    ('c', 10, Some(200)), // /dev/net/tun
];

/// Reads one capability mask (`CapEff`, `CapBnd`...) of berthd from /proc/self/status. None when
/// it cannot be read, so callers fall back to not restricting anything.
pub(crate) fn own_capability_mask(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_capability_mask(&status, field)
}

fn parse_capability_mask(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        u64::from_str_radix(rest.trim(), 16).ok()
    })
}

/// Whether berthd (and so runc, which it starts) has `cap`: used to avoid asking runc for things
/// it will be refused (raising a hard rlimit, lowering oom_score_adj, granting capabilities).
pub(crate) fn own_effective_capability(cap: &str) -> Option<bool> {
    let mask = own_capability_mask("CapEff")?;
    let bit = capability_number(cap)?;
    Some(mask & (1u64 << bit) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn every_known_capability_parses_and_has_a_number() {
        for name in ALL_CAPABILITIES {
            assert!(
                oci_spec::runtime::Capability::from_str(name).is_ok(),
                "{name}"
            );
            assert!(capability_number(name).is_some(), "{name}");
        }
        for name in DEFAULT_CAPABILITIES {
            let short = name.trim_start_matches("CAP_");
            assert!(ALL_CAPABILITIES.contains(&short), "{name}");
        }
    }

    #[test]
    fn parses_capability_masks() {
        let status = "Name:\tx\nCapPrm:\t000001fffeffffff\nCapEff:\t0000000000000021\n";
        assert_eq!(parse_capability_mask(status, "CapEff"), Some(0x21));
        assert_eq!(parse_capability_mask(status, "CapPrm"), Some(0x1fffeffffff));
        assert_eq!(parse_capability_mask(status, "CapBnd"), None);
    }
}
