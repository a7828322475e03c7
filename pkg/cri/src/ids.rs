//! What the instrumentation knows of each request type: the RPC it belongs to (the metric label
//! and span field, exactly as the proto names the method) and the object ids it names, recorded
//! on its tracing span. `method_names_match_the_protos` checks every name against `proto/`.

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

/// A request of one RPC. Implemented once per request type, so a handler cannot be counted under
/// another method's name.
pub(crate) trait RpcRequest {
    /// The method as the proto names it: bare for CRI's (`RunPodSandbox`, as kubelet's metrics and
    /// containerd's name them), `package.Service/Method` for Berth's own services.
    const METHOD: &'static str;

    fn ids(&self) -> Ids<'_> {
        Ids::default()
    }
}

macro_rules! no_ids {
    ($($method:ident: $ty:ident),* $(,)?) => {
        $(impl RpcRequest for cri::$ty {
            const METHOD: &'static str = stringify!($method);
        })*
    };
}

macro_rules! container_id {
    ($($method:ident: $ty:ident),* $(,)?) => {
        $(impl RpcRequest for cri::$ty {
            const METHOD: &'static str = stringify!($method);
            fn ids(&self) -> Ids<'_> {
                Ids { container_id: &self.container_id, ..Ids::default() }
            }
        })*
    };
}

macro_rules! sandbox_id {
    ($($method:ident: $ty:ident),* $(,)?) => {
        $(impl RpcRequest for cri::$ty {
            const METHOD: &'static str = stringify!($method);
            fn ids(&self) -> Ids<'_> {
                Ids { sandbox_id: &self.pod_sandbox_id, ..Ids::default() }
            }
        })*
    };
}

macro_rules! image_spec {
    ($($method:ident: $ty:ident),* $(,)?) => {
        $(impl RpcRequest for cri::$ty {
            const METHOD: &'static str = stringify!($method);
            fn ids(&self) -> Ids<'_> {
                Ids { image: self.image.as_ref().map_or("", |i| i.image.as_str()), ..Ids::default() }
            }
        })*
    };
}

no_ids!(
    Version: VersionRequest,
    ListPodSandbox: ListPodSandboxRequest,
    ListContainers: ListContainersRequest,
    ListContainerStats: ListContainerStatsRequest,
    ListPodSandboxStats: ListPodSandboxStatsRequest,
    UpdateRuntimeConfig: UpdateRuntimeConfigRequest,
    Status: StatusRequest,
    GetContainerEvents: GetEventsRequest,
    ListMetricDescriptors: ListMetricDescriptorsRequest,
    ListPodSandboxMetrics: ListPodSandboxMetricsRequest,
    RuntimeConfig: RuntimeConfigRequest,
    ListImages: ListImagesRequest,
    ImageFsInfo: ImageFsInfoRequest,
    StreamPodSandboxes: StreamPodSandboxesRequest,
    StreamContainers: StreamContainersRequest,
    StreamContainerStats: StreamContainerStatsRequest,
    StreamPodSandboxStats: StreamPodSandboxStatsRequest,
    StreamPodSandboxMetrics: StreamPodSandboxMetricsRequest,
    StreamImages: StreamImagesRequest,
);

container_id!(
    StartContainer: StartContainerRequest,
    StopContainer: StopContainerRequest,
    RemoveContainer: RemoveContainerRequest,
    ContainerStatus: ContainerStatusRequest,
    UpdateContainerResources: UpdateContainerResourcesRequest,
    ReopenContainerLog: ReopenContainerLogRequest,
    ExecSync: ExecSyncRequest,
    Exec: ExecRequest,
    Attach: AttachRequest,
    ContainerStats: ContainerStatsRequest,
    CheckpointContainer: CheckpointContainerRequest,
);

sandbox_id!(
    StopPodSandbox: StopPodSandboxRequest,
    RemovePodSandbox: RemovePodSandboxRequest,
    PodSandboxStatus: PodSandboxStatusRequest,
    PortForward: PortForwardRequest,
    PodSandboxStats: PodSandboxStatsRequest,
    UpdatePodSandboxResources: UpdatePodSandboxResourcesRequest,
);

image_spec!(
    PullImage: PullImageRequest,
    ImageStatus: ImageStatusRequest,
    RemoveImage: RemoveImageRequest,
);

impl RpcRequest for cri::RunPodSandboxRequest {
    const METHOD: &'static str = "RunPodSandbox";

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

impl RpcRequest for cri::CreateContainerRequest {
    const METHOD: &'static str = "CreateContainer";

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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use berth_api::{containers::v1 as containers, images::v1 as images};
    use berth_api::{registries::v1 as registries, volumes::v1 as volumes};
    use tonic::Streaming;

    use super::*;

    /// (METHOD, the request message's name) of one request type.
    fn entry<R: RpcRequest>() -> (&'static str, &'static str) {
        // `tonic::codec::decode::Streaming<berth_api::images::v1::Chunk>` -> `Chunk`
        let ty = std::any::type_name::<R>().trim_end_matches('>');
        (R::METHOD, ty.rsplit([':', '<']).next().unwrap_or(ty))
    }

