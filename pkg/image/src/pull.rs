//! Pulling: resolve, verify, stream layers into snapshots, record.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use berth_registry::{Credentials, DigestVerifier, Endpoint, ManifestKind, Reference};
use berth_snapshot::UnpackedLayer;
use bytes::Bytes;
use tokio::sync::{Semaphore, mpsc};

use crate::channel_reader::ChannelReader;
use crate::decompress::{Compression, decoder, layer_compression};
use crate::progress::{Joined, LayerState, ProgressWatcher, PullTracker};
use crate::record::{ImageRecord, LayerRecord, record};
use crate::{Digest, ImageError, Inner, PullFuture};

/// Chunks buffered between a layer's download and its unpacker. The network is usually faster than
/// unpacking, and hyper hands over chunks of up to a few hundred KiB, so this bounds a pull's memory
/// (layers × chunks × chunk size) while TCP's own window keeps the download going.
const CHUNKS_IN_FLIGHT: usize = 8;

/// How often a long layer download logs how far it got.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Image configs are small; refuse absurd ones rather than buffering them.
const MAX_CONFIG_SIZE: u64 = 8 * 1024 * 1024;

/// What one pull fetches, shared by its layer tasks.
struct Plan {
    reference: Reference,
    credentials: Option<Credentials>,
    endpoint: Option<Endpoint>,
    registry: berth_registry::Client,
    layers: Vec<LayerRecord>,
    downloads: Semaphore,
    stall: Duration,
    /// Set when one layer failed: the others stop downloading and clean up before the pull
    /// returns, so a failed pull leaves nothing behind when it answers.
    cancel: tokio::sync::watch::Sender<bool>,
    progress: Arc<PullTracker>,
}

impl Plan {
    fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }
}

/// Joins the pull's progress at once (so a watcher sees it from its start); the future pulls.
pub(crate) fn start(
    inner: &Arc<Inner>,
    reference: &str,
    credentials: Option<Credentials>,
) -> (ProgressWatcher, PullFuture) {
    let parsed = match Reference::parse(reference) {
        Ok(parsed) => parsed,
        Err(e) => {
            let tracker = PullTracker::new(reference);
            tracker.finish(&Err(Arc::new(ImageError::InvalidImage {
                reference: reference.to_string(),
                reason: e.to_string(),
            })));
            return (tracker.watch(), Box::pin(async move { Err(e.into()) }));
        }
    };
    // Pulls of one reference with the same credentials share one execution (and one progress;
    // a watcher finds it by the part before the NUL).
    let key = format!(
        "{parsed}\0{}",
        credentials
            .as_ref()
            .map(|c| Credentials::fingerprint(Some(c)))
            .unwrap_or_default()
    );
    let joined = inner.trackers.join(&key, &parsed.to_string());
    let watcher = joined.tracker().watch();
    let inner = inner.clone();
    let pulling = async move { pull(&inner, parsed, credentials, key, joined).await };
    (watcher, Box::pin(pulling))
}

async fn pull(
    inner: &Arc<Inner>,
    reference: Reference,
    credentials: Option<Credentials>,
    key: String,
    joined: Joined,
) -> Result<ImageRecord, ImageError> {
    let started = Instant::now();
    inner.metrics.in_progress.inc();
    let result = inner
        .pulls
        .run(key, || {
            let inner = inner.clone();
            let reference = reference.clone();
            let tracker = joined.tracker().clone();
            async move {
                let result = pull_uncoalesced(&inner, reference, credentials, &tracker)
                    .await
                    .map_err(Arc::new);
                // Before the result is shared: watchers see the end when the callers do.
                tracker.finish(&result);
                result
            }
        })
        .await;
    // A caller that got a result shared after its run (a tracker of its own) ends it too.
    joined.finish(&result);
    inner.metrics.in_progress.dec();
    inner
        .metrics
        .duration
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "success" } else { "failure" };
    inner.metrics.pulls.with_label_values(&[outcome]).inc();
    result.map_err(ImageError::from)
}

