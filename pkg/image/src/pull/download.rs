//! One layer streamed from the registry through its decompressor into a staged snapshot: the
//! blob's size and digest are verified as it flows, the layer's diff ID at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_registry::DigestVerifier;
use berth_snapshot::{Snapshotter, UnpackedLayer};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::layers::Plan;
use crate::channel_reader::ChannelReader;
use crate::decompress::{Compression, decoder, layer_compression};
use crate::progress::LayerState;
use crate::source::BlobChunks;
use crate::{ImageError, Inner};

/// Chunks buffered between a layer's download and its unpacker. The network is usually faster than
/// unpacking, and hyper hands over chunks of up to a few hundred KiB, so this bounds a pull's memory
/// (layers × chunks × chunk size) while TCP's own window keeps the download going.
const CHUNKS_IN_FLIGHT: usize = 8;

/// How often a long layer download logs how far it got.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

type Chunks = mpsc::Sender<Result<Bytes, std::io::Error>>;

/// Streams layer `i` of the plan into a staged (uncommitted) snapshot.
pub(super) async fn download_and_unpack(
    inner: &Arc<Inner>,
    plan: &Plan,
    i: usize,
) -> Result<UnpackedLayer, ImageError> {
    let layer = &plan.layers[i];
    let compression: Compression = layer_compression(&layer.media_type)?;
    plan.progress.layer(i, LayerState::Downloading);
    let blob = plan
        .source
        .fetch_blob(
            &plan.reference,
            &layer.digest,
            Some(&plan.endpoint),
            plan.credentials.as_ref(),
        )
        .await?;
    let what = format!("layer {} of {}", layer.digest, plan.reference);
    let verifier = DigestVerifier::new(what.clone(), &layer.digest, Some(layer.size))?;
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let unpack = spawn_unpacker(
        inner.snapshots.clone(),
        layer.diff_id.clone(),
        compression,
        rx,
    );
    let started = Instant::now();
    let streamed = stream_blob(inner, plan, i, blob, verifier, &what, &tx).await;
    if streamed.failure.is_some() {
        // Stops the unpacker; the failure itself is the verdict reported below.
        let _ = tx
            .send(Err(std::io::Error::other("the layer's download failed")))
            .await;
    }
    drop(tx);
    let unpacked = unpack.await.map_err(ImageError::task("layer unpack"))?;
    // A download failure is the cause; the unpacker's error (if any) is its consequence.
    match streamed {
        Streamed {
            failure: Some(e), ..
        } => Err(e),
        Streamed {
            unpacker_stopped: true,
            ..
        } => match unpacked {
            Err(e) => Err(e),
            Ok(_) => Err(ImageError::UnpackerStopped { what }),
        },
        _ => {
            tracing::debug!(
                image = %plan.reference,
                layer = %layer.digest,
                size = layer.size,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "layer downloaded"
            );
            unpacked
        }
    }
}

/// Unpacks what arrives on `rx` into a staged snapshot, on a blocking thread.
fn spawn_unpacker(
    snapshots: Snapshotter,
    diff_id: String,
    compression: Compression,
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> JoinHandle<Result<UnpackedLayer, ImageError>> {
    tokio::task::spawn_blocking(move || {
        let mut reader = ChannelReader::new(rx);
        let unpacked = {
            let decoded = decoder(compression, &mut reader)?;
            snapshots.unpack(&diff_id, decoded)?
        };
        // The download's verdict (size, digest) arrives after its last byte: wait for it.
        // Dropping `unpacked` on failure discards the staged layer.
        reader.drain().map_err(|source| ImageError::ReadLayer {
            op: "reading the rest of the layer",
            source,
        })?;
        Ok(unpacked)
    })
}

/// How a layer's download ended.
struct Streamed {
    /// Why the download failed, if it did.
    failure: Option<ImageError>,
    /// The unpacker hung up before the end of the blob. It only does that when it failed, and
    /// then its error is the verdict: the download merely stopped, so a size check of the bytes
    /// seen so far would report a "size mismatch" that never happened (and, differing with
    /// timing from one attempt to the next, hide the real cause).
    unpacker_stopped: bool,
}

impl Streamed {
    fn failed(e: impl Into<ImageError>) -> Streamed {
        Streamed {
            failure: Some(e.into()),
            unpacker_stopped: false,
        }
    }
}

/// Feeds the blob to the unpacker through `tx`, verifying it as it flows.
async fn stream_blob(
    inner: &Inner,
    plan: &Plan,
    i: usize,
    mut blob: Box<dyn BlobChunks>,
    mut verifier: DigestVerifier,
    what: &str,
    tx: &Chunks,
) -> Streamed {
    let layer = &plan.layers[i];
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
        let chunk = match next_chunk(plan, blob.as_mut(), what).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Streamed::failed(e),
        };
        if let Err(e) = verifier.update(&chunk) {
            return Streamed::failed(e);
        }
        inner.metrics.bytes.inc_by(chunk.len() as u64);
        plan.progress.bytes(i, chunk.len() as u64);
        if tx.send(Ok(chunk)).await.is_err() {
            return Streamed {
                failure: None,
                unpacker_stopped: true,
            };
        }
    }
    plan.progress.layer(i, LayerState::Verifying);
    if let Err(e) = verifier.finish() {
        return Streamed::failed(e);
    }
    plan.progress.layer(i, LayerState::Unpacking);
    Streamed {
        failure: None,
        unpacker_stopped: false,
    }
}

/// The blob's next chunk, unless the pull was cancelled or the registry sent nothing for the
/// plan's stall timeout.
async fn next_chunk(
    plan: &Plan,
    blob: &mut dyn BlobChunks,
    what: &str,
) -> Result<Option<Bytes>, ImageError> {
    let mut cancel = plan.cancel.subscribe();
    tokio::select! {
        next = tokio::time::timeout(plan.stall, blob.next_chunk()) => match next {
            Err(_) => Err(ImageError::Stalled {
                what: what.to_string(),
                secs: plan.stall.as_secs(),
            }),
            Ok(next) => Ok(next?),
        },
        _ = cancel.wait_for(|c| *c) => Err(ImageError::Cancelled),
    }
}
