//! Translation between CRI container messages and `berth-container`'s plain types.

use std::collections::{BTreeMap, HashMap};

use berth_container::{
    ContainerConfig, ContainerFilter, ContainerRecord, ContainerState, Device, Mount, Propagation,
    Resources,
};
use berth_cri_api::v1 as cri;
use berth_store::ListFilter;

use crate::error::CriError;
use crate::security::{SecurityInputs, container_security};

fn sorted(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

fn unsorted(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// CreateContainerRequest → (sandbox ID, config).
pub(crate) fn create_request(
    req: cri::CreateContainerRequest,
    security: &SecurityInputs,
) -> Result<(String, ContainerConfig), CriError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(CriError::InvalidArgument(
            "pod_sandbox_id is required".into(),
        ));
    }
    let config = req
        .config
        .ok_or_else(|| CriError::InvalidArgument("container config is required".into()))?;
    let metadata = config
        .metadata
        .ok_or_else(|| CriError::InvalidArgument("container metadata is required".into()))?;
    let image = config.image.map(|i| i.image).unwrap_or_default();
    let linux = config.linux.unwrap_or_default();
    let mounts = config
        .mounts
        .into_iter()
        .map(mount)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        req.pod_sandbox_id,
        ContainerConfig {
            name: metadata.name,
            attempt: metadata.attempt,
            image,
            command: config.command,
            args: config.args,
            working_dir: config.working_dir,
            envs: config
                .envs
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect(),
            mounts,
            devices: config
                .devices
                .into_iter()
                .map(|d| Device {
                    container_path: d.container_path,
                    host_path: d.host_path,
                    permissions: d.permissions,
                })
                .collect(),
            labels: sorted(config.labels),
            annotations: sorted(config.annotations),
            log_path: config.log_path,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            tty: config.tty,
            resources: resources(linux.resources),
            security: container_security(linux.security_context, security)?,
            stop_signal: crate::signal::to_number(config.stop_signal)?,
            // Resolved by the caller (crate::cdi), which reads the node's spec files.
            cdi: Default::default(),
        },
    ))
}

fn mount(m: cri::Mount) -> Result<Mount, CriError> {
    let propagation = match cri::MountPropagation::try_from(m.propagation) {
        Ok(cri::MountPropagation::PropagationPrivate) => Propagation::Private,
        Ok(cri::MountPropagation::PropagationHostToContainer) => Propagation::HostToContainer,
        Ok(cri::MountPropagation::PropagationBidirectional) => Propagation::Bidirectional,
        Err(_) => {
            return Err(CriError::InvalidArgument(format!(
                "unknown mount propagation {}",
                m.propagation
            )));
        }
    };
    let image = crate::image_volumes::source(&m)?;
    Ok(Mount {
        container_path: m.container_path,
        host_path: m.host_path,
        readonly: m.readonly,
        propagation,
        image,
        // Checked (readonly, private, supported here) and made by berth-container.
        recursive_read_only: m.recursive_read_only,
    })
}

pub(crate) fn resources(r: Option<cri::LinuxContainerResources>) -> Resources {
    let Some(r) = r else {
        return Resources::default();
    };
    Resources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus,
        cpuset_mems: r.cpuset_mems,
        hugepage_limits: r
            .hugepage_limits
            .into_iter()
            .map(|h| (h.page_size, h.limit))
            .collect(),
        unified: sorted(r.unified),
    }
}

fn resources_to_cri(r: &Resources) -> cri::LinuxContainerResources {
    cri::LinuxContainerResources {
        cpu_period: r.cpu_period,
        cpu_quota: r.cpu_quota,
        cpu_shares: r.cpu_shares,
        memory_limit_in_bytes: r.memory_limit_in_bytes,
        oom_score_adj: r.oom_score_adj,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        hugepage_limits: r
            .hugepage_limits
            .iter()
            .map(|(page_size, limit)| cri::HugepageLimit {
                page_size: page_size.clone(),
                limit: *limit,
            })
            .collect(),
        unified: unsorted(&r.unified),
        memory_swap_limit_in_bytes: r.memory_swap_limit_in_bytes,
    }
}

fn state_to_cri(state: ContainerState) -> i32 {
    match state {
        ContainerState::Created => cri::ContainerState::ContainerCreated as i32,
        ContainerState::Running => cri::ContainerState::ContainerRunning as i32,
        ContainerState::Exited => cri::ContainerState::ContainerExited as i32,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown as i32,
    }
}

