//! Pull progress: what a pull in flight is doing, per layer, for whoever watches it.
//!
//! CRI's PullImage says nothing until the pull ends, so the pull code reports to a
//! [`PullTracker`] (one per coalesced pull, shared by every caller that joined it) and watchers
//! read snapshots through a [`ProgressWatcher`]. The state lives in a `tokio::sync::watch`
//! channel: an update is a cheap in-place change, a watcher only ever sees the latest state, and
//! a slow watcher can never slow the pull down (nothing is queued for it).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::ImageError;
use crate::record::{ImageRecord, LayerRecord};

/// How often a watcher gets a new snapshot at most, unless it asks for another interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(100);

/// Where one layer of a pull is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Waiting for a download slot, or for another pull fetching the same layer.
    Waiting,
    /// Bytes are arriving (and being unpacked as they arrive).
    Downloading,
    /// Every byte arrived; size and digest are being checked.
    Verifying,
    /// Verified; the unpacker finishes and the layer waits for its parent to be committed.
    Unpacking,
    /// Fetched and committed.
    Done,
    /// Already on this node: not downloaded.
    Present,
}

impl LayerState {
    fn complete(self) -> bool {
        matches!(self, LayerState::Done | LayerState::Present)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerProgress {
    /// The compressed blob's digest.
    pub digest: String,
    /// The blob's size from the manifest.
    pub total_bytes: u64,
    pub downloaded_bytes: u64,
    pub state: LayerState,
}

/// How a pull ended.
#[derive(Debug, Clone)]
pub enum PullOutcome {
    Pulled {
        image_id: String,
    },
    /// The pull's error, as every caller of the pull got it.
    Failed(Arc<ImageError>),
}

/// One snapshot of a pull.
#[derive(Debug, Clone, Default)]
pub struct PullProgress {
    /// The normalised reference.
    pub image: String,
    /// The platform manifest's digest, once resolved.
    pub manifest_digest: Option<String>,
    /// Manifest order, bottom first; empty until the manifest is resolved.
    pub layers: Vec<LayerProgress>,
    /// Callers waiting for this pull now (1 unless pulls of the same reference joined it).
    pub joined: u32,
    /// Set once, on the final state.
    pub outcome: Option<PullOutcome>,
}

impl PullProgress {
    pub fn is_final(&self) -> bool {
        self.outcome.is_some()
    }
}

/// The progress of one pull. The pull code reports through it; updates after the final state
/// are ignored, so a pull that keeps running for another caller cannot undo an ending watchers saw.
#[derive(Debug)]
pub struct PullTracker {
    state: watch::Sender<PullProgress>,
    /// Callers in the pull now; kept apart from `state`, which stops changing at the end.
    callers: AtomicU32,
}

impl PullTracker {
    pub(crate) fn new(image: &str) -> PullTracker {
        PullTracker {
            state: watch::Sender::new(PullProgress {
                image: image.to_string(),
                ..PullProgress::default()
            }),
            callers: AtomicU32::new(0),
        }
    }

    /// A tracker that is over already: an image found present by ID or digest.
    pub(crate) fn finished(image: &str, record: &ImageRecord) -> PullTracker {
        let tracker = PullTracker::new(image);
        tracker.resolved(&record.manifest_digest, &record.layers);
        for i in 0..record.layers.len() {
            tracker.layer(i, LayerState::Present);
        }
        tracker.finish(&Ok(record.clone()));
        tracker
    }

    /// A watcher that gets the current state at once, then at most one snapshot per
    /// [`DEFAULT_INTERVAL`], and always the final state.
    pub fn watch(&self) -> ProgressWatcher {
        ProgressWatcher {
            rx: self.state.subscribe(),
            interval: DEFAULT_INTERVAL,
            last: None,
            ended: false,
        }
    }

    fn update(&self, change: impl FnOnce(&mut PullProgress) -> bool) {
        self.state.send_if_modified(|p| !p.is_final() && change(p));
    }

    /// The manifest is known: every layer starts waiting (a (re)start of the pull's work begins
    /// afresh, e.g. when a joined caller takes over a cancelled one).
    pub(crate) fn resolved(&self, manifest_digest: &str, layers: &[LayerRecord]) {
        self.update(|p| {
            p.manifest_digest = Some(manifest_digest.to_string());
            p.layers = layers
                .iter()
                .map(|l| LayerProgress {
                    digest: l.digest.clone(),
                    total_bytes: l.size,
                    downloaded_bytes: 0,
                    state: LayerState::Waiting,
                })
                .collect();
            true
        });
    }

    /// Layer `i` moved to `state`; a complete layer counts all its bytes.
    pub(crate) fn layer(&self, i: usize, state: LayerState) {
        self.update(|p| match p.layers.get_mut(i) {
            Some(layer) if layer.state != state => {
                layer.state = state;
                if state.complete() {
                    layer.downloaded_bytes = layer.total_bytes;
                }
                true
            }
            _ => false,
        });
    }

    /// `n` more bytes of layer `i` arrived.
    pub(crate) fn bytes(&self, i: usize, n: u64) {
        self.update(|p| match p.layers.get_mut(i) {
            Some(layer) => {
                layer.downloaded_bytes = layer.downloaded_bytes.saturating_add(n);
                true
            }
            None => false,
        });
    }

    /// The pull ended; only the first ending counts.
    pub(crate) fn finish(&self, result: &Result<ImageRecord, Arc<ImageError>>) {
        self.update(|p| {
            p.outcome = Some(match result {
                Ok(record) => {
                    for layer in &mut p.layers {
                        if !layer.state.complete() {
                            layer.state = LayerState::Done;
                        }
                        layer.downloaded_bytes = layer.total_bytes;
                    }
                    PullOutcome::Pulled {
                        image_id: record.id.clone(),
                    }
                }
                Err(e) => PullOutcome::Failed(e.clone()),
            });
            true
        });
    }

    /// Counts a caller in (+1) or out (-1) and returns how many are left. The state shows the
    /// count only until the end: the callers leave once they have the result, and a final state
    /// reporting nobody would be a lie about the pull that was.
    fn joined(&self, delta: i32) -> u32 {
        let now = if delta >= 0 {
            self.callers.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.callers
                .fetch_sub(1, Ordering::SeqCst)
                .saturating_sub(1)
        };
        self.update(|p| {
            p.joined = now;
            true
        });
        now
    }
}

/// Snapshots of a pull, throttled: [`ProgressWatcher::next`] answers at once the first time, then
/// no sooner than `interval` after the previous answer (with the latest state, whatever happened
/// in between), and ends after the final state.
#[derive(Debug)]
pub struct ProgressWatcher {
    rx: watch::Receiver<PullProgress>,
    interval: Duration,
    last: Option<Instant>,
    ended: bool,
}

impl ProgressWatcher {
    pub fn with_interval(mut self, interval: Duration) -> ProgressWatcher {
        self.interval = interval;
        self
    }

    /// The next snapshot, or `None` after the final one.
    pub async fn next(&mut self) -> Option<PullProgress> {
        if self.ended {
            return None;
        }
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.interval).await;
            // Err: every tracker handle is gone without a final state (cannot happen while the
            // pull code holds it; ends the stream rather than hanging).
            if self.rx.changed().await.is_err() {
                self.ended = true;
                return None;
            }
        }
        let snapshot = self.rx.borrow_and_update().clone();
        self.last = Some(Instant::now());
        self.ended = snapshot.is_final();
        Some(snapshot)
    }
}

