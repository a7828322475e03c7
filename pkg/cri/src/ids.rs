//! The object ids a request names, recorded on its tracing span.

use berth_cri_api::v1 as cri;

/// Ids carried by one request; empty strings are left off the span.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Ids<'a> {
    pub sandbox_id: &'a str,
    pub container_id: &'a str,
    pub image: &'a str,
    /// `namespace/name` of a pod being created (it has no id yet).
    pub pod: Option<(&'a str, &'a str)>,
}

pub(crate) trait RequestIds {
    fn ids(&self) -> Ids<'_> {
        Ids::default()
    }
}

macro_rules! no_ids {
    ($($ty:ident),* $(,)?) => { $(impl RequestIds for cri::$ty {})* };
}

macro_rules! container_id {
    ($($ty:ident),* $(,)?) => {
        $(impl RequestIds for cri::$ty {
            fn ids(&self) -> Ids<'_> {
                Ids { container_id: &self.container_id, ..Ids::default() }
            }
        })*
    };
}

macro_rules! sandbox_id {
    ($($ty:ident),* $(,)?) => {
        $(impl RequestIds for cri::$ty {
            fn ids(&self) -> Ids<'_> {
                Ids { sandbox_id: &self.pod_sandbox_id, ..Ids::default() }
            }
        })*
    };
}

macro_rules! image_spec {
    ($($ty:ident),* $(,)?) => {
        $(impl RequestIds for cri::$ty {
            fn ids(&self) -> Ids<'_> {
                Ids { image: self.image.as_ref().map_or("", |i| i.image.as_str()), ..Ids::default() }
            }
        })*
    };
}

no_ids!(
    VersionRequest,
    ListPodSandboxRequest,
    ListContainersRequest,
    ListContainerStatsRequest,
    ListPodSandboxStatsRequest,
    UpdateRuntimeConfigRequest,
    StatusRequest,
    GetEventsRequest,
    ListMetricDescriptorsRequest,
    ListPodSandboxMetricsRequest,
    RuntimeConfigRequest,
    ListImagesRequest,
    ImageFsInfoRequest,
    StreamPodSandboxesRequest,
    StreamContainersRequest,
    StreamContainerStatsRequest,
    StreamPodSandboxStatsRequest,
    StreamPodSandboxMetricsRequest,
    StreamImagesRequest,
);

container_id!(
    StartContainerRequest,
    StopContainerRequest,
    RemoveContainerRequest,
    ContainerStatusRequest,
    UpdateContainerResourcesRequest,
    ReopenContainerLogRequest,
    ExecSyncRequest,
    ExecRequest,
    AttachRequest,
    ContainerStatsRequest,
    CheckpointContainerRequest,
);

sandbox_id!(
    StopPodSandboxRequest,
    RemovePodSandboxRequest,
    PodSandboxStatusRequest,
    PortForwardRequest,
    PodSandboxStatsRequest,
    UpdatePodSandboxResourcesRequest,
);

image_spec!(PullImageRequest, ImageStatusRequest, RemoveImageRequest);

impl RequestIds for cri::RunPodSandboxRequest {
    fn ids(&self) -> Ids<'_> {
        let pod = self
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| (m.namespace.as_str(), m.name.as_str()));
        Ids {
            pod,
            ..Ids::default()
        }
    }
}

impl RequestIds for cri::CreateContainerRequest {
    fn ids(&self) -> Ids<'_> {
        let image = self
            .config
            .as_ref()
            .and_then(|c| c.image.as_ref())
            .map_or("", |i| i.image.as_str());
        Ids {
            sandbox_id: &self.pod_sandbox_id,
            image,
            ..Ids::default()
        }
    }
}
