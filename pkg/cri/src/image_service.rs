//! ImageService: translation between CRI and `berth-image`.

use std::collections::HashMap;

use berth_cri_api::v1 as cri;
use berth_cri_api::v1::image_service_server::ImageService;
use berth_image::ImageView;
use tonic::{Request, Response, Status};

use crate::ImageApi;
use crate::error::CriError;
use crate::list_stream::{self, ListStream};

fn image_name(spec: Option<&cri::ImageSpec>) -> Result<&str, CriError> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name),
        _ => Err(CriError::InvalidArgument(
            "an image reference is required".into(),
        )),
    }
}

fn to_cri(view: &ImageView) -> cri::Image {
    let record = &view.record;
    let (uid, username) = record.cri_user();
    cri::Image {
        id: record.id.clone(),
        repo_tags: record.repo_tags.clone(),
        repo_digests: record.repo_digests.clone(),
        size: record.size,
        uid: uid.map(|value| cri::Int64Value { value }),
        username,
        spec: Some(cri::ImageSpec {
            image: record.id.clone(),
            ..Default::default()
        }),
        pinned: view.pinned,
    }
}

/// ListImages and StreamImages: the images `filter` names (all without one).
fn list(shared: &crate::Shared, filter: Option<cri::ImageFilter>) -> Vec<cri::Image> {
    let filter = filter.and_then(|f| f.image).map(|s| s.image);
    shared
        .deps
        .images
        .list(filter.as_deref())
        .iter()
        .map(to_cri)
        .collect()
}

/// `ImageSpec.runtime_handler` (KEP-4216): an unknown handler is refused, as the API asks. Every
/// configured handler shares the one image store (same platform, same snapshotter), so a known
/// handler's pull is the default pull; the check only keeps a typo from pulling silently.
fn check_runtime_handler(
    shared: &crate::Shared,
    spec: Option<&cri::ImageSpec>,
) -> Result<(), CriError> {
    let handler = spec.map(|s| s.runtime_handler.as_str()).unwrap_or_default();
    let handlers = &shared.deps.config.runtime.handlers;
    if handler.is_empty() || handlers.contains_key(handler) {
        return Ok(());
    }
    let known: Vec<&str> = handlers.keys().map(String::as_str).collect();
    Err(CriError::InvalidArgument(format!(
        "runtime handler {handler:?} is not configured (configured: {}); images are pulled for a \
         handler only if [runtime.handlers.{handler}] exists",
        known.join(", ")
    )))
}

pub(crate) fn credentials(
    auth: Option<cri::AuthConfig>,
) -> Result<Option<berth_registry::Credentials>, CriError> {
    let Some(auth) = auth else { return Ok(None) };
    Ok(berth_registry::Credentials::from_cri(
        &auth.username,
        &auth.password,
        &auth.auth,
        &auth.identity_token,
        &auth.registry_token,
    )
    .map_err(berth_image::ImageError::from)?)
}

#[tonic::async_trait]
impl ImageService for ImageApi {
    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let name = image_name(req.image.as_ref())?;
                check_runtime_handler(shared, req.image.as_ref())?;
                let creds = credentials(req.auth)?;
                let record = shared.deps.images.pull(name, creds).await?;
                Ok(cri::PullImageResponse {
                    image_ref: record.id,
                })
            })
            .await
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let name = image_name(req.image.as_ref())?;
                // CRI: an unknown image is an empty response, not an error.
                let Some(view) = shared.deps.images.status(name) else {
                    return Ok(cri::ImageStatusResponse::default());
                };
                let mut info = HashMap::new();
                if req.verbose {
                    let config = shared.deps.images.config_json(&view.record.id)?;
                    let config: serde_json::Value =
                        serde_json::from_slice(&config).unwrap_or_default();
                    let verbose = serde_json::json!({
                        "imageSpec": config,
                        "manifestDigest": view.record.manifest_digest,
                        "chainID": view.record.top_chain_id(),
                        "layers": view.record.layers,
                    });
                    info.insert("info".to_string(), verbose.to_string());
                }
                Ok(cri::ImageStatusResponse {
                    image: Some(to_cri(&view)),
                    info,
                })
            })
            .await
    }

    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let images = list(shared, req.filter);
                Ok(cri::ListImagesResponse { images })
            })
            .await
    }

    type StreamImagesStream = ListStream<cri::StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let images = list(shared, req.filter);
                Ok(list_stream::stream(images, |images| {
                    cri::StreamImagesResponse { images }
                }))
            })
            .await
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let name = image_name(req.image.as_ref())?;
                shared
                    .deps
                    .images
                    .remove(name, &shared.deps.containers)
                    .await?;
                Ok(cri::RemoveImageResponse {})
            })
            .await
    }

    async fn image_fs_info(
        &self,
        request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |_| async move {
                let images = shared.deps.images.clone();
                let containers = shared.deps.containers.clone();
                let (images_usage, layers_usage) = tokio::task::spawn_blocking(move || {
                    (images.fs_usage(), containers.writable_layers_usage())
                })
                .await
                .map_err(|source| CriError::Task {
                    what: "fs usage",
                    source,
                })?;
                let images_usage = images_usage?;
                let layers_usage = layers_usage?;
                let timestamp = berth_clock::now_ns();
                let usage =
                    |mountpoint: &std::path::Path, bytes: u64, inodes: u64| cri::FilesystemUsage {
                        timestamp,
                        fs_id: Some(cri::FilesystemIdentifier {
                            mountpoint: mountpoint.display().to_string(),
                        }),
                        used_bytes: Some(cri::UInt64Value { value: bytes }),
                        inodes_used: Some(cri::UInt64Value { value: inodes }),
                    };
                // Images (content and snapshots) and writable layers each on their own: kubelet
                // compares the two mountpoints' devices to tell a split image filesystem
                // (image.store_dir elsewhere) from a shared one, and evicts on each.
                Ok(cri::ImageFsInfoResponse {
                    image_filesystems: vec![usage(
                        shared.deps.images.mountpoint(),
                        images_usage.used_bytes,
                        images_usage.inodes_used,
                    )],
                    container_filesystems: vec![usage(
                        shared.deps.containers.writable_layers_dir(),
                        layers_usage.bytes,
                        layers_usage.inodes,
                    )],
                })
            })
            .await
    }
}