async fn pull_uncoalesced(
    inner: &Arc<Inner>,
    reference: Reference,
    credentials: Option<Credentials>,
    progress: &Arc<PullTracker>,
) -> Result<ImageRecord, ImageError> {
    tracing::info!(image = %reference, "pulling");
    let started = Instant::now();
    // The registry configuration as of now: a reload mid-pull does not change it.
    let registry = inner.registry();
    let top = registry
        .fetch_manifest(&reference, credentials.as_ref())
        .await?;
    let resolved_digest = top.digest.clone();
    // Blobs are written to the content store only once the whole pull succeeded, so a failed pull
    // leaves nothing behind.
    let mut blobs: Vec<(Digest, Vec<u8>)> = Vec::new();
    let manifest = match &top.kind {
        ManifestKind::Index(index) => {
            let host = berth_registry::host_platform();
            let chosen = berth_registry::select_platform(
                index,
                &host.os,
                &host.architecture,
                host.variant.as_deref(),
            )?;
            let pinned = reference.with_digest(chosen.digest.clone());
            let chosen = registry
                .fetch_manifest(&pinned, credentials.as_ref())
                .await?;
            blobs.push((Digest::parse(&top.digest)?, top.bytes.to_vec()));
            chosen
        }
        ManifestKind::Image(_) => top,
    };
    let ManifestKind::Image(parsed) = &manifest.kind else {
        return Err(ImageError::InvalidImage {
            reference: reference.to_string(),
            reason: "the index entry for this platform is itself an index".into(),
        });
    };
    let manifest_digest = Digest::parse(&manifest.digest)?;
    let config_digest = Digest::parse(&parsed.config.digest)?;
    let plan_endpoint = Some(manifest.endpoint.clone());

    let config_bytes = fetch_config(
        inner,
        &registry,
        &reference,
        &parsed.config,
        plan_endpoint.as_ref(),
        credentials.as_ref(),
    )
    .await?;
    let config = berth_registry::parse_config(config_digest.as_str(), &config_bytes)?;
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != parsed.layers.len() {
        return Err(ImageError::InvalidImage {
            reference: reference.to_string(),
            reason: format!(
                "manifest lists {} layers but the config has {} diff IDs",
                parsed.layers.len(),
                diff_ids.len()
            ),
        });
    }
    let mut layers = Vec::with_capacity(diff_ids.len());
    let mut parent: Option<String> = None;
    for (layer, diff_id) in parsed.layers.iter().zip(diff_ids) {
        layer_compression(&layer.media_type)?;
        Digest::parse(&layer.digest)?;
        Digest::parse(diff_id)?;
        let chain_id = berth_snapshot::chain_id(parent.as_deref(), diff_id);
        layers.push(LayerRecord {
            digest: layer.digest.clone(),
            diff_id: diff_id.clone(),
            chain_id: chain_id.clone(),
            size: layer.size,
            media_type: layer.media_type.clone(),
        });
        parent = Some(chain_id);
    }
    blobs.push((manifest_digest.clone(), manifest.bytes.to_vec()));
    blobs.push((config_digest.clone(), config_bytes.to_vec()));

    progress.resolved(manifest_digest.as_str(), &layers);
    let chain_ids: Vec<String> = layers.iter().map(|l| l.chain_id.clone()).collect();
    lease(inner, &chain_ids, true);
    let plan = Arc::new(Plan {
        reference: reference.clone(),
        credentials,
        endpoint: plan_endpoint,
        registry,
        layers: layers.clone(),
        downloads: Semaphore::new(inner.config.max_concurrent_downloads.max(1)),
        stall: Duration::from_secs(inner.config.pull_stall_timeout_secs.max(1)),
        cancel: tokio::sync::watch::channel(false).0,
        progress: progress.clone(),
    });
    let fetched = fetch_layers(inner, &plan).await;
    let recorded = match fetched {
        Ok(()) => {
            for (digest, bytes) in &blobs {
                inner.content.write(digest, bytes)?;
            }
            let size = parsed.config.size + layers.iter().map(|l| l.size).sum::<u64>();
            record(
                inner,
                &reference,
                &resolved_digest,
                config_digest.as_str(),
                manifest_digest.as_str(),
                size,
                layers,
                config
                    .config
                    .as_ref()
                    .and_then(|c| c.user.clone())
                    .unwrap_or_default(),
            )
            .await
        }
        Err(e) => Err(e),
    };
    lease(inner, &chain_ids, false);
    let record = recorded?;
    tracing::info!(image = %reference, id = %record.id, elapsed_ms = started.elapsed().as_millis() as u64, "pulled");
    Ok(record)
}

