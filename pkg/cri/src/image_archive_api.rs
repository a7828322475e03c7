//! `berth.images.v1.Images` Commit, Save and Load (proto/images/v1): translation to berth-image's
//! commit, save and load; the methods of the service's impl (in `pull_progress`) call these.

use std::process::Stdio;
use std::time::Duration;

use berth_api::images::v1 as api;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::ImageApi;
use crate::error::CriError;
use crate::ids::{Ids, RpcRequest};

pub(crate) type SaveStream = ReceiverStream<Result<api::Chunk, Status>>;

/// Archive chunks queued toward a client or the loader: enough to keep both sides busy, a few
/// MiB at most.
const CHUNKS_QUEUED: usize = 4;

/// How long the OCI runtime may take to pause or resume a container.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);

impl RpcRequest for api::CommitRequest {
    const METHOD: &'static str = "berth.images.v1.Images/Commit";

    fn ids(&self) -> Ids<'_> {
        Ids {
            container_id: &self.container_id,
            image: &self.reference,
            ..Ids::default()
        }
    }
}

impl RpcRequest for api::SaveRequest {
    const METHOD: &'static str = "berth.images.v1.Images/Save";
}

/// Load's request: the archive's chunks.
impl RpcRequest for Streaming<api::Chunk> {
    const METHOD: &'static str = "berth.images.v1.Images/Load";
}

pub(crate) async fn commit(
    api: &ImageApi,
    request: Request<api::CommitRequest>,
) -> Result<Response<api::CommitResponse>, Status> {
    let shared = &api.shared;
    shared
        .rpc(request, |req| async move {
            let container = shared.deps.containers.get(&req.container_id)?;
            if shared.deps.images.status(&container.image_id).is_none() {
                return Err(CriError::NotFound(format!(
                    "the image {} of container {} is no longer present",
                    container.image_id, container.id
                )));
            }
            let options = berth_image::CommitOptions {
                reference: Some(req.reference.clone()).filter(|r| !r.trim().is_empty()),
                author: req.author,
                message: req.message,
                created_by: format!("berth commit {}", container.id),
                ids: pod_ids(shared, &container.sandbox_id),
            };
            let paused = if req.pause {
                if container.state() != berth_container::ContainerState::Running {
                    return Err(CriError::FailedPrecondition(format!(
                        "container {} is not running: nothing to pause",
                        container.id
                    )));
                }
                runtime(&container, "pause").await?;
                true
            } else {
                false
            };
            let committed = shared
                .deps
                .images
                .commit(&container.image_id, &container.writable_layer(), options)
                .await;
            if paused && let Err(e) = runtime(&container, "resume").await {
                tracing::warn!(container = %container.id, error = %e, "resuming after commit");
            }
            let committed = committed?;
            Ok(api::CommitResponse {
                image_id: committed.record.id,
                reference: committed.reference.unwrap_or_default(),
                layer_digest: committed.layer_digest,
                diff_id: committed.diff_id,
            })
        })
        .await
}

/// The pod's user namespace mapping as the layer writer takes it (empty without one): such a
/// container's upper dir holds host ids (see berth-container's userns module).
fn pod_ids(shared: &crate::Shared, sandbox_id: &str) -> berth_snapshot::IdMap {
    let Some(maps) = shared
        .deps
        .sandboxes
        .get(sandbox_id)
        .ok()
        .and_then(|s| s.userns)
    else {
        return berth_snapshot::IdMap::default();
    };
    let range = |container_id, host_id, length| berth_snapshot::IdRange {
        container_id,
        host_id,
        length,
    };
    berth_snapshot::IdMap {
        uids: maps
            .uids
            .iter()
            .map(|m| range(m.container_id, m.host_id, m.length))
            .collect(),
        gids: maps
            .gids
            .iter()
            .map(|m| range(m.container_id, m.host_id, m.length))
            .collect(),
    }
}

