//! validate_sysctls / normalize_sysctl_name tables (no privileges needed).

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use berth_namespace::{NamespaceError, normalize_sysctl_name, validate_sysctls};

fn check(name: &str, value: &str, new_net: bool, new_ipc: bool) -> Result<(), NamespaceError> {
    validate_sysctls(
        &BTreeMap::from([(name.to_owned(), value.to_owned())]),
        new_net,
        new_ipc,
    )
}

#[test]
fn namespaced_sysctls_are_accepted() {
    for name in [
        "kernel.shm_rmid_forced",
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "fs.mqueue.msg_max",
        "fs/mqueue/queues_max",
        "net.ipv4.ip_forward",
        "net/ipv4/ip_forward",
        "net.ipv4.ping_group_range",
        "net.ipv4.conf.eno2/100.rp_filter",
        "net/ipv4/conf/eno2.100/rp_filter",
        "net.core.somaxconn",
    ] {
        check(name, "1", true, true).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    check("net.ipv4.ping_group_range", "0 2147483647", true, false).expect("value with space");
}

#[test]
fn refused_sysctls() {
    // (name, value, new_net, new_ipc, reason fragment)
    let cases = [
        ("kernel.panic", "1", true, true, "not a namespaced"),
        ("vm.swappiness", "1", true, true, "not a namespaced"),
        ("kernel.semfoo", "1", true, true, "not a namespaced"),
        ("fs.mqueue", "1", true, true, "not a namespaced"),
        ("net.ipv4.ip_forward", "1", false, true, "host network"),
        ("net/ipv4/ip_forward", "1", false, true, "host network"),
        ("kernel.shmmni", "1", true, false, "host IPC"),
        ("kernel.sem", "1", true, false, "host IPC"),
        ("fs.mqueue.msg_max", "1", true, false, "host IPC"),
        ("", "1", true, true, "empty name"),
        ("net..ipv4", "1", true, true, ".."),
        ("net/ipv4/../../kernel/panic", "1", true, true, ".."),
        ("net.ipv4.", "1", true, true, "empty name component"),
        (".net.ipv4", "1", true, true, "empty name component"),
        ("net.ipv4./.x", "1", true, true, "\".\" or \"..\""),
        ("net.ipv4.//.x", "1", true, true, "\".\" or \"..\""),
        ("net/ipv4/./x", "1", true, true, "\".\" or \"..\""),
        (
            "net.ipv4.ip forward",
            "1",
            true,
            true,
            "forbidden character",
        ),
        (
            "net.ipv4.ip_forward\n",
            "1",
            true,
            true,
            "forbidden character",
        ),
        ("net.ipv4.*", "1", true, true, "forbidden character"),
        ("net.ipv4.ip_forward", "1\n0", true, true, "newline"),
        ("net.ipv4.ip_forward", "1\0", true, true, "newline"),
        ("net.ipv4.ip_forward", "", true, true, "empty value"),
    ];
    for (name, value, net, ipc, why) in cases {
        match check(name, value, net, ipc) {
            Err(NamespaceError::InvalidSysctl { name: n, reason }) => {
                assert_eq!(n, name);
                assert!(
                    reason.contains(why),
                    "{name:?}: reason {reason:?} lacks {why:?}"
                );
                let e = NamespaceError::InvalidSysctl { name: n, reason };
                assert!(e.to_string().contains("invalid sysctl"));
            }
            other => {
                panic!("{name:?}={value:?} (net {net}, ipc {ipc}): expected refusal, got {other:?}")
            }
        }
    }
}

#[test]
fn two_spellings_of_one_sysctl() {
    let same = BTreeMap::from([
        ("net.ipv4.ip_forward".to_owned(), "1".to_owned()),
        ("net/ipv4/ip_forward".to_owned(), "1".to_owned()),
    ]);
    validate_sysctls(&same, true, false).expect("same value twice is fine");
    let conflicting = BTreeMap::from([
        ("net.ipv4.ip_forward".to_owned(), "1".to_owned()),
        ("net/ipv4/ip_forward".to_owned(), "0".to_owned()),
    ]);
    assert!(matches!(
        validate_sysctls(&conflicting, true, false),
        Err(NamespaceError::InvalidSysctl { .. })
    ));
}

#[test]
fn normalize_follows_kubelet() {
    for (input, want) in [
        ("net.ipv4.ip_forward", "net.ipv4.ip_forward"),
        ("net/ipv4/ip_forward", "net.ipv4.ip_forward"),
        (
            "net/ipv4/conf/eno2.100/rp_filter",
            "net.ipv4.conf.eno2/100.rp_filter",
        ),
        (
            "net.ipv4.conf.eno2/100.rp_filter",
            "net.ipv4.conf.eno2/100.rp_filter",
        ),
        ("kernel", "kernel"),
        ("", ""),
    ] {
        assert_eq!(normalize_sysctl_name(input), want, "{input}");
    }
}
