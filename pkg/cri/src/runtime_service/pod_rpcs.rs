//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox,
//! StreamPodSandboxes and UpdatePodSandboxResources.

use berth_cri_api::v1 as cri;

use crate::error::CriError;
use crate::list_stream::{self, ListStream};
use crate::{Shared, pods};

pub(super) async fn run(
    shared: &Shared,
    req: cri::RunPodSandboxRequest,
) -> Result<cri::RunPodSandboxResponse, CriError> {
    let config = pods::sandbox_config(req)?;
    let pod_sandbox_id = shared
        .deps
        .sandboxes
        .run(config, shared.deps.containers.pod_hook())
        .await?;
    Ok(cri::RunPodSandboxResponse { pod_sandbox_id })
}

pub(super) async fn stop(
    shared: &Shared,
    req: cri::StopPodSandboxRequest,
) -> Result<cri::StopPodSandboxResponse, CriError> {
    shared
        .deps
        .sandboxes
        .stop(&req.pod_sandbox_id, shared.deps.containers.pod_hook())
        .await?;
    Ok(cri::StopPodSandboxResponse {})
}

pub(super) async fn remove(
    shared: &Shared,
    req: cri::RemovePodSandboxRequest,
) -> Result<cri::RemovePodSandboxResponse, CriError> {
    shared
        .deps
        .sandboxes
        .remove(&req.pod_sandbox_id, shared.deps.containers.pod_hook())
        .await?;
    Ok(cri::RemovePodSandboxResponse {})
}

pub(super) async fn status(
    shared: &Shared,
    req: cri::PodSandboxStatusRequest,
) -> Result<cri::PodSandboxStatusResponse, CriError> {
    let record = shared.deps.sandboxes.get(&req.pod_sandbox_id)?;
    Ok(pods::status_to_cri(&record, req.verbose))
}

pub(super) async fn list(
    shared: &Shared,
    req: cri::ListPodSandboxRequest,
) -> Result<cri::ListPodSandboxResponse, CriError> {
    let items = pods::list(shared, req.filter);
    Ok(cri::ListPodSandboxResponse { items })
}

pub(super) async fn stream(
    shared: &Shared,
    req: cri::StreamPodSandboxesRequest,
) -> Result<ListStream<cri::StreamPodSandboxesResponse>, CriError> {
    let items = pods::list(shared, req.filter);
    Ok(list_stream::stream(items, |pod_sandboxes| {
        cri::StreamPodSandboxesResponse { pod_sandboxes }
    }))
}

pub(super) async fn update_resources(
    shared: &Shared,
    req: cri::UpdatePodSandboxResourcesRequest,
) -> Result<cri::UpdatePodSandboxResourcesResponse, CriError> {
    shared
        .deps
        .sandboxes
        .update_resources(
            &req.pod_sandbox_id,
            pods::resources(req.resources),
            pods::resources(req.overhead),
        )
        .await?;
    Ok(cri::UpdatePodSandboxResourcesResponse {})
}
