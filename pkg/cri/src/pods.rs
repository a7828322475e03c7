//! Translation between CRI pod sandbox messages and `berth-sandbox`'s plain types.

use std::collections::{BTreeMap, HashMap};

use berth_sandbox::{
    DnsConfig, NamespaceMode, NamespaceOptions, PodMetadata, PortMapping, Protocol, Resources,
    SandboxConfig, SandboxFilter, SandboxRecord, SandboxState,
};
use k8s_cri::v1 as cri;

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
fn resources(r: Option<cri::LinuxContainerResources>) -> Resources {
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

pub(crate) fn sandbox_config(req: cri::RunPodSandboxRequest) -> Result<SandboxConfig, CriError> {
    let Some(config) = req.config else {
        return Err(CriError::InvalidArgument(
            "RunPodSandbox needs a config".into(),
        ));
    };
    let metadata = config.metadata.unwrap_or_default();
    let linux = config.linux.unwrap_or_default();
    let options = linux
        .security_context
        .and_then(|s| s.namespace_options)
        .unwrap_or_default();
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
        seccomp_profile: None,
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
                    userns_options: None,
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
        });
        info.insert("info".to_string(), verbose.to_string());
    }
    cri::PodSandboxStatusResponse {
        status: Some(status),
        info,
        containers_statuses: Vec::new(),
        timestamp: crate::now_ns(),
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