fn lease(inner: &Inner, chain_ids: &[String], take: bool) {
    let mut leases = inner.leases.lock().unwrap_or_else(|p| p.into_inner());
    for id in chain_ids {
        if take {
            leases.push(id.clone());
        } else if let Some(pos) = leases.iter().position(|l| l == id) {
            leases.swap_remove(pos);
        }
    }
}

/// The config blob, from the content store or the registry (coalesced by digest).
async fn fetch_config(
    inner: &Arc<Inner>,
    registry: &berth_registry::Client,
    reference: &Reference,
    descriptor: &berth_registry::Descriptor,
    endpoint: Option<&Endpoint>,
    credentials: Option<&Credentials>,
) -> Result<Arc<Vec<u8>>, ImageError> {
    let digest = Digest::parse(&descriptor.digest)?;
    if inner.content.has(&digest) {
        return Ok(Arc::new(inner.content.read(&digest)?));
    }
    if descriptor.size > MAX_CONFIG_SIZE {
        return Err(ImageError::InvalidImage {
            reference: reference.to_string(),
            reason: format!(
                "config of {} bytes is larger than {MAX_CONFIG_SIZE}",
                descriptor.size
            ),
        });
    }
    let key = digest.to_string();
    inner
        .blobs
        .run(key, || async {
            let mut blob = registry
                .fetch_blob(reference, digest.as_str(), endpoint, credentials)
                .await
                .map_err(|e| Arc::new(e.into()))?;
            let mut bytes = Vec::with_capacity(descriptor.size as usize);
            while let Some(chunk) = blob.next_chunk().await.map_err(|e| Arc::new(e.into()))? {
                if (bytes.len() + chunk.len()) as u64 > descriptor.size {
                    break;
                }
                bytes.extend_from_slice(&chunk);
            }
            check_size("config", descriptor.size, bytes.len() as u64).map_err(Arc::new)?;
            let actual = Digest::of(&bytes);
            if actual != digest {
                return Err(Arc::new(ImageError::DigestMismatch {
                    what: "config".to_string(),
                    expected: digest.to_string(),
                    actual: actual.to_string(),
                }));
            }
            Ok(Arc::new(bytes))
        })
        .await
        .map_err(ImageError::from)
}

fn check_size(what: &str, expected: u64, actual: u64) -> Result<(), ImageError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::SizeMismatch {
            what: what.to_string(),
            expected,
            actual,
        })
    }
}

