//! CRI `runtime.v1` RuntimeService and ImageService.
//!
//! This crate is a thin translation layer: it unpacks requests, calls the capability crates, maps their
//! errors to gRPC status codes (all in [`error`]) and instruments every RPC with a tracing span and the
//! per-method metrics (all in [`instrument`]). The work itself lives in the capability crates.

mod cdi;
mod containers;
mod containers_api;
mod error;
mod events;
#[cfg(test)]
mod hostile_tests;
mod ids;
mod image_archive_api;
mod image_service;
mod image_volumes;
mod inflight;
mod instrument;
mod list_stream;
mod pods;
mod pull_progress;
mod registries_api;
mod runtime_service;
mod security;
mod signal;
mod stats;
mod status;
mod streaming;
mod volumes_api;

use std::path::PathBuf;
use std::sync::Arc;

use berth_config::Config;
use berth_cri_api::v1::image_service_server::ImageServiceServer;
use berth_cri_api::v1::runtime_service_server::RuntimeServiceServer;
use berth_metrics::Metrics;
use berth_network::PodCidrStore;
use berth_store::Store;

pub use error::CriError;
pub use streaming::StreamingBackend;

/// What the service needs, built by berthd at startup.
pub struct Dependencies {
    pub config: Config,
    /// The configuration files that were applied, for `Status` verbose info.
    pub config_sources: Vec<PathBuf>,
    pub metrics: Metrics,
    pub store: Store,
    pub pod_cidrs: Arc<PodCidrStore>,
    pub images: berth_image::ImageService,
    pub sandboxes: berth_sandbox::SandboxService,
    pub containers: berth_container::ContainerService,
    /// Where Exec, Attach and PortForward URLs point.
    pub streaming: Arc<berth_streaming::StreamingServer>,
    pub stats: Arc<berth_stats::StatsService>,
}

/// State shared by both services.
pub(crate) struct Shared {
    pub(crate) deps: Dependencies,
    /// AppArmor and SELinux on this host, detected once.
    pub(crate) lsm: berth_spec::HostLsm,
    pub(crate) inflight: inflight::InFlight,
    pub(crate) events: events::EventHub,
}

/// Both CRI services over one shared state.
#[derive(Clone)]
pub struct CriService {
    shared: Arc<Shared>,
}

/// The RuntimeService half (tonic needs one type per service).
#[derive(Clone)]
pub struct RuntimeApi {
    shared: Arc<Shared>,
}

/// The ImageService half.
#[derive(Clone)]
pub struct ImageApi {
    shared: Arc<Shared>,
}

impl CriService {
    pub fn new(deps: Dependencies) -> CriService {
        CriService {
            shared: Arc::new(Shared {
                lsm: berth_spec::HostLsm::detect(&deps.config.state),
                deps,
                inflight: inflight::InFlight::default(),
                events: events::EventHub::default(),
            }),
        }
    }

    /// Resolves once no RPC is being handled; shutdown waits for this after it stops accepting.
    pub async fn wait_idle(&self) {
        self.shared.inflight.idle().await
    }

    /// RPCs being handled right now.
    pub fn in_flight(&self) -> usize {
        self.shared.inflight.count()
    }

    /// The RuntimeService, with message size limits from the configuration.
    pub fn runtime_server(&self) -> RuntimeServiceServer<RuntimeApi> {
        let grpc = &self.shared.deps.config.grpc;
        RuntimeServiceServer::new(RuntimeApi {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(grpc.max_recv_message_size)
        .max_encoding_message_size(grpc.max_send_message_size)
    }

    /// The ImageService, with message size limits from the configuration.
    pub fn image_server(&self) -> ImageServiceServer<ImageApi> {
        let grpc = &self.shared.deps.config.grpc;
        ImageServiceServer::new(ImageApi {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(grpc.max_recv_message_size)
        .max_encoding_message_size(grpc.max_send_message_size)
    }
}

/// The CRI version this runtime speaks, and its own version.
pub const RUNTIME_NAME: &str = "berth";
pub const RUNTIME_API_VERSION: &str = "v1";
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// `VersionResponse.version`: the version of the kubelet runtime API, "0.1.0" by convention.
pub const KUBELET_API_VERSION: &str = "0.1.0";

/// The request translation functions, for the fuzz targets in `fuzz/` (not a stable API).
///
/// Each takes a decoded CRI request and runs exactly the conversion the RPC handler runs before
/// calling into the capability crates, so arbitrary requests can be fed through it without a
/// running service.
#[doc(hidden)]
pub mod fuzzing {
    use berth_config::SeccompDefault;
    use berth_cri_api::v1 as cri;
    use berth_spec::HostLsm;

    use crate::security::SecurityInputs;
    use crate::{containers, pods};

    /// `RunPodSandbox`: the sandbox config berth-sandbox would get.
    pub fn run_pod_sandbox(req: cri::RunPodSandboxRequest) -> Result<String, crate::CriError> {
        pods::sandbox_config(req).map(|c| format!("{c:?}"))
    }

    /// `CreateContainer`: the container config berth-container would get, on a host with
    /// the given LSMs, with the node's seccomp default and the pod's profile (string form).
    pub fn create_container(
        req: cri::CreateContainerRequest,
        lsm: &HostLsm,
        node_default: SeccompDefault,
        pod_seccomp: Option<&str>,
    ) -> Result<String, crate::CriError> {
        let inputs = SecurityInputs {
            node_default,
            lsm,
            pod_seccomp,
        };
        containers::create_request(req, &inputs).map(|c| format!("{c:?}"))
    }

    /// `UpdateContainerResources`.
    pub fn update_container_resources(req: cri::UpdateContainerResourcesRequest) -> String {
        format!("{:?}", containers::resources(req.linux))
    }

    /// `ListContainers`' filter.
    pub fn list_containers(req: cri::ListContainersRequest) -> Result<String, crate::CriError> {
        containers::filter(req.filter).map(|f| format!("{f:?}"))
    }

    /// `ListPodSandbox`'s filter.
    pub fn list_pod_sandbox(req: cri::ListPodSandboxRequest) -> String {
        format!("{:?}", pods::filter(req.filter))
    }
}