fn metadata(r: &ContainerRecord) -> cri::ContainerMetadata {
    cri::ContainerMetadata {
        name: r.config.name.clone(),
        attempt: r.config.attempt,
    }
}

fn image_spec(r: &ContainerRecord) -> cri::ImageSpec {
    cri::ImageSpec {
        image: r.image_name.clone(),
        user_specified_image: r.config.image.clone(),
        ..Default::default()
    }
}

pub(crate) fn container_to_cri(r: &ContainerRecord) -> cri::Container {
    cri::Container {
        id: r.id.clone(),
        pod_sandbox_id: r.sandbox_id.clone(),
        metadata: Some(metadata(r)),
        image: Some(image_spec(r)),
        // As containerd: the list carries the image ID, ContainerStatus the repo digest (which
        // kubelet shows as the pod's imageID).
        image_ref: r.image_id.clone(),
        state: state_to_cri(r.state()),
        created_at: r.created_at_ns,
        labels: unsorted(&r.config.labels),
        annotations: unsorted(&r.config.annotations),
        image_id: r.image_id.clone(),
    }
}

pub(crate) fn status_to_cri(
    r: &ContainerRecord,
    info: HashMap<String, String>,
) -> cri::ContainerStatusResponse {
    let mounts = r
        .config
        .mounts
        .iter()
        .map(|m| cri::Mount {
            container_path: m.container_path.clone(),
            host_path: m.host_path.clone(),
            readonly: m.readonly,
            propagation: match m.propagation {
                Propagation::Private => cri::MountPropagation::PropagationPrivate,
                Propagation::HostToContainer => cri::MountPropagation::PropagationHostToContainer,
                Propagation::Bidirectional => cri::MountPropagation::PropagationBidirectional,
            } as i32,
            image: m.image.as_ref().map(crate::image_volumes::image_spec),
            image_sub_path: m
                .image
                .as_ref()
                .map(|i| i.sub_path.clone())
                .unwrap_or_default(),
            recursive_read_only: m.recursive_read_only,
            ..Default::default()
        })
        .collect();
    let status = cri::ContainerStatus {
        id: r.id.clone(),
        metadata: Some(metadata(r)),
        state: state_to_cri(r.state()),
        created_at: r.created_at_ns,
        started_at: r.started_at_ns,
        finished_at: r.finished_at_ns,
        exit_code: r.exit_code,
        image: Some(image_spec(r)),
        image_ref: r.image_ref.clone(),
        reason: r.reason.clone(),
        message: r.message.clone(),
        labels: unsorted(&r.config.labels),
        annotations: unsorted(&r.config.annotations),
        mounts,
        log_path: r
            .log_path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        resources: Some(cri::ContainerResources {
            linux: Some(resources_to_cri(&r.resources)),
            windows: None,
        }),
        image_id: r.image_id.clone(),
        user: Some(cri::ContainerUser {
            linux: Some(cri::LinuxContainerUser {
                uid: i64::from(r.user.uid),
                gid: i64::from(r.user.gid),
                supplemental_groups: r
                    .user
                    .additional_gids
                    .iter()
                    .map(|g| i64::from(*g))
                    .collect(),
            }),
        }),
        // The signal StopContainer sends first: the CRI config's, else the image's STOPSIGNAL,
        // else SIGTERM (kubelet 1.33+ shows it).
        stop_signal: crate::signal::from_number(r.stop_signal) as i32,
    };
    cri::ContainerStatusResponse {
        status: Some(status),
        info,
    }
}

