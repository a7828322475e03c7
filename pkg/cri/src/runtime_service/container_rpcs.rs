//! CreateContainer, StartContainer, StopContainer, RemoveContainer, ListContainers,
//! StreamContainers, ContainerStatus, UpdateContainerResources, ReopenContainerLog and
//! CheckpointContainer.

use std::path::Path;
use std::time::Duration;

use berth_cri_api::v1 as cri;

use crate::error::CriError;
use crate::list_stream::{self, ListStream};
use crate::security::SecurityInputs;
use crate::{Shared, containers, pods};

pub(super) async fn create(
    shared: &Shared,
    req: cri::CreateContainerRequest,
) -> Result<cri::CreateContainerResponse, CriError> {
    // The pod's seccomp profile is the default of its containers; a missing pod is reported by
    // create below.
    let pod = shared.deps.sandboxes.get(&req.pod_sandbox_id).ok();
    if let Some(pod) = &pod {
        pods::check_container_userns(&req, pod)?;
    }
    let inputs = SecurityInputs {
        node_default: shared.deps.config.seccomp.default_profile,
        lsm: &shared.lsm,
        pod_seccomp: pod.as_ref().and_then(|p| p.seccomp_profile.as_deref()),
    };
    let cdi = crate::cdi::resolve(&shared.deps.config.cdi, &req).await?;
    let (sandbox_id, mut config) = containers::create_request(req, &inputs)?;
    config.cdi = cdi;
    let container_id = shared.deps.containers.create(&sandbox_id, config).await?;
    Ok(cri::CreateContainerResponse { container_id })
}

pub(super) async fn start(
    shared: &Shared,
    req: cri::StartContainerRequest,
) -> Result<cri::StartContainerResponse, CriError> {
    shared.deps.containers.start(&req.container_id).await?;
    Ok(cri::StartContainerResponse {})
}

pub(super) async fn stop(
    shared: &Shared,
    req: cri::StopContainerRequest,
) -> Result<cri::StopContainerResponse, CriError> {
    // A negative timeout counts as zero: no grace period.
    let timeout = Duration::from_secs(u64::try_from(req.timeout).unwrap_or(0));
    shared
        .deps
        .containers
        .stop(&req.container_id, timeout)
        .await?;
    Ok(cri::StopContainerResponse {})
}

pub(super) async fn remove(
    shared: &Shared,
    req: cri::RemoveContainerRequest,
) -> Result<cri::RemoveContainerResponse, CriError> {
    shared.deps.containers.remove(&req.container_id).await?;
    Ok(cri::RemoveContainerResponse {})
}

pub(super) async fn list(
    shared: &Shared,
    req: cri::ListContainersRequest,
) -> Result<cri::ListContainersResponse, CriError> {
    let containers = containers::list(shared, req.filter)?;
    Ok(cri::ListContainersResponse { containers })
}

pub(super) async fn stream(
    shared: &Shared,
    req: cri::StreamContainersRequest,
) -> Result<ListStream<cri::StreamContainersResponse>, CriError> {
    let items = containers::list(shared, req.filter)?;
    Ok(list_stream::stream(items, |containers| {
        cri::StreamContainersResponse { containers }
    }))
}

pub(super) async fn status(
    shared: &Shared,
    req: cri::ContainerStatusRequest,
) -> Result<cri::ContainerStatusResponse, CriError> {
    let record = shared.deps.containers.get(&req.container_id)?;
    let info = if req.verbose {
        let spec = shared.deps.containers.spec_json(&record);
        containers::verbose_info(&record, spec)
    } else {
        Default::default()
    };
    Ok(containers::status_to_cri(&record, info))
}

pub(super) async fn update_resources(
    shared: &Shared,
    req: cri::UpdateContainerResourcesRequest,
) -> Result<cri::UpdateContainerResourcesResponse, CriError> {
    let resources = containers::resources(req.linux);
    shared
        .deps
        .containers
        .update_resources(&req.container_id, resources)
        .await?;
    Ok(cri::UpdateContainerResourcesResponse {})
}

pub(super) async fn reopen_log(
    shared: &Shared,
    req: cri::ReopenContainerLogRequest,
) -> Result<cri::ReopenContainerLogResponse, CriError> {
    shared.deps.containers.reopen_log(&req.container_id).await?;
    Ok(cri::ReopenContainerLogResponse {})
}

pub(super) async fn checkpoint(
    shared: &Shared,
    req: cri::CheckpointContainerRequest,
) -> Result<cri::CheckpointContainerResponse, CriError> {
    if req.container_id.is_empty() {
        return Err(CriError::InvalidArgument("container_id is required".into()));
    }
    if req.location.is_empty() {
        return Err(CriError::InvalidArgument(
            "location (the archive to write) is required".into(),
        ));
    }
    // Negative timeouts are nonsense; zero means the default, as in containerd.
    let timeout = u64::try_from(req.timeout)
        .map_err(|_| CriError::InvalidArgument(format!("timeout {} is negative", req.timeout)))?;
    shared
        .deps
        .containers
        .checkpoint(
            &req.container_id,
            Path::new(&req.location),
            Some(Duration::from_secs(timeout)),
        )
        .await?;
    Ok(cri::CheckpointContainerResponse {})
}
