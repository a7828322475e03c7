//! RuntimeService: one line per RPC. Each hands its request to the instrumentation (span, metrics
//! under the request type's method name, error mapping: `instrument.rs`) and to its handler, which
//! lives with its family: `runtime_rpcs.rs` (version, status, configuration), `pod_rpcs.rs`,
//! `container_rpcs.rs`, `streaming_rpcs.rs` (exec, attach, port-forward) and `stats_rpcs.rs`.
//! Handlers are plain async functions of the shared state and the request.

mod container_rpcs;
mod pod_rpcs;
mod runtime_rpcs;
mod stats_rpcs;
mod streaming_rpcs;

use std::pin::Pin;

use berth_cri_api::v1 as cri;
use berth_cri_api::v1::runtime_service_server::RuntimeService;
use futures_core::Stream;
use tonic::{Request, Response, Status};

use crate::RuntimeApi;
use crate::list_stream::ListStream;

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RuntimeService for RuntimeApi {
    type GetContainerEventsStream =
        Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;
    type StreamPodSandboxesStream = ListStream<cri::StreamPodSandboxesResponse>;
    type StreamContainersStream = ListStream<cri::StreamContainersResponse>;
    type StreamContainerStatsStream = ListStream<cri::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = ListStream<cri::StreamPodSandboxStatsResponse>;
    type StreamPodSandboxMetricsStream = ListStream<cri::StreamPodSandboxMetricsResponse>;

    // Runtime: version, status, configuration.

    async fn version(&self, r: Request<cri::VersionRequest>) -> Reply<cri::VersionResponse> {
        self.shared.rpc(r, runtime_rpcs::version).await
    }

    async fn status(&self, r: Request<cri::StatusRequest>) -> Reply<cri::StatusResponse> {
        let s = &self.shared;
        s.rpc(r, |req| runtime_rpcs::status(s, req)).await
    }

    async fn runtime_config(
        &self,
        r: Request<cri::RuntimeConfigRequest>,
    ) -> Reply<cri::RuntimeConfigResponse> {
        let s = &self.shared;
        s.rpc(r, |req| runtime_rpcs::runtime_config(s, req)).await
    }

    async fn update_runtime_config(
        &self,
        r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Reply<cri::UpdateRuntimeConfigResponse> {
        let s = &self.shared;
        s.rpc(r, |req| runtime_rpcs::update_runtime_config(s, req))
            .await
    }

    // Pod sandboxes.

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> Reply<cri::RunPodSandboxResponse> {
        let s = &self.shared;
        s.rpc(r, |req| pod_rpcs::run(s, req)).await
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> Reply<cri::StopPodSandboxResponse> {
        let s = &self.shared;
        s.rpc(r, |req| pod_rpcs::stop(s, req)).await
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> Reply<cri::RemovePodSandboxResponse> {
        let s = &self.shared;
        s.rpc(r, |req| pod_rpcs::remove(s, req)).await
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> Reply<cri::PodSandboxStatusResponse> {
        let s = &self.shared;
        s.rpc(r, |req| pod_rpcs::status(s, req)).await
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> Reply<cri::ListPodSandboxResponse> {
        let s = &self.shared;
        s.rpc(r, |req| pod_rpcs::list(s, req)).await
    }

    async fn stream_pod_sandboxes(
        &self,
        r: Request<cri::StreamPodSandboxesRequest>,
    ) -> Reply<Self::StreamPodSandboxesStream> {
        let s = &self.shared;
        s.rpc(r, |req| pod_rpcs::stream(s, req)).await
    }

    async fn update_pod_sandbox_resources(
        &self,
        r: Request<cri::UpdatePodSandboxResourcesRequest>,
    ) -> Reply<cri::UpdatePodSandboxResourcesResponse> {
        let s = &self.shared;
        s.rpc(r, |req| pod_rpcs::update_resources(s, req)).await
    }

    // Containers.

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> Reply<cri::CreateContainerResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::create(s, req)).await
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> Reply<cri::StartContainerResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::start(s, req)).await
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> Reply<cri::StopContainerResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::stop(s, req)).await
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> Reply<cri::RemoveContainerResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::remove(s, req)).await
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> Reply<cri::ListContainersResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::list(s, req)).await
    }

    async fn stream_containers(
        &self,
        r: Request<cri::StreamContainersRequest>,
    ) -> Reply<Self::StreamContainersStream> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::stream(s, req)).await
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> Reply<cri::ContainerStatusResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::status(s, req)).await
    }

    async fn update_container_resources(
        &self,
        r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Reply<cri::UpdateContainerResourcesResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::update_resources(s, req))
            .await
    }

    async fn reopen_container_log(
        &self,
        r: Request<cri::ReopenContainerLogRequest>,
    ) -> Reply<cri::ReopenContainerLogResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::reopen_log(s, req)).await
    }

    async fn checkpoint_container(
        &self,
        r: Request<cri::CheckpointContainerRequest>,
    ) -> Reply<cri::CheckpointContainerResponse> {
        let s = &self.shared;
        s.rpc(r, |req| container_rpcs::checkpoint(s, req)).await
    }

    async fn get_container_events(
        &self,
        r: Request<cri::GetEventsRequest>,
    ) -> Reply<Self::GetContainerEventsStream> {
        let s = &self.shared;
        s.rpc(r, |_| async move {
            let stream: Self::GetContainerEventsStream = Box::pin(crate::events::subscribe(s));
            Ok(stream)
        })
        .await
    }

    // Streaming: exec, attach, port-forward.

    async fn exec_sync(&self, r: Request<cri::ExecSyncRequest>) -> Reply<cri::ExecSyncResponse> {
        let s = &self.shared;
        s.rpc(r, |req| streaming_rpcs::exec_sync(s, req)).await
    }

    async fn exec(&self, r: Request<cri::ExecRequest>) -> Reply<cri::ExecResponse> {
        let s = &self.shared;
        s.rpc(r, |req| streaming_rpcs::exec(s, req)).await
    }

    async fn attach(&self, r: Request<cri::AttachRequest>) -> Reply<cri::AttachResponse> {
        let s = &self.shared;
        s.rpc(r, |req| streaming_rpcs::attach(s, req)).await
    }

    async fn port_forward(
        &self,
        r: Request<cri::PortForwardRequest>,
    ) -> Reply<cri::PortForwardResponse> {
        let s = &self.shared;
        s.rpc(r, |req| streaming_rpcs::port_forward(s, req)).await
    }

    // Stats and metrics.

    async fn container_stats(
        &self,
        r: Request<cri::ContainerStatsRequest>,
    ) -> Reply<cri::ContainerStatsResponse> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |req| crate::stats::container_stats(stats, req))
            .await
    }

    async fn list_container_stats(
        &self,
        r: Request<cri::ListContainerStatsRequest>,
    ) -> Reply<cri::ListContainerStatsResponse> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |req| crate::stats::list_container_stats(stats, req))
            .await
    }

    async fn stream_container_stats(
        &self,
        r: Request<cri::StreamContainerStatsRequest>,
    ) -> Reply<Self::StreamContainerStatsStream> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |req| stats_rpcs::stream_container_stats(stats, req))
            .await
    }

    async fn pod_sandbox_stats(
        &self,
        r: Request<cri::PodSandboxStatsRequest>,
    ) -> Reply<cri::PodSandboxStatsResponse> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |req| crate::stats::pod_sandbox_stats(stats, req))
            .await
    }

    async fn list_pod_sandbox_stats(
        &self,
        r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Reply<cri::ListPodSandboxStatsResponse> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |req| crate::stats::list_pod_sandbox_stats(stats, req))
            .await
    }

    async fn stream_pod_sandbox_stats(
        &self,
        r: Request<cri::StreamPodSandboxStatsRequest>,
    ) -> Reply<Self::StreamPodSandboxStatsStream> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |req| stats_rpcs::stream_pod_sandbox_stats(stats, req))
            .await
    }

    async fn list_metric_descriptors(
        &self,
        r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Reply<cri::ListMetricDescriptorsResponse> {
        self.shared
            .rpc(r, |_| async { Ok(crate::stats::list_metric_descriptors()) })
            .await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Reply<cri::ListPodSandboxMetricsResponse> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |_| crate::stats::list_pod_sandbox_metrics(stats))
            .await
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        r: Request<cri::StreamPodSandboxMetricsRequest>,
    ) -> Reply<Self::StreamPodSandboxMetricsStream> {
        let stats = &self.shared.deps.stats;
        self.shared
            .rpc(r, |_| stats_rpcs::stream_pod_sandbox_metrics(stats))
            .await
    }
}
