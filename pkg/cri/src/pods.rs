//! Translation between CRI pod sandbox messages and `berth-sandbox`'s plain types.

use std::collections::{BTreeMap, HashMap};

use berth_cri_api::v1 as cri;
use berth_sandbox::{
    DnsConfig, IdMapping, NamespaceMode, NamespaceOptions, PodMetadata, PortMapping, Protocol,
    Resources, SandboxConfig, SandboxFilter, SandboxRecord, SandboxState, UserNamespaceMappings,
};

use crate::error::CriError;

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn mode(value: i32, what: &str) -> Result<NamespaceMode, CriError> {
    match cri::NamespaceMode::try_from(value) {
        Ok(cri::NamespaceMode::Pod) => Ok(NamespaceMode::Pod),
        Ok(cri::NamespaceMode::Container) => Ok(NamespaceMode::Container),
        Ok(cri::NamespaceMode::Node) => Ok(NamespaceMode::Node),
        Ok(cri::NamespaceMode::Target) => Ok(NamespaceMode::Target),
        Err(_) => Err(CriError::InvalidArgument(format!(
            "unknown {what} namespace mode {value}"
        ))),
    }
}

fn mode_to_cri(mode: NamespaceMode) -> i32 {
    match mode {
        NamespaceMode::Pod => cri::NamespaceMode::Pod as i32,
        NamespaceMode::Container => cri::NamespaceMode::Container as i32,
        NamespaceMode::Node => cri::NamespaceMode::Node as i32,
        NamespaceMode::Target => cri::NamespaceMode::Target as i32,
    }
}

/// CRI marks "unset" with 0 (or an empty string) in these fields.
pub(crate) fn resources(r: Option<cri::LinuxContainerResources>) -> Resources {
    let Some(r) = r else {
        return Resources::default();
    };
    let positive = |v: i64| (v > 0).then_some(v);
    Resources {
        cpu_period: positive(r.cpu_period).map(|v| v as u64),
        cpu_quota: positive(r.cpu_quota),
        cpu_shares: positive(r.cpu_shares).map(|v| v as u64),
        memory_limit: positive(r.memory_limit_in_bytes),
        cpuset_cpus: Some(r.cpuset_cpus).filter(|s| !s.is_empty()),
        cpuset_mems: Some(r.cpuset_mems).filter(|s| !s.is_empty()),
        hugepage_limits: r
            .hugepage_limits
            .into_iter()
            .map(|h| (h.page_size, h.limit))
            .collect(),
        unified: sorted(r.unified),
    }
}

fn port(p: cri::PortMapping) -> Result<PortMapping, CriError> {
    let protocol = match cri::Protocol::try_from(p.protocol) {
        Ok(cri::Protocol::Tcp) => Protocol::Tcp,
        Ok(cri::Protocol::Udp) => Protocol::Udp,
        Ok(cri::Protocol::Sctp) => Protocol::Sctp,
        Err(_) => {
            return Err(CriError::InvalidArgument(format!(
                "unknown port mapping protocol {}",
                p.protocol
            )));
        }
    };
    let port = |v: i32, what: &str| {
        u16::try_from(v)
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| CriError::InvalidArgument(format!("{what} {v} is not a port number")))
    };
    Ok(PortMapping {
        protocol,
        container_port: port(p.container_port, "container port")?,
        // hostPort 0: no mapping on the host (kubelet passes every container port).
        host_port: if p.host_port == 0 {
            0
        } else {
            port(p.host_port, "host port")?
        },
        host_ip: p.host_ip,
    })
}

fn id_mappings(ranges: &[cri::IdMapping]) -> Vec<IdMapping> {
    ranges
        .iter()
        .map(|m| IdMapping {
            container_id: m.container_id,
            host_id: m.host_id,
            length: m.length,
        })
        .collect()
}

fn id_mappings_to_cri(ranges: &[IdMapping]) -> Vec<cri::IdMapping> {
    ranges
        .iter()
        .map(|m| cri::IdMapping {
            host_id: m.host_id,
            container_id: m.container_id,
            length: m.length,
        })
        .collect()
}