/// Verbose `info`: one `info` key with a JSON object, as containerd does.
pub(crate) fn verbose_info(
    r: &ContainerRecord,
    spec: Option<serde_json::Value>,
) -> HashMap<String, String> {
    let info = serde_json::json!({
        "sandboxID": r.sandbox_id,
        "pid": r.pid,
        "runtimeHandler": r.handler,
        "runtimeType": r.runtime_path,
        "runtimeRoot": r.runtime_root,
        "bundle": r.bundle,
        "snapshotKey": r.snapshot,
        "monitorDir": r.monitor_dir,
        "stopSignal": r.stop_signal,
        "oomScoreAdj": r.oom_score_adj,
        // What attach clients need to know, under containerd's names.
        "config": {
            "tty": r.config.tty,
            "stdin": r.config.stdin,
            "stdinOnce": r.config.stdin_once,
        },
        "runtimeSpec": spec,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

pub(crate) fn filter(f: Option<cri::ContainerFilter>) -> Result<ContainerFilter, CriError> {
    let Some(f) = f else {
        return Ok(ContainerFilter::default());
    };
    let state = match f.state {
        None => None,
        Some(s) => Some(match cri::ContainerState::try_from(s.state) {
            Ok(cri::ContainerState::ContainerCreated) => ContainerState::Created,
            Ok(cri::ContainerState::ContainerRunning) => ContainerState::Running,
            Ok(cri::ContainerState::ContainerExited) => ContainerState::Exited,
            Ok(cri::ContainerState::ContainerUnknown) => ContainerState::Unknown,
            Err(_) => {
                return Err(CriError::InvalidArgument(format!(
                    "unknown container state {}",
                    s.state
                )));
            }
        }),
    };
    Ok(ContainerFilter {
        list: ListFilter {
            id: Some(f.id).filter(|s| !s.is_empty()),
            state,
            labels: sorted(f.label_selector),
        },
        sandbox_id: Some(f.pod_sandbox_id).filter(|s| !s.is_empty()),
    })
}

/// ListContainers and StreamContainers: the containers `filter` selects, as CRI lists them.
pub(crate) fn list(
    shared: &crate::Shared,
    filter: Option<cri::ContainerFilter>,
) -> Result<Vec<cri::Container>, CriError> {
    let filter = self::filter(filter)?;
    Ok(shared
        .deps
        .containers
        .list(&filter)
        .iter()
        .map(container_to_cri)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_container::PidMode;

    fn inputs() -> SecurityInputs<'static> {
        static LSM: std::sync::OnceLock<berth_spec::HostLsm> = std::sync::OnceLock::new();
        SecurityInputs {
            node_default: berth_config::SeccompDefault::Unconfined,
            lsm: LSM.get_or_init(|| {
                berth_spec::HostLsm::detect_at("/nonexistent".as_ref(), "/nonexistent".as_ref())
            }),
            pod_seccomp: None,
        }
    }

    #[test]
    fn create_request_translation() {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: "abc".into(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata {
                    name: "web".into(),
                    attempt: 2,
                }),
                image: Some(cri::ImageSpec {
                    image: "busybox".into(),
                    ..Default::default()
                }),
                envs: vec![cri::KeyValue {
                    key: "A".into(),
                    value: "1".into(),
                }],
                mounts: vec![cri::Mount {
                    container_path: "/data".into(),
                    host_path: "/tmp/x".into(),
                    propagation: cri::MountPropagation::PropagationBidirectional as i32,
                    ..Default::default()
                }],
                linux: Some(cri::LinuxContainerConfig {
                    resources: Some(cri::LinuxContainerResources {
                        memory_limit_in_bytes: 16 << 20,
                        ..Default::default()
                    }),
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        run_as_user: Some(cri::Int64Value { value: 1000 }),
                        namespace_options: Some(cri::NamespaceOption {
                            pid: cri::NamespaceMode::Target as i32,
                            target_id: "t".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            sandbox_config: None,
        };
        let (sandbox, config) = create_request(req, &inputs()).unwrap();
        assert_eq!(sandbox, "abc");
        assert_eq!((config.name.as_str(), config.attempt), ("web", 2));
        assert_eq!(config.envs, vec![("A".to_string(), "1".to_string())]);
        assert_eq!(config.mounts[0].propagation, Propagation::Bidirectional);
        assert_eq!(config.resources.memory_limit_in_bytes, 16 << 20);
        assert_eq!(config.security.run_as_user, Some(1000));
        assert_eq!(config.security.pid_mode, PidMode::Target("t".into()));
    }

    #[test]
    fn missing_metadata_is_invalid() {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: "abc".into(),
            config: Some(cri::ContainerConfig::default()),
            sandbox_config: None,
        };
        assert!(matches!(
            create_request(req, &inputs()),
            Err(CriError::InvalidArgument(_))
        ));
    }

    #[test]
    fn filter_translation() {
        let f = filter(Some(cri::ContainerFilter {
            id: "ab".into(),
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            pod_sandbox_id: String::new(),
            label_selector: HashMap::from([("a".to_string(), "b".to_string())]),
        }))
        .unwrap();
        assert_eq!(f.list.id.as_deref(), Some("ab"));
        assert_eq!(f.list.state, Some(ContainerState::Running));
        assert!(f.sandbox_id.is_none());
        assert_eq!(f.list.labels.len(), 1);
    }
}
