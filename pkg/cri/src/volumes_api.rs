//! `berth.volumes.v1.Volumes` (proto/volumes/v1): named volumes, served beside CRI.
//!
//! Only translation: volumes are berth-volume's. What it needs to know about containers (whose
//! mounts use which host paths) comes from berth-container's records, through [`MountUsers`].

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_api::volumes::v1 as api;
use berth_api::volumes::v1::volumes_server::{Volumes as VolumesRpc, VolumesServer};
use berth_container::{ContainerFilter, ContainerService};
use berth_volume::{LabelFilter, MountUser, MountUsers, Volume, VolumeError, Volumes};
use tonic::{Request, Response, Status};

use crate::error::CriError;
use crate::ids::RpcRequest;
use crate::{CriService, Shared};

impl RpcRequest for api::CreateVolumeRequest {
    const METHOD: &'static str = "berth.volumes.v1.Volumes/Create";
}
impl RpcRequest for api::InspectVolumeRequest {
    const METHOD: &'static str = "berth.volumes.v1.Volumes/Inspect";
}
impl RpcRequest for api::ListVolumesRequest {
    const METHOD: &'static str = "berth.volumes.v1.Volumes/List";
}
impl RpcRequest for api::RemoveVolumeRequest {
    const METHOD: &'static str = "berth.volumes.v1.Volumes/Remove";
}
impl RpcRequest for api::PruneVolumesRequest {
    const METHOD: &'static str = "berth.volumes.v1.Volumes/Prune";
}

/// The volumes half (tonic needs one type per service).
#[derive(Clone)]
pub struct VolumesApi {
    shared: Arc<Shared>,
    volumes: Volumes,
}

/// Every container's mounts, whatever its state: a stopped container still holds its volumes.
struct ContainerMounts(ContainerService);

impl MountUsers for ContainerMounts {
    fn mounts(&self) -> Vec<MountUser> {
        self.0
            .list(&ContainerFilter::default())
            .into_iter()
            .flat_map(|record| {
                let (id, name) = (record.id, record.config.name);
                record.config.mounts.into_iter().map(move |m| MountUser {
                    container_id: id.clone(),
                    container_name: name.clone(),
                    host_path: m.host_path.into(),
                })
            })
            .collect()
    }
}

impl CriService {
    /// The Berth volumes service, served beside CRI on the same socket. Opens `<root>/volumes`,
    /// finishing what a crash interrupted, so call it at startup.
    pub fn volumes_server(&self) -> Result<VolumesServer<VolumesApi>, CriError> {
        let deps = &self.shared.deps;
        let users = Arc::new(ContainerMounts(deps.containers.clone()));
        let volumes = Volumes::open(&deps.config.root, users)?;
        let grpc = &deps.config.grpc;
        Ok(VolumesServer::new(VolumesApi {
            shared: self.shared.clone(),
            volumes,
        })
        .max_decoding_message_size(grpc.max_recv_message_size)
        .max_encoding_message_size(grpc.max_send_message_size))
    }
}

fn to_api(v: Volume) -> api::Volume {
    api::Volume {
        name: v.name,
        mountpoint: v.mountpoint.to_string_lossy().into_owned(),
        labels: v.labels.into_iter().collect(),
        created_at: v.created_at_ns,
        used_by: v.used_by,
        driver: "local".into(),
    }
}

fn filters(filters: Vec<api::LabelFilter>) -> Result<Vec<LabelFilter>, CriError> {
    filters
        .into_iter()
        .map(|f| {
            if f.key.is_empty() {
                return Err(CriError::InvalidArgument(
                    "a label filter needs a key".into(),
                ));
            }
            Ok(LabelFilter {
                key: f.key,
                value: f.value,
            })
        })
        .collect()
}

/// Runs volume work (directory trees, fsyncs) off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, VolumeError> + Send + 'static,
) -> Result<T, CriError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| CriError::Task {
            what: "volume",
            source,
        })?
        .map_err(CriError::from)
}

#[tonic::async_trait]
impl VolumesRpc for VolumesApi {
    async fn create(
        &self,
        request: Request<api::CreateVolumeRequest>,
    ) -> Result<Response<api::CreateVolumeResponse>, Status> {
        let volumes = self.volumes.clone();
        self.shared
            .rpc(request, |req| async move {
                let labels: BTreeMap<String, String> = req.labels.into_iter().collect();
                let name = req.name;
                let volume = blocking(move || volumes.create(Some(&name), labels)).await?;
                Ok(api::CreateVolumeResponse {
                    volume: Some(to_api(volume)),
                })
            })
            .await
    }

    async fn inspect(
        &self,
        request: Request<api::InspectVolumeRequest>,
    ) -> Result<Response<api::InspectVolumeResponse>, Status> {
        let volumes = self.volumes.clone();
        self.shared
            .rpc(request, |req| async move {
                let volume = blocking(move || volumes.inspect(&req.name)).await?;
                Ok(api::InspectVolumeResponse {
                    volume: Some(to_api(volume)),
                })
            })
            .await
    }

    async fn list(
        &self,
        request: Request<api::ListVolumesRequest>,
    ) -> Result<Response<api::ListVolumesResponse>, Status> {
        let volumes = self.volumes.clone();
        self.shared
            .rpc(request, |req| async move {
                let filters = filters(req.filters)?;
                let list = blocking(move || Ok(volumes.list(&filters))).await?;
                Ok(api::ListVolumesResponse {
                    volumes: list.into_iter().map(to_api).collect(),
                })
            })
            .await
    }

    async fn remove(
        &self,
        request: Request<api::RemoveVolumeRequest>,
    ) -> Result<Response<api::RemoveVolumeResponse>, Status> {
        let volumes = self.volumes.clone();
        self.shared
            .rpc(request, |req| async move {
                let reclaimed_bytes = blocking(move || volumes.remove(&req.name)).await?;
                Ok(api::RemoveVolumeResponse { reclaimed_bytes })
            })
            .await
    }

    async fn prune(
        &self,
        request: Request<api::PruneVolumesRequest>,
    ) -> Result<Response<api::PruneVolumesResponse>, Status> {
        let volumes = self.volumes.clone();
        self.shared
            .rpc(request, |req| async move {
                let filters = filters(req.filters)?;
                let pruned = blocking(move || volumes.prune(&filters)).await?;
                Ok(api::PruneVolumesResponse {
                    removed: pruned.names,
                    reclaimed_bytes: pruned.reclaimed_bytes,
                })
            })
            .await
    }
}