/// The trackers of the pulls in flight, by coalescing key.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trackers {
    inflight: Arc<Mutex<HashMap<String, Arc<PullTracker>>>>,
}

impl Trackers {
    /// Joins the pull keyed `key` (a new tracker unless one is in flight): counted in `joined`
    /// until the returned guard drops.
    pub(crate) fn join(&self, key: &str, image: &str) -> Joined {
        let tracker = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            let entry = inflight
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(PullTracker::new(image)));
            // An ended pull whose callers have not all left yet is not joined: a new one starts.
            if entry.state.borrow().is_final() {
                *entry = Arc::new(PullTracker::new(image));
            }
            entry.clone()
        };
        tracker.joined(1);
        Joined {
            tracker,
            key: key.to_string(),
            trackers: self.clone(),
        }
    }

    /// A watcher of the pull of `image` (normalised) in flight, if any.
    pub(crate) fn watch(&self, image: &str) -> Option<ProgressWatcher> {
        let prefix = format!("{image}\0");
        let inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        inflight
            .iter()
            .find(|(key, t)| key.starts_with(&prefix) && !t.state.borrow().is_final())
            .map(|(_, t)| t.watch())
    }

    /// Forgets `tracker` if it is still the one registered for `key`.
    fn forget(&self, key: &str, tracker: &Arc<PullTracker>) {
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if inflight.get(key).is_some_and(|t| Arc::ptr_eq(t, tracker)) {
            inflight.remove(key);
        }
    }
}

/// One caller's membership in a pull. Dropped by the last caller before the pull ended (every
/// caller went away, which cancels the pull), it ends the progress as cancelled.
#[derive(Debug)]
pub(crate) struct Joined {
    tracker: Arc<PullTracker>,
    key: String,
    trackers: Trackers,
}

impl Joined {
    pub(crate) fn tracker(&self) -> &Arc<PullTracker> {
        &self.tracker
    }

    /// Ends the progress with the pull's result and stops offering it to new watchers.
    pub(crate) fn finish(&self, result: &Result<ImageRecord, Arc<ImageError>>) {
        self.tracker.finish(result);
        self.trackers.forget(&self.key, &self.tracker);
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        if self.tracker.joined(-1) == 0 {
            self.tracker.finish(&Err(Arc::new(ImageError::Abandoned)));
            self.trackers.forget(&self.key, &self.tracker);
        }
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
