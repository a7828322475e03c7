//! `berth.images.v1.Images` (proto/images/v1): pull progress, which CRI's PullImage cannot report.
//!
//! Only translation: the pull and its progress are berth-image's ([`berth_image::ProgressWatcher`]
//! throttles and keeps only the latest state), errors map to the status CRI's PullImage answers.

use berth_api::images::v1 as api;
use berth_api::images::v1::images_server::{Images, ImagesServer};
use berth_cri_api::v1 as cri;
use berth_image::{LayerState, ProgressWatcher, PullOutcome, PullProgress};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::CriError;
use crate::ids::{Ids, RpcRequest};
use crate::{CriService, ImageApi};

/// Messages queued per stream beyond the one being sent: the watcher already drops stale states,
/// so a deep queue would only delay the newest.
const STREAM_BUFFER: usize = 1;

type ProgressStream = ReceiverStream<Result<api::PullProgress, Status>>;

impl RpcRequest for api::PullRequest {
    const METHOD: &'static str = "berth.images.v1.Images/PullWithProgress";

    fn ids(&self) -> Ids<'_> {
        Ids {
            image: &self.image,
            ..Ids::default()
        }
    }
}

impl RpcRequest for api::WatchPullRequest {
    const METHOD: &'static str = "berth.images.v1.Images/WatchPull";

    fn ids(&self) -> Ids<'_> {
        Ids {
            image: &self.image,
            ..Ids::default()
        }
    }
}

impl CriService {
    /// The Berth images service, served beside CRI on the same socket.
    pub fn images_progress_server(&self) -> ImagesServer<ImageApi> {
        let grpc = &self.shared.deps.config.grpc;
        ImagesServer::new(ImageApi {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(grpc.max_recv_message_size)
        .max_encoding_message_size(grpc.max_send_message_size)
    }
}

fn image_name(image: &str) -> Result<&str, CriError> {
    match image.trim() {
        "" => Err(CriError::InvalidArgument(
            "an image reference is required".into(),
        )),
        name => Ok(name),
    }
}

fn layer_state(state: LayerState) -> api::LayerState {
    match state {
        LayerState::Waiting => api::LayerState::Waiting,
        LayerState::Downloading => api::LayerState::Downloading,
        LayerState::Verifying => api::LayerState::Verifying,
        LayerState::Unpacking => api::LayerState::Unpacking,
        LayerState::Done => api::LayerState::Done,
        LayerState::Present => api::LayerState::Present,
    }
}

/// One snapshot as a message, or the status a failed pull ends with.
fn to_message(progress: PullProgress) -> Result<api::PullProgress, Status> {
    let image_id = match progress.outcome {
        Some(PullOutcome::Failed(e)) => {
            return Err(CriError::Image(berth_image::ImageError::Shared(e)).into());
        }
        Some(PullOutcome::Pulled { image_id }) => Some(image_id),
        None => None,
    };
    Ok(api::PullProgress {
        image: progress.image,
        layers: progress
            .layers
            .into_iter()
            .map(|l| api::LayerProgress {
                digest: l.digest,
                total_bytes: l.total_bytes,
                downloaded_bytes: l.downloaded_bytes,
                state: layer_state(l.state).into(),
            })
            .collect(),
        joined: progress.joined,
        done: image_id.is_some(),
        image_id: image_id.unwrap_or_default(),
        manifest_digest: progress.manifest_digest.unwrap_or_default(),
    })
}

/// Feeds `watcher`'s snapshots to `tx` until the final one (true) or until the client leaves
/// (false).
async fn forward(
    mut watcher: ProgressWatcher,
    tx: mpsc::Sender<Result<api::PullProgress, Status>>,
) -> bool {
    loop {
        let next = tokio::select! {
            next = watcher.next() => next,
            // Noticed while waiting for the next state, not only at the next send.
            _ = tx.closed() => return false,
        };
        let Some(progress) = next else { return true };
        if tx.send(to_message(progress)).await.is_err() {
            return false;
        }
    }
}

/// The same credentials as CRI's AuthConfig of the same fields gives.
fn credentials(
    auth: Option<api::AuthConfig>,
) -> Result<Option<berth_registry::Credentials>, CriError> {
    crate::image_service::credentials(auth.map(|a| cri::AuthConfig {
        username: a.username,
        password: a.password,
        auth: a.auth,
        identity_token: a.identity_token,
        registry_token: a.registry_token,
        ..Default::default()
    }))
}

#[tonic::async_trait]
impl Images for ImageApi {
    type PullWithProgressStream = ProgressStream;
    type WatchPullStream = ProgressStream;
    type SaveStream = crate::image_archive_api::SaveStream;

    // Commit, Save and Load: in image_archive_api.rs.
    async fn commit(
        &self,
        request: Request<api::CommitRequest>,
    ) -> Result<Response<api::CommitResponse>, Status> {
        crate::image_archive_api::commit(self, request).await
    }

    async fn save(
        &self,
        request: Request<api::SaveRequest>,
    ) -> Result<Response<Self::SaveStream>, Status> {
        crate::image_archive_api::save(self, request).await
    }

    async fn load(
        &self,
        request: Request<tonic::Streaming<api::Chunk>>,
    ) -> Result<Response<api::LoadResponse>, Status> {
        crate::image_archive_api::load(self, request).await
    }

    async fn pull_with_progress(
        &self,
        request: Request<api::PullRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let name = image_name(&req.image)?;
                let creds = credentials(req.auth)?;
                let (watcher, pulling) = shared.deps.images.pull_with_progress(name, creds);
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                // The pull runs in a task of its own, so a client that reads slowly never holds
                // it up; it is this stream's caller, so it stops (leaving the pull to any other
                // caller that joined it) when the client goes away.
                let pull = tokio::spawn(pulling);
                tokio::spawn(async move {
                    if forward(watcher, tx).await {
                        // Ended: the pull only has its bookkeeping left; let it finish.
                        let _ = pull.await;
                    } else {
                        pull.abort();
                    }
                });
                Ok(ReceiverStream::new(rx))
            })
            .await
    }

    async fn watch_pull(
        &self,
        request: Request<api::WatchPullRequest>,
    ) -> Result<Response<ProgressStream>, Status> {
        let shared = &self.shared;
        shared
            .rpc(request, |req| async move {
                let name = image_name(&req.image)?;
                let watcher =
                    shared.deps.images.watch_pull(name)?.ok_or_else(|| {
                        CriError::NotFound(format!("no pull of {name} in flight"))
                    })?;
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                tokio::spawn(forward(watcher, tx));
                Ok(ReceiverStream::new(rx))
            })
            .await
    }
}