/// CRI `userns_options`: None or mode NODE = the host's user namespace; mode POD = a pod user
/// namespace with the mappings (checked in depth by berth-sandbox). CONTAINER and TARGET are
/// not defined for user namespaces; mappings with NODE would be silently ignored, so refused.
pub(crate) fn userns(
    options: Option<&cri::UserNamespace>,
) -> Result<Option<UserNamespaceMappings>, CriError> {
    let Some(u) = options else {
        return Ok(None);
    };
    match cri::NamespaceMode::try_from(u.mode) {
        Ok(cri::NamespaceMode::Node) if u.uids.is_empty() && u.gids.is_empty() => Ok(None),
        Ok(cri::NamespaceMode::Node) => Err(CriError::InvalidArgument(
            "user namespace mode NODE takes no uid/gid mappings".into(),
        )),
        Ok(cri::NamespaceMode::Pod) => {
            if u.uids.is_empty() || u.gids.is_empty() {
                return Err(CriError::InvalidArgument(
                    "user namespace mode POD needs uid and gid mappings".into(),
                ));
            }
            Ok(Some(UserNamespaceMappings {
                uids: id_mappings(&u.uids),
                gids: id_mappings(&u.gids),
            }))
        }
        Ok(other) => Err(CriError::InvalidArgument(format!(
            "user namespace mode {} is not supported (only POD and NODE are)",
            other.as_str_name()
        ))),
        Err(_) => Err(CriError::InvalidArgument(format!(
            "unknown user namespace mode {}",
            u.mode
        ))),
    }
}

/// The pod's user namespace as CRI reports it: mode POD with the mappings, or NODE.
fn userns_to_cri(maps: Option<&UserNamespaceMappings>) -> cri::UserNamespace {
    match maps {
        Some(m) => cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: id_mappings_to_cri(&m.uids),
            gids: id_mappings_to_cri(&m.gids),
        },
        None => cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            uids: Vec::new(),
            gids: Vec::new(),
        },
    }
}

/// CreateContainer: a container runs in its pod's user namespace (or the host's, as the pod
/// does). Options the container names explicitly must agree with the pod's; a container that
/// names none gets the pod's.
pub(crate) fn check_container_userns(
    req: &cri::CreateContainerRequest,
    pod: &SandboxRecord,
) -> Result<(), CriError> {
    let options = req
        .config
        .as_ref()
        .and_then(|c| c.linux.as_ref())
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
        .and_then(|n| n.userns_options.as_ref());
    let Some(options) = options else {
        return Ok(());
    };
    let wanted = userns(Some(options))?;
    if wanted != pod.userns {
        return Err(CriError::InvalidArgument(format!(
            "the container's user namespace options ({}) differ from its pod's ({}): all containers of a pod share its user namespace",
            describe_userns(wanted.as_ref()),
            describe_userns(pod.userns.as_ref())
        )));
    }
    Ok(())
}

fn describe_userns(maps: Option<&UserNamespaceMappings>) -> String {
    match maps {
        None => "NODE".into(),
        Some(m) => format!(
            "POD uids {}gids {}",
            ranges_text(&m.uids),
            ranges_text(&m.gids)
        ),
    }
}

fn ranges_text(ranges: &[IdMapping]) -> String {
    ranges
        .iter()
        .map(|m| format!("{}:{}:{} ", m.container_id, m.host_id, m.length))
        .collect()
}

