//! A pull's layers: the missing ones downloaded and unpacked in parallel (bounded), coalesced by
//! chain ID with other pulls in flight, and committed in order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use berth_registry::{Credentials, Endpoint, Reference};
use tokio::sync::Semaphore;

use super::download::download_and_unpack;
use crate::progress::{LayerState, PullTracker};
use crate::record::LayerRecord;
use crate::source::PullSource;
use crate::{ImageError, Inner};

/// What one pull fetches, shared by its layer tasks.
pub(super) struct Plan {
    pub(super) reference: Reference,
    pub(super) credentials: Option<Credentials>,
    /// The endpoint that served the manifest: blobs are fetched from it first.
    pub(super) endpoint: Endpoint,
    pub(super) source: Arc<dyn PullSource>,
    pub(super) layers: Vec<LayerRecord>,
    pub(super) downloads: Semaphore,
    pub(super) stall: Duration,
    /// Set when one layer failed: the others stop downloading and clean up before the pull
    /// returns, so a failed pull leaves nothing behind when it answers.
    pub(super) cancel: tokio::sync::watch::Sender<bool>,
    pub(super) progress: Arc<PullTracker>,
}

impl Plan {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
}

/// Ensures every layer's snapshot exists, downloading and unpacking the missing ones in parallel.
pub(super) async fn fetch_layers(inner: &Arc<Inner>, plan: &Arc<Plan>) -> Result<(), ImageError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, layer) in plan.layers.iter().enumerate() {
        // A committed snapshot implies its ancestors, so present layers need no task.
        if inner.snapshots.exists(&layer.chain_id) {
            inner.metrics.layers_reused.inc();
            plan.progress.layer(i, LayerState::Present);
        } else {
            let ensured = ensure_layer(inner.clone(), plan.clone(), i);
            let plan = plan.clone();
            tasks.spawn(async move {
                let result = ensured.await;
                if result.is_ok() {
                    plan.progress.layer(i, LayerState::Done);
                }
                result
            });
        }
    }
    let mut first_error: Option<ImageError> = None;
    // Every task is joined, not aborted: an aborted task would leave its blocking unpack running
    // (and its staging dir on disk) after the pull has answered.
    while let Some(joined) = tasks.join_next().await {
        let failed = match joined {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(ImageError::from(e)),
            Err(e) => Some(ImageError::task("layer")(e)),
        };
        if let Some(e) = failed
            && first_error.is_none()
        {
            plan.cancel.send_replace(true);
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

type LayerResult = Result<(), Arc<ImageError>>;
type LayerFuture = Pin<Box<dyn Future<Output = LayerResult> + Send>>;

/// Layer `i` exists once it and every layer below it are committed. Coalesced by chain ID, so a layer
/// shared with another pull in flight is fetched once.
fn ensure_layer(inner: Arc<Inner>, plan: Arc<Plan>, i: usize) -> LayerFuture {
    Box::pin(async move {
        let chain_id = plan.layers[i].chain_id.clone();
        // Another pull's run of this layer may fail for its own reasons (a layer of *its* image
        // failed and cancelled it; other endpoint or credentials): not this pull's verdict. So a
        // failed run this pull did not execute is run again (each attempt runs here or joins a
        // newer run, so this ends).
        loop {
            let ran_here = Arc::new(AtomicBool::new(false));
            let result = inner
                .layers
                .run(chain_id.clone(), layer_work(&inner, &plan, i, &ran_here))
                .await;
            if result.is_ok() || ran_here.load(Ordering::SeqCst) || plan.cancelled() {
                return result;
            }
            tracing::debug!(image = %plan.reference, layer = %plan.layers[i].digest, "a shared fetch of this layer failed in another pull; fetching it again");
        }
    })
}

/// The coalesced work of [`ensure_layer`]: marks `ran_here` so the caller knows the result is
/// its own.
fn layer_work(
    inner: &Arc<Inner>,
    plan: &Arc<Plan>,
    i: usize,
    ran_here: &Arc<AtomicBool>,
) -> impl FnOnce() -> LayerFuture + use<> {
    let (inner, plan, ran_here) = (inner.clone(), plan.clone(), ran_here.clone());
    move || {
        ran_here.store(true, Ordering::SeqCst);
        Box::pin(fetch_and_commit(inner, plan, i))
    }
}

/// Downloads and unpacks layer `i` (unless another pull committed it meanwhile), then commits it
/// once its parent is.
async fn fetch_and_commit(inner: Arc<Inner>, plan: Arc<Plan>, i: usize) -> LayerResult {
    // Another pull (or this one's upper layer, waiting for its parent) may have committed it
    // meanwhile.
    if inner.snapshots.exists(&plan.layers[i].chain_id) {
        return Ok(());
    }
    let unpacked = {
        let _permit = plan
            .downloads
            .acquire()
            .await
            .map_err(|source| Arc::new(ImageError::DownloadSlots { source }))?;
        if plan.cancelled() {
            return Err(Arc::new(ImageError::Cancelled));
        }
        download_and_unpack(&inner, &plan, i)
            .await
            .map_err(Arc::new)?
    };
    // Unpacked in parallel, committed in order: a snapshot's parent must exist first.
    if i > 0 {
        ensure_layer(inner.clone(), plan.clone(), i - 1).await?;
    }
    let chain_id = plan.layers[i].chain_id.clone();
    let parent = (i > 0).then(|| plan.layers[i - 1].chain_id.clone());
    tokio::task::spawn_blocking(move || unpacked.commit(&chain_id, parent.as_deref()))
        .await
        .map_err(|e| Arc::new(ImageError::task("layer commit")(e)))?
        .map_err(|e| Arc::new(ImageError::from(e)))?;
    inner.metrics.layers_fetched.inc();
    Ok(())
}
