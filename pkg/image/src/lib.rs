//! Berth's images: pulls from OCI registries into a verified content store and overlayfs layer
//! snapshots, and the CRI image semantics kubelet relies on (lookup by ID, tag, digest or short name;
//! tag moves; removal that frees what no image needs any more).
//!
//! - [`ImageService::pull`] resolves a reference (platform selection for indexes), stores the manifest
//!   and config, and streams each missing layer from the registry through decompression straight into
//!   its snapshot, verifying the blob digest and size and the layer's diff ID on the way. Layers download
//!   and unpack in parallel (bounded) and are committed in order. Pulls of the same reference, and
//!   fetches of the same layer or blob, are coalesced.
//! - [`ImageService::pull_with_progress`] is the same pull with a [`ProgressWatcher`] of its
//!   progress per layer; [`ImageService::watch_pull`] watches a pull someone else started.
//! - [`ImageService::commit`] makes a container's writable layer a new image;
//!   [`ImageService::save`] writes images as an OCI image-layout tar and [`ImageService::load`]
//!   reads layouts and docker archives, verified and unpacked as pulls are.
//! - Metadata lives in the store (`berth-store`); an in-memory catalog answers lookups.

mod archive_import;
mod archive_load;
mod archive_save;
mod archive_util;
mod catalog;
mod channel_reader;
mod coalesce;
mod commit;
mod content;
mod decompress;
mod digest;
mod error;
mod gc;
mod metrics;
mod progress;
mod pull;
mod record;
mod source;

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};

use berth_config::ImageConfig;
use berth_registry::{Credentials, Reference};
use berth_snapshot::Snapshotter;
use berth_store::Store;

pub use archive_import::{ArchiveChunk, LoadedImage};
pub use archive_save::SAVE_CHUNK;
pub use archive_util::rfc3339;
pub use commit::{CommitOptions, Committed};
pub use content::ContentStore;
pub use digest::Digest;
pub use error::ImageError;
pub use metrics::ImageMetrics;
pub use progress::{
    DEFAULT_INTERVAL, LayerProgress, LayerState, ProgressWatcher, PullOutcome, PullProgress,
};
pub use record::{ImageRecord, LayerRecord};

use catalog::Catalog;
use coalesce::Coalescer;
use progress::PullTracker;
use source::PullSource;

/// Disk used by images: content plus snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// A pull in progress (see [`ImageService::pull_with_progress`]).
pub type PullFuture = Pin<Box<dyn Future<Output = Result<ImageRecord, ImageError>> + Send>>;

/// An image as CRI shows it.
#[derive(Debug, Clone)]
pub struct ImageView {
    pub record: ImageRecord,
    pub pinned: bool,
}

/// Snapshots that must not be garbage-collected although no image references them (the containers
/// built on them). The container layer implements this; whoever removes an image passes it, so
/// garbage collection cannot run without knowing what containers use.
pub trait SnapshotUsers: Send + Sync {
    fn in_use(&self) -> HashSet<String>;
}

#[derive(Clone)]
pub struct ImageService {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    config: ImageConfig,
    /// Swapped whole on a configuration reload; each pull takes the one current when it starts.
    registry: RwLock<Registry>,
    /// `image.pinned`, replaced on a configuration reload.
    pinned: RwLock<Vec<String>>,
    content: ContentStore,
    snapshots: Snapshotter,
    store: Store,
    catalog: RwLock<Catalog>,
    metrics: ImageMetrics,
    /// Serialises metadata updates (record writes, tag moves, garbage collection).
    metadata: tokio::sync::Mutex<()>,
    /// Chain IDs that pulls in flight rely on; garbage collection leaves them alone.
    leases: Mutex<Vec<String>>,
    pulls: Coalescer<String, Result<ImageRecord, Arc<ImageError>>>,
    layers: Coalescer<String, Result<(), Arc<ImageError>>>,
    blobs: Coalescer<String, Result<Arc<Vec<u8>>, Arc<ImageError>>>,
    /// The progress of the pulls in flight, keyed like `pulls`.
    trackers: progress::Trackers,
}