pub(crate) fn sandbox_config(req: cri::RunPodSandboxRequest) -> Result<SandboxConfig, CriError> {
    let Some(config) = req.config else {
        return Err(CriError::InvalidArgument(
            "RunPodSandbox needs a config".into(),
        ));
    };
    let metadata = config.metadata.unwrap_or_default();
    let linux = config.linux.unwrap_or_default();
    let seccomp_profile = crate::security::pod_seccomp_profile(linux.security_context.as_ref())?;
    let options = linux
        .security_context
        .and_then(|s| s.namespace_options)
        .unwrap_or_default();
    let userns = userns(options.userns_options.as_ref())?;
    let attempt = metadata.attempt;
    Ok(SandboxConfig {
        metadata: PodMetadata {
            name: metadata.name,
            namespace: metadata.namespace,
            uid: metadata.uid,
            attempt,
        },
        hostname: config.hostname,
        log_directory: config.log_directory,
        dns: config.dns_config.map(|d| DnsConfig {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings: config
            .port_mappings
            .into_iter()
            .map(port)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|p| p.host_port != 0)
            .collect(),
        labels: sorted(config.labels),
        annotations: sorted(config.annotations),
        cgroup_parent: linux.cgroup_parent,
        sysctls: sorted(linux.sysctls),
        namespaces: NamespaceOptions {
            network: mode(options.network, "network")?,
            pid: mode(options.pid, "PID")?,
            ipc: mode(options.ipc, "IPC")?,
            target_id: options.target_id,
        },
        resources: resources(linux.resources),
        overhead: resources(linux.overhead),
        runtime_handler: req.runtime_handler,
        seccomp_profile,
        userns,
    })
}

fn state_to_cri(state: SandboxState) -> i32 {
    match state {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady as i32,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready as i32,
    }
}

fn metadata_to_cri(m: &PodMetadata) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

pub(crate) fn sandbox_to_cri(record: &SandboxRecord) -> cri::PodSandbox {
    cri::PodSandbox {
        id: record.id.clone(),
        metadata: Some(metadata_to_cri(&record.metadata)),
        state: state_to_cri(record.state()),
        created_at: record.created_at_ns,
        labels: unsorted(&record.labels),
        annotations: unsorted(&record.annotations),
        runtime_handler: record.runtime_handler.clone(),
    }
}

pub(crate) fn status_to_cri(
    record: &SandboxRecord,
    verbose: bool,
) -> cri::PodSandboxStatusResponse {
    let ips = record.ips();
    let network = (!record.namespaces.host_network()).then(|| cri::PodSandboxNetworkStatus {
        ip: ips.first().cloned().unwrap_or_default(),
        additional_ips: ips
            .iter()
            .skip(1)
            .map(|ip| cri::PodIp { ip: ip.clone() })
            .collect(),
    });
    let ns = &record.namespaces;
    let status = cri::PodSandboxStatus {
        id: record.id.clone(),
        metadata: Some(metadata_to_cri(&record.metadata)),
        state: state_to_cri(record.state()),
        created_at: record.created_at_ns,
        network,
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: mode_to_cri(ns.network),
                    pid: mode_to_cri(ns.pid),
                    ipc: mode_to_cri(ns.ipc),
                    target_id: ns.target_id.clone(),
                    userns_options: Some(userns_to_cri(record.userns.as_ref())),
                }),
            }),
        }),
        labels: unsorted(&record.labels),
        annotations: unsorted(&record.annotations),
        runtime_handler: record.runtime_handler.clone(),
    };
    let mut info = HashMap::new();
    if verbose {
        let verbose = serde_json::json!({
            "netns": record.netns,
            "ipcns": record.ipcns,
            "utsns": record.utsns,
            "shm": record.shm,
            "dir": record.dir,
            "phase": format!("{:?}", record.phase),
            "hostname": record.hostname,
            "cgroup": record.cgroup,
            "cni": record.network,
            "init": record.init,
            "userns": record.userns_path,
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    cri::PodSandboxStatusResponse {
        status: Some(status),
        info,
        containers_statuses: Vec::new(),
        timestamp: berth_clock::now_ns(),
    }
}

pub(crate) fn filter(filter: Option<cri::PodSandboxFilter>) -> SandboxFilter {
    let Some(f) = filter else {
        return SandboxFilter::default();
    };
    SandboxFilter {
        id: Some(f.id).filter(|id| !id.is_empty()),
        state: f.state.map(|s| {
            if s.state == cri::PodSandboxState::SandboxReady as i32 {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            }
        }),
        labels: sorted(f.label_selector),
    }
}

/// ListPodSandbox and StreamPodSandboxes: the pods `filter` selects, as CRI lists them.
pub(crate) fn list(
    shared: &crate::Shared,
    filter: Option<cri::PodSandboxFilter>,
) -> Vec<cri::PodSandbox> {
    shared
        .deps
        .sandboxes
        .list(&self::filter(filter))
        .iter()
        .map(sandbox_to_cri)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(host_id: u32) -> cri::UserNamespace {
        let m = cri::IdMapping {
            host_id,
            container_id: 0,
            length: 65536,
        };
        cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![m],
            gids: vec![m],
        }
    }

    #[test]
    fn userns_options_convert_both_ways() {
        assert_eq!(userns(None).unwrap(), None);
        let node = cri::UserNamespace {
            mode: cri::NamespaceMode::Node as i32,
            ..Default::default()
        };
        assert_eq!(userns(Some(&node)).unwrap(), None);
        let maps = userns(Some(&pod(131072))).unwrap().unwrap();
        assert_eq!(maps, UserNamespaceMappings::single(131072, 65536));
        assert_eq!(userns_to_cri(Some(&maps)), pod(131072));
        assert_eq!(userns_to_cri(None), node);
    }

    #[test]
    fn bad_userns_options_are_invalid_arguments() {
        let mut no_maps = pod(65536);
        no_maps.gids.clear();
        let mut node_with_maps = pod(65536);
        node_with_maps.mode = cri::NamespaceMode::Node as i32;
        let mut container = pod(65536);
        container.mode = cri::NamespaceMode::Container as i32;
        let mut target = pod(65536);
        target.mode = cri::NamespaceMode::Target as i32;
        let mut unknown = pod(65536);
        unknown.mode = 42;
        for bad in [no_maps, node_with_maps, container, target, unknown] {
            assert!(
                matches!(userns(Some(&bad)), Err(CriError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