/// `<runtime> --root R pause|resume ID`: the container's cgroup frozen while its files are read.
async fn runtime(container: &berth_container::ContainerRecord, verb: &str) -> Result<(), CriError> {
    let mut cmd = tokio::process::Command::new(&container.runtime_path);
    cmd.arg("--root")
        .arg(&container.runtime_root)
        .arg(verb)
        .arg(&container.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let what = format!(
        "{} {verb} {}",
        container.runtime_path.display(),
        container.id
    );
    let failed = |failure| CriError::PauseRuntime {
        command: what.clone(),
        failure,
    };
    let child = cmd.spawn().map_err(|e| failed(RuntimeFailure::Spawn(e)))?;
    let output = tokio::time::timeout(PAUSE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| failed(RuntimeFailure::Timeout(PAUSE_TIMEOUT)))?
        .map_err(|e| failed(RuntimeFailure::Wait(e)))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(RuntimeFailure::Exited {
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }))
    }
}

/// Why `<runtime> pause|resume` failed (public only because `CriError` carries it).
#[derive(Debug, thiserror::Error)]
pub enum RuntimeFailure {
    #[error("{0}")]
    Spawn(#[source] std::io::Error),
    #[error("{0}")]
    Wait(#[source] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{stderr}")]
    Exited { stderr: String },
}

pub(crate) async fn save(
    api: &ImageApi,
    request: Request<api::SaveRequest>,
) -> Result<Response<SaveStream>, Status> {
    let shared = &api.shared;
    shared
        .rpc(request, |req| async move {
            if req.references.is_empty() {
                return Err(CriError::InvalidArgument(
                    "name at least one image to save".into(),
                ));
            }
            let mut ids = Vec::with_capacity(req.references.len());
            for name in &req.references {
                let view = shared
                    .deps
                    .images
                    .status(name.trim())
                    .ok_or_else(|| CriError::NotFound(format!("image {name:?} not found")))?;
                if !ids.contains(&view.record.id) {
                    ids.push(view.record.id);
                }
            }
            let mut chunks = shared.deps.images.save(ids);
            let (tx, rx) = mpsc::channel(CHUNKS_QUEUED);
            // The archive is made on a blocking thread; this forwards it, and a client that goes
            // away drops `chunks`, which stops the writer.
            tokio::spawn(async move {
                while let Some(chunk) = chunks.recv().await {
                    let message = chunk
                        .map(|data| api::Chunk {
                            data: data.to_vec(),
                        })
                        .map_err(|e| Status::from(CriError::Image(e)));
                    if tx.send(message).await.is_err() {
                        return;
                    }
                }
            });
            Ok(ReceiverStream::new(rx))
        })
        .await
}

pub(crate) async fn load(
    api: &ImageApi,
    request: Request<Streaming<api::Chunk>>,
) -> Result<Response<api::LoadResponse>, Status> {
    let shared = &api.shared;
    shared
        .rpc(request, |mut stream| async move {
            let (tx, rx) = mpsc::channel::<berth_image::ArchiveChunk>(CHUNKS_QUEUED);
            let feeding = tokio::spawn(async move {
                loop {
                    let next = match stream.message().await {
                        Ok(Some(chunk)) => Ok(chunk.data.into()),
                        Ok(None) => return,
                        Err(status) => Err(std::io::Error::other(format!(
                            "the client's stream failed: {}",
                            status.message()
                        ))),
                    };
                    let failed = next.is_err();
                    // The loader stopped (it failed, and answers with why): stop reading.
                    if tx.send(next).await.is_err() || failed {
                        return;
                    }
                }
            });
            let loaded = shared.deps.images.load(rx).await;
            feeding.abort();
            Ok(api::LoadResponse {
                images: loaded?
                    .into_iter()
                    .map(|image| api::LoadedImage {
                        id: image.id,
                        names: image.names,
                    })
                    .collect(),
            })
        })
        .await
}
