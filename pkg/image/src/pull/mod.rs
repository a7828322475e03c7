//! Pulling: resolve, verify, stream layers into snapshots, record.
//!
//! - [`resolve`]: the reference to its platform manifest, config and layer records.
//! - [`layers`]: every missing layer fetched (in parallel, coalesced by chain ID) and committed
//!   in order.
//! - [`download`]: one layer streamed from the registry into a staged snapshot, verified on
//!   the way.

mod download;
mod layers;
mod resolve;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_registry::{Credentials, Reference};
use tokio::sync::Semaphore;

use crate::progress::{Joined, ProgressWatcher, PullTracker};
use crate::record::{ImageRecord, LayerRecord, record};
use crate::{ImageError, Inner, PullFuture};

use layers::Plan;
use resolve::Resolved;

/// Joins the pull's progress at once (so a watcher sees it from its start); the future pulls.
pub(crate) fn start(
    inner: &Arc<Inner>,
    reference: &str,
    credentials: Option<Credentials>,
) -> (ProgressWatcher, PullFuture) {
    let parsed = match Reference::parse(reference) {
        Ok(parsed) => parsed,
        Err(e) => {
            // The watcher and the caller see the same error.
            let e = Arc::new(ImageError::from(e));
            let tracker = PullTracker::new(reference);
            tracker.finish(&Err(e.clone()));
            return (
                tracker.watch(),
                Box::pin(async move { Err(ImageError::Shared(e)) }),
            );
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
    let source = inner.registry().source;
    let resolved =
        resolve::resolve(inner, source.as_ref(), &reference, credentials.as_ref()).await?;

    progress.resolved(resolved.manifest_digest.as_str(), &resolved.layers);
    let lease = Lease::take(inner, &resolved.layers);
    let plan = Arc::new(Plan {
        reference: reference.clone(),
        credentials,
        endpoint: resolved.endpoint.clone(),
        source,
        layers: resolved.layers.clone(),
        downloads: Semaphore::new(inner.config.max_concurrent_downloads.max(1)),
        stall: Duration::from_secs(inner.config.pull_stall_timeout_secs.max(1)),
        cancel: tokio::sync::watch::channel(false).0,
        progress: progress.clone(),
    });
    let recorded = match layers::fetch_layers(inner, &plan).await {
        Ok(()) => store_and_record(inner, &reference, resolved).await,
        Err(e) => Err(e),
    };
    drop(lease);
    let record = recorded?;
    tracing::info!(image = %reference, id = %record.id, elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX), "pulled");
    Ok(record)
}

/// Every layer is in place: the index, manifest and config go to the content store (only now,
/// so a failed pull leaves none of them behind) and the image is recorded.
async fn store_and_record(
    inner: &Arc<Inner>,
    reference: &Reference,
    resolved: Resolved,
) -> Result<ImageRecord, ImageError> {
    for (digest, bytes) in &resolved.blobs {
        inner.content.write(digest, bytes)?;
    }
    record(
        inner,
        reference,
        &resolved.resolved_digest,
        resolved.config_digest.as_str(),
        resolved.manifest_digest.as_str(),
        resolved.size,
        resolved.layers,
        resolved.user,
    )
    .await
}

/// A pull's hold on its chain IDs: garbage collection leaves them alone. Released on drop, so
/// also when every caller went away and the pull's work was dropped mid-way.
struct Lease<'a> {
    inner: &'a Inner,
    chain_ids: Vec<String>,
}

impl<'a> Lease<'a> {
    fn take(inner: &'a Inner, layers: &[LayerRecord]) -> Lease<'a> {
        let chain_ids: Vec<String> = layers.iter().map(|l| l.chain_id.clone()).collect();
        inner
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(chain_ids.iter().cloned());
        Lease { inner, chain_ids }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut leases = self.inner.leases.lock().unwrap_or_else(|p| p.into_inner());
        for id in &self.chain_ids {
            if let Some(pos) = leases.iter().position(|l| l == id) {
                leases.swap_remove(pos);
            }
        }
    }
}

#[cfg(test)]
// unsafe: geteuid/getegid, to own the fake layers' files as the test's user.
#[allow(unsafe_code)]
mod fake;
#[cfg(test)]
mod tests;
