//! RuntimeService: what is real today, and UNIMPLEMENTED (instrumented, with the method's name) for the
//! rest until its capability lands.

use std::pin::Pin;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_cri_api::v1::runtime_service_server::RuntimeService;
use futures_core::Stream;
use tonic::{Request, Response, Status};

use crate::error::CriError;
use crate::list_stream::{self, ListStream};
use crate::security::SecurityInputs;
use crate::{KUBELET_API_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME, RUNTIME_VERSION, RuntimeApi};
use crate::{containers, pods, stats};

/// Generates the trait impl: the real methods are written out, the unimplemented ones listed by name.
/// (Both must sit inside one `#[async_trait]` impl, which is why a macro builds the whole block.)
macro_rules! runtime_service {
    (
        real { $($real:item)* }
        unimplemented { $($name:ident($req:ident) -> $resp:ident = $method:literal;)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for RuntimeApi {
            type GetContainerEventsStream =
                Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;
            type StreamPodSandboxesStream = ListStream<cri::StreamPodSandboxesResponse>;
            type StreamContainersStream = ListStream<cri::StreamContainersResponse>;
            type StreamContainerStatsStream = ListStream<cri::StreamContainerStatsResponse>;
            type StreamPodSandboxStatsStream = ListStream<cri::StreamPodSandboxStatsResponse>;
            type StreamPodSandboxMetricsStream = ListStream<cri::StreamPodSandboxMetricsResponse>;

            $($real)*

            $(
                async fn $name(
                    &self,
                    request: Request<cri::$req>,
                ) -> Result<Response<cri::$resp>, Status> {
                    self.shared.unimplemented($method, request).await
                }
            )*
        }
    };
}

runtime_service! {
    real {
        async fn version(
            &self,
            request: Request<cri::VersionRequest>,
        ) -> Result<Response<cri::VersionResponse>, Status> {
            self.shared
                .rpc("Version", request, |_| async {
                    Ok(cri::VersionResponse {
                        version: KUBELET_API_VERSION.to_string(),
                        runtime_name: RUNTIME_NAME.to_string(),
                        runtime_version: RUNTIME_VERSION.to_string(),
                        runtime_api_version: RUNTIME_API_VERSION.to_string(),
                    })
                })
                .await
        }

        async fn status(
            &self,
            request: Request<cri::StatusRequest>,
        ) -> Result<Response<cri::StatusResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("Status", request, |req| async move { Ok(shared.status(req.verbose)) })
                .await
        }

        async fn runtime_config(
            &self,
            request: Request<cri::RuntimeConfigRequest>,
        ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
            let driver = match self.shared.deps.config.cgroup.driver {
                berth_config::CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
                berth_config::CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
            };
            self.shared
                .rpc("RuntimeConfig", request, |_| async move {
                    Ok(cri::RuntimeConfigResponse {
                        linux: Some(cri::LinuxRuntimeConfiguration {
                            cgroup_driver: driver as i32,
                        }),
                    })
                })
                .await
        }

        async fn update_runtime_config(
            &self,
            request: Request<cri::UpdateRuntimeConfigRequest>,
        ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("UpdateRuntimeConfig", request, |req| async move {
                    let cidr = req
                        .runtime_config
                        .and_then(|c| c.network_config)
                        .map(|n| n.pod_cidr)
                        .unwrap_or_default();
                    // CRI: an empty CIDR means "no change", not "clear".
                    if cidr.trim().is_empty() {
                        return Ok(cri::UpdateRuntimeConfigResponse {});
                    }
                    let cidrs = berth_network::PodCidrs::parse(&cidr)?;
                    if cidrs != shared.deps.pod_cidrs.get() {
                        shared.deps.pod_cidrs.set(cidrs.clone()).map_err(CriError::from)?;
                        tracing::info!(pod_cidr = %cidrs, "pod CIDR updated");
                    }
                    Ok(cri::UpdateRuntimeConfigResponse {})
                })
                .await
        }

        async fn run_pod_sandbox(
            &self,
            request: Request<cri::RunPodSandboxRequest>,
        ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("RunPodSandbox", request, |req| async move {
                    let config = pods::sandbox_config(req)?;
                    let pod_sandbox_id = shared
                        .deps
                        .sandboxes
                        .run(config, shared.deps.containers.pod_hook())
                        .await?;
                    Ok(cri::RunPodSandboxResponse { pod_sandbox_id })
                })
                .await
        }

        async fn stop_pod_sandbox(
            &self,
            request: Request<cri::StopPodSandboxRequest>,
        ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("StopPodSandbox", request, |req| async move {
                    shared
                        .deps
                        .sandboxes
                        .stop(&req.pod_sandbox_id, shared.deps.containers.pod_hook())
                        .await?;
                    Ok(cri::StopPodSandboxResponse {})
                })
                .await
        }

        async fn remove_pod_sandbox(
            &self,
            request: Request<cri::RemovePodSandboxRequest>,
        ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("RemovePodSandbox", request, |req| async move {
                    shared
                        .deps
                        .sandboxes
                        .remove(&req.pod_sandbox_id, shared.deps.containers.pod_hook())
                        .await?;
                    Ok(cri::RemovePodSandboxResponse {})
                })
                .await
        }

        async fn pod_sandbox_status(
            &self,
            request: Request<cri::PodSandboxStatusRequest>,
        ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("PodSandboxStatus", request, |req| async move {
                    let record = shared.deps.sandboxes.get(&req.pod_sandbox_id)?;
                    Ok(pods::status_to_cri(&record, req.verbose))
                })
                .await
        }

        async fn list_pod_sandbox(
            &self,
            request: Request<cri::ListPodSandboxRequest>,
        ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("ListPodSandbox", request, |req| async move {
                    let items = pods::list(shared, req.filter);
                    Ok(cri::ListPodSandboxResponse { items })
                })
                .await
        }

        async fn stream_pod_sandboxes(
            &self,
            request: Request<cri::StreamPodSandboxesRequest>,
        ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
            let shared = &self.shared;
            shared
                .rpc("StreamPodSandboxes", request, |req| async move {
                    let items = pods::list(shared, req.filter);
                    Ok(list_stream::stream(items, |pod_sandboxes| {
                        cri::StreamPodSandboxesResponse { pod_sandboxes }
                    }))
                })
                .await
        }

        async fn update_pod_sandbox_resources(
            &self,
            request: Request<cri::UpdatePodSandboxResourcesRequest>,
        ) -> Result<Response<cri::UpdatePodSandboxResourcesResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("UpdatePodSandboxResources", request, |req| async move {
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
                })
                .await
        }

        async fn create_container(
            &self,
            request: Request<cri::CreateContainerRequest>,
        ) -> Result<Response<cri::CreateContainerResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("CreateContainer", request, |req| async move {
                    // The pod's seccomp profile is the default of its containers; a missing
                    // pod is reported by create below.
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
                })
                .await
        }

        async fn start_container(
            &self,
            request: Request<cri::StartContainerRequest>,
        ) -> Result<Response<cri::StartContainerResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("StartContainer", request, |req| async move {
                    shared.deps.containers.start(&req.container_id).await?;
                    Ok(cri::StartContainerResponse {})
                })
                .await
        }

        async fn stop_container(
            &self,
            request: Request<cri::StopContainerRequest>,
        ) -> Result<Response<cri::StopContainerResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("StopContainer", request, |req| async move {
                    let timeout = Duration::from_secs(req.timeout.max(0) as u64);
                    shared.deps.containers.stop(&req.container_id, timeout).await?;
                    Ok(cri::StopContainerResponse {})
                })
                .await
        }

        async fn remove_container(
            &self,
            request: Request<cri::RemoveContainerRequest>,
        ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("RemoveContainer", request, |req| async move {
                    shared.deps.containers.remove(&req.container_id).await?;
                    Ok(cri::RemoveContainerResponse {})
                })
                .await
        }

        async fn list_containers(
            &self,
            request: Request<cri::ListContainersRequest>,
        ) -> Result<Response<cri::ListContainersResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("ListContainers", request, |req| async move {
                    let containers = containers::list(shared, req.filter)?;
                    Ok(cri::ListContainersResponse { containers })
                })
                .await
        }

        async fn stream_containers(
            &self,
            request: Request<cri::StreamContainersRequest>,
        ) -> Result<Response<Self::StreamContainersStream>, Status> {
            let shared = &self.shared;
            shared
                .rpc("StreamContainers", request, |req| async move {
                    let items = containers::list(shared, req.filter)?;
                    Ok(list_stream::stream(items, |containers| {
                        cri::StreamContainersResponse { containers }
                    }))
                })
                .await
        }

        async fn container_status(
            &self,
            request: Request<cri::ContainerStatusRequest>,
        ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("ContainerStatus", request, |req| async move {
                    let record = shared.deps.containers.get(&req.container_id)?;
                    let info = if req.verbose {
                        let spec = shared.deps.containers.spec_json(&record);
                        containers::verbose_info(&record, spec)
                    } else {
                        Default::default()
                    };
                    Ok(containers::status_to_cri(&record, info))
                })
                .await
        }

        async fn update_container_resources(
            &self,
            request: Request<cri::UpdateContainerResourcesRequest>,
        ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("UpdateContainerResources", request, |req| async move {
                    let resources = containers::resources(req.linux);
                    shared
                        .deps
                        .containers
                        .update_resources(&req.container_id, resources)
                        .await?;
                    Ok(cri::UpdateContainerResourcesResponse {})
                })
                .await
        }

        async fn reopen_container_log(
            &self,
            request: Request<cri::ReopenContainerLogRequest>,
        ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("ReopenContainerLog", request, |req| async move {
                    shared.deps.containers.reopen_log(&req.container_id).await?;
                    Ok(cri::ReopenContainerLogResponse {})
                })
                .await
        }

        async fn exec_sync(
            &self,
            request: Request<cri::ExecSyncRequest>,
        ) -> Result<Response<cri::ExecSyncResponse>, Status> {
            let shared = &self.shared;
            let limit = shared.deps.config.streaming.exec_sync_output_limit;
            shared
                .rpc("ExecSync", request, |req| {
                    crate::streaming::exec_sync(&shared.deps.containers, req, limit)
                })
                .await
        }

        async fn exec(
            &self,
            request: Request<cri::ExecRequest>,
        ) -> Result<Response<cri::ExecResponse>, Status> {
            let deps = &self.shared.deps;
            self.shared
                .rpc("Exec", request, |req| async move {
                    // kubelet 1.36 names the API server audit event behind the session, so that
                    // what runs in the container can be traced back to who asked.
                    if !req.audit_request_id.is_empty() {
                        tracing::info!(audit_request_id = %req.audit_request_id, "streaming session requested");
                    }
                    crate::streaming::exec_url(&deps.containers, &deps.streaming, req)
                })
                .await
        }

        async fn attach(
            &self,
            request: Request<cri::AttachRequest>,
        ) -> Result<Response<cri::AttachResponse>, Status> {
            let deps = &self.shared.deps;
            self.shared
                .rpc("Attach", request, |req| async move {
                    // kubelet 1.36 names the API server audit event behind the session, so that
                    // what runs in the container can be traced back to who asked.
                    if !req.audit_request_id.is_empty() {
                        tracing::info!(audit_request_id = %req.audit_request_id, "streaming session requested");
                    }
                    crate::streaming::attach_url(&deps.containers, &deps.streaming, req)
                })
                .await
        }

        async fn port_forward(
            &self,
            request: Request<cri::PortForwardRequest>,
        ) -> Result<Response<cri::PortForwardResponse>, Status> {
            let deps = &self.shared.deps;
            self.shared
                .rpc("PortForward", request, |req| async move {
                    crate::streaming::port_forward_url(&deps.sandboxes, &deps.streaming, req)
                })
                .await
        }

        async fn get_container_events(
            &self,
            request: Request<cri::GetEventsRequest>,
        ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
            let shared = &self.shared;
            shared
                .rpc("GetContainerEvents", request, |_| async move {
                    let stream: Self::GetContainerEventsStream =
                        Box::pin(crate::events::subscribe(shared));
                    Ok(stream)
                })
                .await
        }

        async fn container_stats(
            &self,
            request: Request<cri::ContainerStatsRequest>,
        ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("ContainerStats", request, |req| stats::container_stats(stats, req))
                .await
        }

        async fn list_container_stats(
            &self,
            request: Request<cri::ListContainerStatsRequest>,
        ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("ListContainerStats", request, |req| stats::list_container_stats(stats, req))
                .await
        }

        async fn pod_sandbox_stats(
            &self,
            request: Request<cri::PodSandboxStatsRequest>,
        ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("PodSandboxStats", request, |req| stats::pod_sandbox_stats(stats, req))
                .await
        }

        async fn stream_container_stats(
            &self,
            request: Request<cri::StreamContainerStatsRequest>,
        ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("StreamContainerStats", request, |req| async move {
                    let list = cri::ListContainerStatsRequest { filter: req.filter };
                    let items = stats::list_container_stats(stats, list).await?.stats;
                    Ok(list_stream::stream(items, |container_stats| {
                        cri::StreamContainerStatsResponse { container_stats }
                    }))
                })
                .await
        }

        async fn stream_pod_sandbox_stats(
            &self,
            request: Request<cri::StreamPodSandboxStatsRequest>,
        ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("StreamPodSandboxStats", request, |req| async move {
                    let list = cri::ListPodSandboxStatsRequest { filter: req.filter };
                    let items = stats::list_pod_sandbox_stats(stats, list).await?.stats;
                    Ok(list_stream::stream(items, |pod_sandbox_stats| {
                        cri::StreamPodSandboxStatsResponse { pod_sandbox_stats }
                    }))
                })
                .await
        }

        async fn stream_pod_sandbox_metrics(
            &self,
            request: Request<cri::StreamPodSandboxMetricsRequest>,
        ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("StreamPodSandboxMetrics", request, |_| async move {
                    let items = stats::list_pod_sandbox_metrics(stats).await?.pod_metrics;
                    Ok(list_stream::stream(items, |pod_sandbox_metrics| {
                        cri::StreamPodSandboxMetricsResponse { pod_sandbox_metrics }
                    }))
                })
                .await
        }

        async fn list_pod_sandbox_stats(
            &self,
            request: Request<cri::ListPodSandboxStatsRequest>,
        ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("ListPodSandboxStats", request, |req| stats::list_pod_sandbox_stats(stats, req))
                .await
        }

        async fn list_metric_descriptors(
            &self,
            request: Request<cri::ListMetricDescriptorsRequest>,
        ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
            self.shared
                .rpc("ListMetricDescriptors", request, |_| async {
                    Ok(stats::list_metric_descriptors())
                })
                .await
        }

        async fn list_pod_sandbox_metrics(
            &self,
            request: Request<cri::ListPodSandboxMetricsRequest>,
        ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
            let stats = &self.shared.deps.stats;
            self.shared
                .rpc("ListPodSandboxMetrics", request, |_| stats::list_pod_sandbox_metrics(stats))
                .await
        }

        async fn checkpoint_container(
            &self,
            request: Request<cri::CheckpointContainerRequest>,
        ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
            let shared = &self.shared;
            shared
                .rpc("CheckpointContainer", request, |req| async move {
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
                            std::path::Path::new(&req.location),
                            Some(Duration::from_secs(timeout)),
                        )
                        .await?;
                    Ok(cri::CheckpointContainerResponse {})
                })
                .await
        }
    }
    unimplemented {}
}