/// Ensures every layer's snapshot exists, downloading and unpacking the missing ones in parallel.
async fn fetch_layers(inner: &Arc<Inner>, plan: &Arc<Plan>) -> Result<(), ImageError> {
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
            Err(e) => Some(ImageError::Internal(format!("layer task: {e}"))),
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

/// Layer `i` exists once it and every layer below it are committed. Coalesced by chain ID, so a layer
/// shared with another pull in flight is fetched once.
fn ensure_layer(
    inner: Arc<Inner>,
    plan: Arc<Plan>,
    i: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = LayerResult> + Send>> {
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
) -> impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = LayerResult> + Send>> {
    let (inner, plan, ran_here) = (inner.clone(), plan.clone(), ran_here.clone());
    move || {
        ran_here.store(true, Ordering::SeqCst);
        Box::pin(async move {
            // Another pull (or this one's upper layer, waiting for its parent) may have
            // committed it meanwhile.
            if inner.snapshots.exists(&plan.layers[i].chain_id) {
                return Ok(());
            }
            let unpacked = {
                let _permit = plan
                    .downloads
                    .acquire()
                    .await
                    .map_err(|e| Arc::new(ImageError::Internal(e.to_string())))?;
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
                .map_err(|e| Arc::new(ImageError::Internal(format!("commit task: {e}"))))?
                .map_err(|e| Arc::new(ImageError::from(e)))?;
            inner.metrics.layers_fetched.inc();
            Ok(())
        })
    }
}

/// Streams one layer blob from the registry through its decompressor into a staged snapshot,
/// verifying the blob's size and digest as it flows and the layer's diff ID at the end.
async fn download_and_unpack(
    inner: &Arc<Inner>,
    plan: &Plan,
    i: usize,
) -> Result<UnpackedLayer, ImageError> {
    let layer = &plan.layers[i];
    let compression: Compression = layer_compression(&layer.media_type)?;
    plan.progress.layer(i, LayerState::Downloading);
    let mut blob = plan
        .registry
        .fetch_blob(
            &plan.reference,
            &layer.digest,
            plan.endpoint.as_ref(),
            plan.credentials.as_ref(),
        )
        .await?;
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(CHUNKS_IN_FLIGHT);
    let snapshots = inner.snapshots.clone();
    let diff_id = layer.diff_id.clone();
    let unpack = tokio::task::spawn_blocking(move || -> Result<UnpackedLayer, ImageError> {
        let mut reader = ChannelReader::new(rx);
        let unpacked = {
            let decoded = decoder(compression, &mut reader)?;
            snapshots.unpack(&diff_id, decoded)?
        };
        // The download's verdict (size, digest) arrives after its last byte: wait for it.
        // Dropping `unpacked` on failure discards the staged layer.
        reader
            .drain()
            .map_err(|e| ImageError::Decompress(e.to_string()))?;
        Ok(unpacked)
    });

    let what = format!("layer {} of {}", layer.digest, plan.reference);
    let mut verifier = DigestVerifier::new(what.clone(), &layer.digest, Some(layer.size))?;
    let mut failure: Option<ImageError> = None;
    // Set when the unpacker hung up before the end of the blob. It only does that when it failed,
    // and then its error is the verdict: the download merely stopped, so a size check of the
    // bytes seen so far would report a "size mismatch" that never happened (and, differing with
    // timing from one attempt to the next, hide the real cause).
    let mut unpacker_stopped = false;
    let started = Instant::now();
    let mut last_progress = started;
    loop {
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            last_progress = Instant::now();
            tracing::info!(
                image = %plan.reference,
                layer = %layer.digest,
                received = verifier.bytes_seen(),
                size = layer.size,
                elapsed_s = started.elapsed().as_secs(),
                "pull progress"
            );
        }
        let mut cancel = plan.cancel.subscribe();
        let next = tokio::select! {
            next = tokio::time::timeout(plan.stall, blob.next_chunk()) => next,
            _ = cancel.wait_for(|c| *c) => {
                failure = Some(ImageError::Cancelled);
                break;
            }
        };
        let chunk = match next {
            Err(_) => {
                failure = Some(ImageError::Stalled {
                    what: what.clone(),
                    secs: plan.stall.as_secs(),
                });
                break;
            }
            Ok(Err(e)) => {
                failure = Some(e.into());
                break;
            }
            Ok(Ok(None)) => break,
            Ok(Ok(Some(chunk))) => chunk,
        };
        if let Err(e) = verifier.update(&chunk) {
            failure = Some(e.into());
            break;
        }
        inner.metrics.bytes.inc_by(chunk.len() as u64);
        plan.progress.bytes(i, chunk.len() as u64);
        if tx.send(Ok(chunk)).await.is_err() {
            unpacker_stopped = true;
            break;
        }
    }
    if failure.is_none() && !unpacker_stopped {
        plan.progress.layer(i, LayerState::Verifying);
        match verifier.finish() {
            Ok(_) => plan.progress.layer(i, LayerState::Unpacking),
            Err(e) => failure = Some(e.into()),
        }
    }
    if let Some(e) = &failure {
        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
    }
    drop(tx);
    let unpacked = unpack
        .await
        .map_err(|e| ImageError::Internal(format!("unpack task: {e}")))?;
    // A download failure is the cause; the unpacker's error (if any) is its consequence.
    match failure {
        Some(e) => Err(e),
        None if unpacker_stopped => match unpacked {
            Err(e) => Err(e),
            Ok(_) => Err(ImageError::Internal(format!(
                "{what}: the unpacker finished before the end of the blob"
            ))),
        },
        None => {
            tracing::debug!(
                image = %plan.reference,
                layer = %layer.digest,
                size = layer.size,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "layer downloaded"
            );
            unpacked
        }
    }
}
