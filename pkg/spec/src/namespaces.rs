//! `linux.namespaces`: the pod's pinned network, IPC and UTS namespaces, a new mount namespace,
//! the PID namespace per `PidMode`, and a cgroup namespace on cgroup v2.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType};

use crate::{PidMode, SandboxInfo, SpecError};

/// A namespace entry is omitted to share the host's (runc keeps its own for missing types).
pub(crate) fn namespaces(
    sandbox: &SandboxInfo,
    pid_mode: &PidMode,
    cgroup_unified: bool,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let pid = match pid_mode {
        PidMode::Container => Some(None),
        PidMode::Pod => Some(Some(sandbox.pid_ns.ok_or(SpecError::NoPodPidNamespace)?)),
        PidMode::Node => None,
        PidMode::Target(id) => {
            Some(Some(sandbox.target_pid_ns.ok_or_else(|| {
                SpecError::UnknownTargetPidNamespace(id.to_string())
            })?))
        }
    };
    let wanted: [(LinuxNamespaceType, Option<Option<&Path>>); 6] = [
        (LinuxNamespaceType::Pid, pid),
        (LinuxNamespaceType::Ipc, sandbox.ipcns.map(Some)),
        (LinuxNamespaceType::Uts, sandbox.utsns.map(Some)),
        (LinuxNamespaceType::Mount, Some(None)),
        (LinuxNamespaceType::Network, sandbox.netns.map(Some)),
        // containerd gives a container its own cgroup namespace on v2 only: on v1 runc's cgroup
        // mounts need the host's view.
        (LinuxNamespaceType::Cgroup, cgroup_unified.then_some(None)),
    ];
    let mut out = Vec::new();
    for (typ, path) in wanted {
        // None: host's; Some(None): a new one; Some(Some(p)): join p.
        let Some(path) = path else { continue };
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if let Some(p) = path {
            b = b.path(p);
        }
        out.push(b.build()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::sandbox;
    use std::path::PathBuf;

    fn summary(ns: &[LinuxNamespace]) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        ns.iter().map(|n| (n.typ(), n.path().clone())).collect()
    }

    #[test]
    fn pod_namespaces_and_pid_modes() {
        let sb = sandbox();
        let ns = namespaces(&sb, &PidMode::Container, false).unwrap();
        assert_eq!(
            summary(&ns),
            vec![
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Ipc, Some("/run/ns/ipc".into())),
                (LinuxNamespaceType::Uts, Some("/run/ns/uts".into())),
                (LinuxNamespaceType::Mount, None),
                (LinuxNamespaceType::Network, Some("/run/ns/net".into())),
            ]
        );
        let ns = namespaces(&sb, &PidMode::Pod, true).unwrap();
        assert_eq!(
            summary(&ns)[0],
            (LinuxNamespaceType::Pid, Some("/proc/42/ns/pid".into()))
        );
        assert_eq!(summary(&ns)[5], (LinuxNamespaceType::Cgroup, None));
        let ns = namespaces(&sb, &PidMode::Target("c1".into()), false).unwrap();
        assert_eq!(
            summary(&ns)[0],
            (LinuxNamespaceType::Pid, Some("/proc/43/ns/pid".into()))
        );
        let ns = namespaces(&sb, &PidMode::Node, false).unwrap();
        assert!(ns.iter().all(|n| n.typ() != LinuxNamespaceType::Pid));
    }

    #[test]
    fn host_namespaces_are_omitted_and_missing_pid_paths_rejected() {
        let mut sb = sandbox();
        sb.netns = None;
        sb.ipcns = None;
        sb.utsns = None;
        sb.pid_ns = None;
        sb.target_pid_ns = None;
        let ns = namespaces(&sb, &PidMode::Container, false).unwrap();
        assert_eq!(
            summary(&ns),
            vec![
                (LinuxNamespaceType::Pid, None),
                (LinuxNamespaceType::Mount, None)
            ]
        );
        assert!(matches!(
            namespaces(&sb, &PidMode::Pod, false),
            Err(SpecError::NoPodPidNamespace)
        ));
        let err = namespaces(&sb, &PidMode::Target("c1".into()), false).unwrap_err();
        assert!(matches!(err, SpecError::UnknownTargetPidNamespace(_)));
    }
}