    /// Every `rpc` of the services berthd serves, by the name instrumentation must use, with the
    /// request message it takes.
    fn rpcs_in_protos() -> BTreeMap<String, String> {
        let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
        let mut rpcs = BTreeMap::new();
        for (file, cri) in [
            ("cri/api.proto", true),
            ("containers/v1/containers.proto", false),
            ("images/v1/images.proto", false),
            ("registries/v1/registries.proto", false),
            ("volumes/v1/volumes.proto", false),
        ] {
            let text = std::fs::read_to_string(proto.join(file)).unwrap();
            let (mut package, mut service) = (String::new(), String::new());
            for line in text.lines().map(str::trim) {
                if let Some(p) = line.strip_prefix("package ") {
                    package = p.trim_end_matches(';').to_string();
                } else if let Some(s) = line.strip_prefix("service ") {
                    service = s.trim_end_matches(['{', ' ']).to_string();
                } else if let Some(rpc) = line.strip_prefix("rpc ") {
                    let (name, rest) = rpc.split_once('(').unwrap();
                    let (request, _) = rest.split_once(')').unwrap();
                    let request = request.trim().trim_start_matches("stream ").trim();
                    let method = if cri {
                        name.trim().to_string()
                    } else {
                        format!("{package}.{service}/{}", name.trim())
                    };
                    rpcs.insert(method, request.to_string());
                }
            }
        }
        rpcs
    }

    #[test]
    fn method_names_match_the_protos() {
        let ours = [
            entry::<cri::VersionRequest>(),
            entry::<cri::StatusRequest>(),
            entry::<cri::RuntimeConfigRequest>(),
            entry::<cri::UpdateRuntimeConfigRequest>(),
            entry::<cri::RunPodSandboxRequest>(),
            entry::<cri::StopPodSandboxRequest>(),
            entry::<cri::RemovePodSandboxRequest>(),
            entry::<cri::PodSandboxStatusRequest>(),
            entry::<cri::ListPodSandboxRequest>(),
            entry::<cri::StreamPodSandboxesRequest>(),
            entry::<cri::UpdatePodSandboxResourcesRequest>(),
            entry::<cri::CreateContainerRequest>(),
            entry::<cri::StartContainerRequest>(),
            entry::<cri::StopContainerRequest>(),
            entry::<cri::RemoveContainerRequest>(),
            entry::<cri::ListContainersRequest>(),
            entry::<cri::StreamContainersRequest>(),
            entry::<cri::ContainerStatusRequest>(),
            entry::<cri::UpdateContainerResourcesRequest>(),
            entry::<cri::ReopenContainerLogRequest>(),
            entry::<cri::CheckpointContainerRequest>(),
            entry::<cri::GetEventsRequest>(),
            entry::<cri::ExecSyncRequest>(),
            entry::<cri::ExecRequest>(),
            entry::<cri::AttachRequest>(),
            entry::<cri::PortForwardRequest>(),
            entry::<cri::ContainerStatsRequest>(),
            entry::<cri::ListContainerStatsRequest>(),
            entry::<cri::StreamContainerStatsRequest>(),
            entry::<cri::PodSandboxStatsRequest>(),
            entry::<cri::ListPodSandboxStatsRequest>(),
            entry::<cri::StreamPodSandboxStatsRequest>(),
            entry::<cri::ListMetricDescriptorsRequest>(),
            entry::<cri::ListPodSandboxMetricsRequest>(),
            entry::<cri::StreamPodSandboxMetricsRequest>(),
            entry::<cri::PullImageRequest>(),
            entry::<cri::ImageStatusRequest>(),
            entry::<cri::ListImagesRequest>(),
            entry::<cri::StreamImagesRequest>(),
            entry::<cri::RemoveImageRequest>(),
            entry::<cri::ImageFsInfoRequest>(),
            entry::<containers::KillRequest>(),
            entry::<containers::TopRequest>(),
            entry::<containers::StatPathRequest>(),
            entry::<containers::CopyFromRequest>(),
            entry::<Streaming<containers::CopyToRequest>>(),
            entry::<images::PullRequest>(),
            entry::<images::WatchPullRequest>(),
            entry::<images::CommitRequest>(),
            entry::<images::SaveRequest>(),
            entry::<Streaming<images::Chunk>>(),
            entry::<registries::LoginRequest>(),
            entry::<registries::LogoutRequest>(),
            entry::<registries::ListLoginsRequest>(),
            entry::<volumes::CreateVolumeRequest>(),
            entry::<volumes::InspectVolumeRequest>(),
            entry::<volumes::ListVolumesRequest>(),
            entry::<volumes::RemoveVolumeRequest>(),
            entry::<volumes::PruneVolumesRequest>(),
        ];
        let protos = rpcs_in_protos();
        assert_eq!(protos.len(), 41 + 5 + 5 + 3 + 5, "{protos:?}");
        for (method, request) in ours {
            assert_eq!(
                protos.get(method).map(String::as_str),
                Some(request),
                "{method} is not an rpc taking {request}"
            );
        }
        let covered: std::collections::BTreeSet<_> = ours.iter().map(|(m, _)| *m).collect();
        let missing: Vec<_> = protos
            .keys()
            .filter(|m| !covered.contains(m.as_str()))
            .collect();
        assert!(
            missing.is_empty(),
            "rpcs without a request type here: {missing:?}"
        );
    }
}
