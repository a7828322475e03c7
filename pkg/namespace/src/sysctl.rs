//! Pod sysctls: validation (Kubernetes' namespaced-sysctl rule) and application through
//! `/proc/sys` from the thread that owns the new namespaces.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::NamespaceError;

/// Longest sysctl name accepted; real ones are far shorter (interface names are ≤ 15 bytes).
const MAX_NAME_LEN: usize = 256;
/// Longest value accepted; `/proc/sys` writes are limited to a page anyway.
const MAX_VALUE_LEN: usize = 4096;

/// Which namespace a sysctl belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Net,
    Ipc,
}

/// A validated sysctl, ready to be written.
#[derive(Debug, Clone)]
pub(crate) struct Sysctl {
    /// Canonical dotted name (kubelet's `NormalizeName` form), for messages.
    pub(crate) name: String,
    /// `/proc/sys/...` path.
    pub(crate) path: PathBuf,
    pub(crate) value: String,
}

/// Kubelet's `NormalizeName`: returns the dotted form of a sysctl name.
///
/// Both `.` and `/` are accepted as separators; whichever appears *first* is the separator and
/// the other one stands for a literal dot inside a component (an interface name such as
/// `eno2.100`). So `net/ipv4/conf/eno2.100/rp_filter` becomes `net.ipv4.conf.eno2/100.rp_filter`
/// and a dotted name is returned unchanged.
pub fn normalize_sysctl_name(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => name.to_owned(),
    }
}

/// Checks that every sysctl may be set for a pod.
///
/// Follows kubelet's rule (`NamespacedBy`): only sysctls namespaced by the kernel are allowed,
/// i.e. `kernel.sem`, `kernel.shm*`, `kernel.msg*`, `fs.mqueue.*` (IPC namespace; refused unless
/// `new_ipc`) and `net.*` (network namespace; refused unless `new_net`). In addition names must
/// not contain `..`, empty components or anything that could leave `/proc/sys`, values must be
/// non-empty and free of newlines and NUL, and two spellings of the same sysctl
/// (`net.ipv4.ip_forward` and `net/ipv4/ip_forward`) must not ask for different values.
pub fn validate_sysctls(
    sysctls: &BTreeMap<String, String>,
    new_net: bool,
    new_ipc: bool,
) -> Result<(), NamespaceError> {
    prepare(sysctls, new_net, new_ipc).map(drop)
}

/// Validates and resolves the sysctls to `/proc/sys` paths.
pub(crate) fn prepare(
    sysctls: &BTreeMap<String, String>,
    new_net: bool,
    new_ipc: bool,
) -> Result<Vec<Sysctl>, NamespaceError> {
    let mut out: Vec<Sysctl> = Vec::with_capacity(sysctls.len());
    for (raw, value) in sysctls {
        let s = prepare_one(raw, value, new_net, new_ipc)?;
        if let Some(prev) = out.iter().find(|p| p.name == s.name) {
            if prev.value != s.value {
                return Err(invalid(
                    raw,
                    format!(
                        "given twice as {:?} with different values ({:?} and {:?})",
                        s.name, prev.value, s.value
                    ),
                ));
            }
            continue;
        }
        out.push(s);
    }
    Ok(out)
}

fn invalid(name: &str, reason: impl Into<String>) -> NamespaceError {
    NamespaceError::InvalidSysctl {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

fn prepare_one(
    raw: &str,
    value: &str,
    new_net: bool,
    new_ipc: bool,
) -> Result<Sysctl, NamespaceError> {
    if raw.is_empty() {
        return Err(invalid(raw, "empty name"));
    }
    if raw.len() > MAX_NAME_LEN {
        return Err(invalid(
            raw,
            format!("name longer than {MAX_NAME_LEN} bytes"),
        ));
    }
    if raw.contains("..") {
        return Err(invalid(raw, "name contains \"..\""));
    }
    if let Some(c) = raw
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || matches!(c, '*' | '?' | '['))
    {
        return Err(invalid(
            raw,
            format!("name contains forbidden character {c:?}"),
        ));
    }
    let name = normalize_sysctl_name(raw);
    let mut path = PathBuf::from("/proc/sys");
    for comp in name.split('.') {
        // In the dotted form a '/' inside a component is a literal dot of the real file name.
        let file = comp.replace('/', ".");
        if file.is_empty() {
            return Err(invalid(raw, "empty name component"));
        }
        if file == "." || file == ".." {
            return Err(invalid(raw, "name component \".\" or \"..\""));
        }
        path.push(file);
    }

    let scope = scope_of(&name).ok_or_else(|| {
        invalid(
            raw,
            "not a namespaced sysctl; only kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.* and \
             net.* may be set for a pod",
        )
    })?;
    match scope {
        Scope::Net if !new_net => {
            return Err(invalid(
                raw,
                "network sysctls are not allowed when the pod uses the host network",
            ));
        }
        Scope::Ipc if !new_ipc => {
            return Err(invalid(
                raw,
                "IPC sysctls are not allowed when the pod uses the host IPC namespace",
            ));
        }
        _ => {}
    }

    if value.is_empty() {
        return Err(invalid(raw, "empty value"));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(invalid(
            raw,
            format!("value longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    if value.contains(['\n', '\r', '\0']) {
        return Err(invalid(raw, "value contains a newline or NUL"));
    }
    Ok(Sysctl {
        name,
        path,
        value: value.to_owned(),
    })
}

/// Kubelet's `NamespacedBy`, on the dotted form.
fn scope_of(name: &str) -> Option<Scope> {
    if name == "kernel.sem"
        || name.starts_with("kernel.shm")
        || name.starts_with("kernel.msg")
        || name.starts_with("fs.mqueue.")
    {
        Some(Scope::Ipc)
    } else if name.starts_with("net.") {
        Some(Scope::Net)
    } else {
        None
    }
}

/// Writes the sysctls. Must run on the thread that is inside the pod's namespaces: the kernel
/// resolves `/proc/sys/net` and the IPC sysctls against the opening thread's namespaces.
pub(crate) fn apply(sysctls: &[Sysctl]) -> Result<(), NamespaceError> {
    for s in sysctls {
        let err = |source| NamespaceError::Sysctl {
            name: s.name.clone(),
            value: s.value.clone(),
            source,
        };
        // No create: a sysctl that does not exist is an error (ENOENT), never a new file.
        let mut f = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&s.path)
            .map_err(err)?;
        // One write(2): proc handlers parse the buffer of a single write.
        f.write_all(s.value.as_bytes()).map_err(err)?;
    }
    Ok(())
}