/// The registry configuration in force.
#[derive(Clone)]
struct Registry {
    /// What `berth login` checks and stores credentials through.
    client: berth_registry::Client,
    /// What pulls fetch through: `client` itself, except in the pull tests.
    source: Arc<dyn PullSource>,
}

impl Registry {
    fn of(client: berth_registry::Client) -> Registry {
        Registry {
            source: Arc::new(client.clone()),
            client,
        }
    }
}

impl ImageService {
    /// Opens the image store under `root` (`<berth root>`): content in `content/`, snapshots in
    /// `snapshots/`, records in the metadata store.
    pub fn open(
        root: &Path,
        config: ImageConfig,
        registry: berth_registry::Client,
        store: Store,
        metrics: ImageMetrics,
    ) -> Result<ImageService, ImageError> {
        ImageService::open_with(root, config, Registry::of(registry), store, metrics)
    }

    /// [`ImageService::open`] with the registry given whole: the pull tests' one fetches
    /// through a fake.
    fn open_with(
        root: &Path,
        config: ImageConfig,
        registry: Registry,
        store: Store,
        metrics: ImageMetrics,
    ) -> Result<ImageService, ImageError> {
        let content = ContentStore::open(&root.join("content"))?;
        let mut options = berth_snapshot::Options::default();
        options.max_unpacked_bytes = config.max_layer_unpacked_bytes;
        let snapshots = Snapshotter::open_with(&root.join("snapshots"), options)?;
        let records = store.list::<ImageRecord>()?;
        Ok(ImageService {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                pinned: RwLock::new(config.pinned.clone()),
                config,
                registry: RwLock::new(registry),
                content,
                snapshots,
                store,
                catalog: RwLock::new(Catalog::from_records(records)),
                metrics,
                metadata: tokio::sync::Mutex::new(()),
                leases: Mutex::new(Vec::new()),
                pulls: Coalescer::default(),
                layers: Coalescer::default(),
                blobs: Coalescer::default(),
                trackers: progress::Trackers::default(),
            }),
        })
    }

    /// Replaces the registry client (a configuration reload). Pulls in flight keep the one they
    /// started with; the next pull uses this one.
    pub fn set_registry(&self, registry: berth_registry::Client) {
        *self
            .inner
            .registry
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Registry::of(registry);
    }

    /// Replaces the pinned image list (`image.pinned`, on a configuration reload).
    pub fn set_pinned(&self, pinned: Vec<String>) {
        *self.inner.pinned.write().unwrap_or_else(|p| p.into_inner()) = pinned;
    }

    /// The registry client pulls use now (after any reload): `berth login` checks and stores
    /// credentials through it.
    pub fn registry_client(&self) -> berth_registry::Client {
        self.inner.registry().client
    }

    pub fn snapshotter(&self) -> &Snapshotter {
        &self.inner.snapshots
    }

    /// Pulls `reference` (short names, tags, digests, `localhost:5000/x`; an image ID or repo digest
    /// of an image already present returns it without touching the network).
    pub async fn pull(
        &self,
        reference: &str,
        credentials: Option<Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        self.pull_with_progress(reference, credentials).1.await
    }

    /// [`ImageService::pull`] (the same pull, joined the same way) with a watcher of its
    /// progress, which has joined before this returns. Dropping the future leaves the pull to the
    /// other callers that joined it; once none is left the pull stops and its progress ends.
    pub fn pull_with_progress(
        &self,
        reference: &str,
        credentials: Option<Credentials>,
    ) -> (ProgressWatcher, PullFuture) {
        if let Some(present) = self.present_by_id_or_digest(reference) {
            let watcher = PullTracker::finished(reference, &present).watch();
            return (watcher, Box::pin(async move { Ok(present) }));
        }
        pull::start(&self.inner, reference, credentials)
    }

    /// A watcher of the pull of `reference` in flight (started by anyone, with any credentials),
    /// or `None` when there is none.
    pub fn watch_pull(&self, reference: &str) -> Result<Option<ProgressWatcher>, ImageError> {
        let reference = Reference::parse(reference)?;
        Ok(self.inner.trackers.watch(&reference.to_string()))
    }

    fn present_by_id_or_digest(&self, reference: &str) -> Option<ImageRecord> {
        let catalog = self.inner.catalog();
        let is_id = reference.starts_with("sha256:")
            || (reference.len() == 64 && reference.bytes().all(|b| b.is_ascii_hexdigit()));
        let is_digest_ref = reference.contains('@');
        if !(is_id || is_digest_ref) {
            return None;
        }
        let record = catalog.lookup(reference)?;
        record
            .layers
            .iter()
            .all(|l| self.inner.snapshots.exists(&l.chain_id))
            .then(|| record.clone())
    }

    /// The image `query` names, if present.
    pub fn status(&self, query: &str) -> Option<ImageView> {
        let record = self.inner.catalog().lookup(query)?.clone();
        Some(self.inner.view(record))
    }

    /// The image's config JSON, for verbose status.
    pub fn config_json(&self, id: &str) -> Result<Vec<u8>, ImageError> {
        self.inner.content.read(&Digest::parse(id)?)
    }

    /// Every image, or those `filter` names.
    pub fn list(&self, filter: Option<&str>) -> Vec<ImageView> {
        let catalog = self.inner.catalog();
        let records: Vec<ImageRecord> = match filter.filter(|f| !f.is_empty()) {
            Some(query) => catalog.lookup(query).into_iter().cloned().collect(),
            None => catalog.all().cloned().collect(),
        };
        drop(catalog);
        let mut views: Vec<ImageView> = records.into_iter().map(|r| self.inner.view(r)).collect();
        views.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        views
    }

    /// Removes what `query` names: a tag of a multi-tagged image only untags it; an ID, a repo
    /// digest or an image's last tag removes the image. Then frees content and snapshots no image or
    /// container needs (`containers` says which snapshots containers use). Removing an absent
    /// image succeeds (CRI semantics).
    pub async fn remove(
        &self,
        query: &str,
        containers: &dyn SnapshotUsers,
    ) -> Result<(), ImageError> {
        gc::remove(&self.inner, query, containers).await
    }

    /// Bytes and inodes used by content and snapshots, and the filesystem they live on.
    pub fn fs_usage(&self) -> Result<FsUsage, ImageError> {
        let (content_bytes, content_inodes) = self.inner.content.usage();
        let snapshots = self.inner.snapshots.usage()?;
        Ok(FsUsage {
            used_bytes: content_bytes + snapshots.bytes,
            inodes_used: content_inodes + snapshots.inodes,
        })
    }

    /// The directory whose filesystem holds the images (CRI's mountpoint).
    pub fn mountpoint(&self) -> &Path {
        &self.inner.root
    }
}

impl Inner {
    fn catalog(&self) -> std::sync::RwLockReadGuard<'_, Catalog> {
        self.catalog.read().unwrap_or_else(|p| p.into_inner())
    }

    fn catalog_mut(&self) -> std::sync::RwLockWriteGuard<'_, Catalog> {
        self.catalog.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The current registry (cheap to clone: shared pools and token cache).
    fn registry(&self) -> Registry {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn view(&self, record: ImageRecord) -> ImageView {
        let pins = self.pinned.read().unwrap_or_else(|p| p.into_inner());
        let pinned = pins.iter().any(|pin| {
            let normalized = Reference::parse(pin)
                .map(|r| r.to_string())
                .unwrap_or_else(|_| pin.clone());
            record.id == *pin
                || record.repo_tags.contains(&normalized)
                || record.repo_digests.contains(&normalized)
        });
        ImageView { record, pinned }
    }
}
