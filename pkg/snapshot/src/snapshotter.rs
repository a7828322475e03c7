//! The snapshotter: an index of committed snapshots plus atomic create/remove.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use crate::digest::{chain_id, validate_digest};
use crate::error::SnapshotError;
use crate::meta::{self, DIFF_DIR, Meta};
use crate::mount::RootfsMount;
use crate::usage::{Usage, dir_usage};
use crate::{sys, unpack};

const SNAPSHOTS_DIR: &str = "snapshots";
const TMP_DIR: &str = "tmp";
const LOCK_FILE: &str = "lock";

/// Tuning knobs for [`Snapshotter::open_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// Flush each unpacked layer to disk (a `syncfs` of the filesystem, shared by the layers
    /// written before it, plus fsyncs of the metadata and the directory rename) before it becomes
    /// visible, so a crash can never
    /// leave a committed snapshot with missing content. On by default; tests and throwaway
    /// roots can turn it off.
    pub sync: bool,
    /// Most bytes one layer may unpack to: both its uncompressed tar stream and the file
    /// content it writes are capped, so a decompression bomb (or a sparse-file bomb) fails with
    /// [`SnapshotError::LayerTooLarge`] instead of filling the disk. Default
    /// [`DEFAULT_MAX_UNPACKED_BYTES`].
    pub max_unpacked_bytes: u64,
}

/// Default [`Options::max_unpacked_bytes`]: 64 GiB, far above any sane layer.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 64 << 30;

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: true,
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
        }
    }
}

/// A committed snapshot: one layer's diff on top of its parent chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The chain ID naming the whole stack up to and including this layer.
    pub chain_id: String,
    /// The parent snapshot's chain ID, `None` for a base layer.
    pub parent: Option<String>,
    /// The layer's own diff ID (sha256 of its uncompressed tar).
    pub diff_id: String,
    /// The short numeric directory name under `<root>/snapshots/`.
    pub id: u64,
    /// This layer's diff directory, `<root>/snapshots/<id>/fs` (an overlay lowerdir).
    pub diff_dir: PathBuf,
    /// Bytes of regular-file content in this layer's diff.
    pub size: u64,
    pub created: SystemTime,
}

/// Overlayfs layer snapshots keyed by chain ID. See the crate docs for the on-disk layout.
///
/// Cheap to clone (an `Arc`); clones share the index and the lock on the root. Only one
/// `Snapshotter` may have a root open at a time (see [`SnapshotError::Locked`]).
#[derive(Clone)]
pub struct Snapshotter {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    snapshots_dir: PathBuf,
    tmp_dir: PathBuf,
    options: Options,
    /// chain ID → (dir id, metadata). Writers hold it across the commit/remove rename, so a
    /// commit's parent check and a remove's children check see a consistent view.
    index: RwLock<HashMap<String, (u64, Meta)>>,
    next_id: AtomicU64,
    /// One lock per chain ID being applied, so concurrent `apply_layer` calls for the same
    /// layer extract it once.
    inflight: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Which `syncfs` calls have covered which unpacks; see [`SyncClock`].
    sync_clock: SyncClock,
    /// Held (flock) for the snapshotter's lifetime.
    _lock: File,
}

/// `syncfs` flushes the whole filesystem, so one call covers every layer whose files were
/// written before it began. Layers are flushed at commit, after the puller has let go of its
/// download slot (a flush in the unpack held the slots of all layers in flight while the disk
/// caught up, and no download ran meanwhile), and a commit skips the flush when a `syncfs`
/// that began after its layer's writes has already finished: an image's layers, committed in
/// order, mostly share one.
#[derive(Default)]
struct SyncClock {
    /// Bumped as each `syncfs` begins: its epoch.
    started: AtomicU64,
    /// The newest epoch whose `syncfs` has finished.
    covered: AtomicU64,
}

impl SyncClock {
    /// The epoch an unpack's writes are newer than: read once they are done.
    fn now(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }

    /// Flushes the filesystem of `dir` unless a flush that began after `written_at` finished.
    fn flush(&self, dir: &Path, written_at: u64) -> Result<(), SnapshotError> {
        if self.covered.load(Ordering::SeqCst) > written_at {
            return Ok(());
        }
        let epoch = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let fd = File::open(dir).map_err(|e| SnapshotError::io("open", dir, e))?;
        sys::syncfs(fd.as_fd()).map_err(|e| SnapshotError::io("syncfs", dir, e))?;
        self.covered.fetch_max(epoch, Ordering::SeqCst);
        Ok(())
    }
}

/// A layer extracted and verified in a temp dir, not yet visible. Dropping it discards it.
///
/// Lets a puller unpack all layers of an image concurrently and then commit them in order
/// (a commit needs its parent committed; the unpack does not).
pub struct UnpackedLayer {
    snapshotter: Snapshotter,
    /// `<root>/tmp/<id>`, until committed.
    dir: PathBuf,
    committed: bool,
    id: u64,
    diff_id: String,
    size: u64,
    /// [`SyncClock::now`] once its files were written.
    written_at: u64,
}

impl Drop for UnpackedLayer {
    fn drop(&mut self) {
        if !self.committed {
            remove_tree(&self.dir);
        }
    }
}

/// Removes a temp tree, logging instead of failing: leftovers are removed again on next open.
fn remove_tree(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %dir.display(), error = %e, "cannot remove temporary snapshot dir");
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<(), SnapshotError> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(SnapshotError::io("create directory", path, e))
        }
        _ => Ok(()),
    }
}

impl Snapshotter {
    /// Opens (creating if needed) a snapshot root with default [`Options`].
    pub fn open(root: &Path) -> Result<Snapshotter, SnapshotError> {
        Snapshotter::open_with(root, Options::default())
    }

    /// Opens a snapshot root: creates `root` (mode 0700: layers hold setuid binaries that
    /// unprivileged users must not reach), locks it, deletes leftovers of interrupted unpacks
    /// and removals under `tmp/`, and loads the index from `snapshots/*/info.json`.
    pub fn open_with(root: &Path, options: Options) -> Result<Snapshotter, SnapshotError> {
        fs::create_dir_all(root).map_err(|e| SnapshotError::io("create directory", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| SnapshotError::io("resolve", root, e))?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
            .map_err(|e| SnapshotError::io("chmod", &root, e))?;

        let lock_path = root.join(LOCK_FILE);
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|e| SnapshotError::io("open", &lock_path, e))?;
        if !sys::try_lock_exclusive(lock.as_fd())
            .map_err(|e| SnapshotError::io("lock", &lock_path, e))?
        {
            return Err(SnapshotError::Locked { path: root });
        }
        // Fail at open, not at the first pull, on kernels without openat2 (Linux < 5.6).
        let root_fd = File::open(&root).map_err(|e| SnapshotError::io("open", &root, e))?;
        if let Err(e) = sys::open_beneath(root_fd.as_fd(), c".", libc::O_RDONLY | libc::O_DIRECTORY)
        {
            return Err(match e.raw_os_error() {
                Some(libc::ENOSYS) => {
                    SnapshotError::Unsupported("openat2(2) is required (Linux 5.6 or newer)".into())
                }
                _ => SnapshotError::io("openat2", &root, e),
            });
        }

        let snapshots_dir = root.join(SNAPSHOTS_DIR);
        let tmp_dir = root.join(TMP_DIR);
        mkdir(&snapshots_dir, 0o700)?;
        mkdir(&tmp_dir, 0o700)?;
        let leftovers =
            fs::read_dir(&tmp_dir).map_err(|e| SnapshotError::io("read directory", &tmp_dir, e))?;
        for entry in leftovers {
            let entry = entry.map_err(|e| SnapshotError::io("read directory", &tmp_dir, e))?;
            tracing::info!(path = %entry.path().display(), "removing leftover of an interrupted unpack or removal");
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(entry.path()),
                _ => fs::remove_file(entry.path()),
            };
            removed.map_err(|e| SnapshotError::io("remove", entry.path(), e))?;
        }

        let loaded = meta::load(&snapshots_dir)?;
        for path in &loaded.discard {
            // Move first so the directory disappears atomically, then delete at leisure.
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let doomed = tmp_dir.join(format!("discard-{name}"));
            fs::rename(path, &doomed).map_err(|e| SnapshotError::io("move aside", path, e))?;
            remove_tree(&doomed);
        }
        tracing::debug!(root = %root.display(), snapshots = loaded.index.len(), "snapshotter opened");
        Ok(Snapshotter {
            inner: Arc::new(Inner {
                root,
                snapshots_dir,
                tmp_dir,
                options,
                index: RwLock::new(loaded.index),
                next_id: AtomicU64::new(loaded.max_id + 1),
                inflight: Mutex::new(HashMap::new()),
                sync_clock: SyncClock::default(),
                _lock: lock,
            }),
        })
    }

    /// The root directory (canonicalized).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    // A panic while holding the index lock cannot leave the map half-updated (each write is
    // one insert or remove), so poisoning is ignored.
    fn read_index(&self) -> RwLockReadGuard<'_, HashMap<String, (u64, Meta)>> {
        self.inner.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_index(&self) -> RwLockWriteGuard<'_, HashMap<String, (u64, Meta)>> {
        self.inner.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn info(&self, id: u64, meta: &Meta) -> SnapshotInfo {
        SnapshotInfo {
            chain_id: meta.chain_id.clone(),
            parent: meta.parent.clone(),
            diff_id: meta.diff_id.clone(),
            id,
            diff_dir: self.inner.snapshots_dir.join(id.to_string()).join(DIFF_DIR),
            size: meta.size,
            created: meta.created(),
        }
    }

    /// Whether a snapshot with this chain ID is committed.
    pub fn exists(&self, chain_id: &str) -> bool {
        self.read_index().contains_key(chain_id)
    }

    /// The committed snapshot with this chain ID, if any.
    pub fn get(&self, chain_id: &str) -> Option<SnapshotInfo> {
        self.read_index()
            .get(chain_id)
            .map(|(id, meta)| self.info(*id, meta))
    }

    /// All committed snapshots, oldest (lowest id) first.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>, SnapshotError> {
        let mut all: Vec<SnapshotInfo> = self
            .read_index()
            .values()
            .map(|(id, m)| self.info(*id, m))
            .collect();
        all.sort_by_key(|s| s.id);
        Ok(all)
    }

    /// Extracts an uncompressed layer tar as snapshot `chain_id` on top of `parent`.
    ///
    /// Computes the sha256 of the stream while extracting and fails with
    /// [`SnapshotError::DiffIdMismatch`] unless it equals `expected_diff_id`. `chain_id` must be
    /// [`crate::chain_id`]`(parent, expected_diff_id)`. Atomic: the layer is unpacked into
    /// `<root>/tmp/`, verified, synced, and renamed into `<root>/snapshots/`; on any error
    /// nothing is left behind. Idempotent and safe to call concurrently: if the snapshot
    /// exists (or another thread commits it while this one waits) it returns that snapshot
    /// without reading `tar`.
    pub fn apply_layer(
        &self,
        chain_id: &str,
        parent: Option<&str>,
        expected_diff_id: &str,
        tar: impl Read,
    ) -> Result<SnapshotInfo, SnapshotError> {
        check_chain(chain_id, parent, expected_diff_id)?;
        if let Some(info) = self.get(chain_id) {
            return Ok(info);
        }
        let slot = {
            let mut inflight = self
                .inner
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            inflight.entry(chain_id.to_string()).or_default().clone()
        };
        let result = {
            let _guard = slot.lock().unwrap_or_else(|e| e.into_inner());
            match self.get(chain_id) {
                Some(info) => Ok(info),
                None => self.apply_locked(chain_id, parent, expected_diff_id, tar),
            }
        };
        let mut inflight = self
            .inner
            .inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Only the map and this call hold the slot: nobody else is waiting on it.
        if Arc::strong_count(&slot) == 2 {
            inflight.remove(chain_id);
        }
        result
    }

    fn apply_locked(
        &self,
        chain_id: &str,
        parent: Option<&str>,
        diff_id: &str,
        tar: impl Read,
    ) -> Result<SnapshotInfo, SnapshotError> {
        if let Some(parent) = parent
            && !self.exists(parent)
        {
            return Err(SnapshotError::ParentNotFound {
                chain_id: chain_id.to_string(),
                parent: parent.to_string(),
            });
        }
        self.unpack(diff_id, tar)?.commit(chain_id, parent)
    }

    /// Extracts and verifies a layer without committing it: the first half of
    /// [`Snapshotter::apply_layer`], for pulls that unpack layers in parallel and commit them
    /// in order with [`UnpackedLayer::commit`]. No coalescing: two unpacks of one layer both
    /// extract, and the second commit finds the first's snapshot and discards its own.
    pub fn unpack(
        &self,
        expected_diff_id: &str,
        tar: impl Read,
    ) -> Result<UnpackedLayer, SnapshotError> {
        validate_digest(expected_diff_id)?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let dir = self.inner.tmp_dir.join(id.to_string());
        mkdir(&dir, 0o700)?;
        // From here on the guard removes the temp dir on every error path.
        let mut layer = UnpackedLayer {
            snapshotter: self.clone(),
            dir: dir.clone(),
            committed: false,
            id,
            diff_id: expected_diff_id.to_string(),
            size: 0,
            written_at: 0,
        };
        let diff = dir.join(DIFF_DIR);
        mkdir(&diff, 0o755)?;
        let started = std::time::Instant::now();
        let unpacked = unpack::unpack(&diff, tar, self.inner.options.max_unpacked_bytes)?;
        if unpacked.digest != expected_diff_id {
            return Err(SnapshotError::DiffIdMismatch {
                expected: expected_diff_id.to_string(),
                actual: unpacked.digest,
            });
        }
        // Flushed at commit (see `SyncClock`).
        layer.written_at = self.inner.sync_clock.now();
        tracing::debug!(
            diff_id = expected_diff_id,
            entries = unpacked.entries,
            tar_bytes = unpacked.tar_bytes,
            elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "layer unpacked"
        );
        layer.size = unpacked.content_bytes;
        Ok(layer)
    }

    /// Removes a snapshot. Refuses with [`SnapshotError::HasChildren`] while another snapshot
    /// names it as parent. The caller must ensure no mounted rootfs still uses it.
    pub fn remove(&self, chain_id: &str) -> Result<(), SnapshotError> {
        let doomed = {
            let mut index = self.write_index();
            let Some((id, _)) = index.get(chain_id) else {
                return Err(SnapshotError::NotFound {
                    chain_id: chain_id.to_string(),
                });
            };
            let id = *id;
            let mut children: Vec<String> = index
                .values()
                .filter(|(_, m)| m.parent.as_deref() == Some(chain_id))
                .map(|(_, m)| m.chain_id.clone())
                .collect();
            if !children.is_empty() {
                children.sort();
                return Err(SnapshotError::HasChildren {
                    chain_id: chain_id.to_string(),
                    children,
                });
            }
            // Rename out of snapshots/ first: the removal is atomic even if the deletion below
            // is interrupted (open() deletes whatever is left in tmp/).
            let dir = self.inner.snapshots_dir.join(id.to_string());
            let doomed = self.inner.tmp_dir.join(format!("rm-{id}"));
            fs::rename(&dir, &doomed).map_err(|e| SnapshotError::io("move aside", &dir, e))?;
            index.remove(chain_id);
            doomed
        };
        fs::remove_dir_all(&doomed).map_err(|e| SnapshotError::io("remove", &doomed, e))
    }

    /// Bytes and inodes used under the root (for CRI `ImageFsInfo`); see [`Usage`].
    pub fn usage(&self) -> Result<Usage, SnapshotError> {
        dir_usage(&self.inner.root)
    }

    /// Prepares (but does not mount) a container rootfs on top of snapshot `top_chain_id`.
    ///
    /// The lowerdirs are the diff dirs of the whole chain, top layer first. `rw_dir/upper` and
    /// `rw_dir/work` are created if missing (and reused if present, so a container's writes
    /// survive a restart of berthd); the upper dir gets the owner and mode of the image's root
    /// directory so the merged `/` looks like the image's.
    /// The diff dirs of snapshot `top_chain_id` and all its parents, top layer first.
    pub(crate) fn chain_lowerdirs(
        &self,
        top_chain_id: &str,
    ) -> Result<Vec<PathBuf>, SnapshotError> {
        let index = self.read_index();
        let mut lowerdirs = Vec::new();
        let mut next = Some(top_chain_id.to_string());
        while let Some(chain_id) = next {
            let Some((id, meta)) = index.get(&chain_id) else {
                return Err(SnapshotError::NotFound { chain_id });
            };
            if lowerdirs.len() > index.len() {
                return Err(SnapshotError::Corrupt {
                    path: self.inner.snapshots_dir.clone(),
                    reason: format!("parent chain of {top_chain_id} loops"),
                });
            }
            lowerdirs.push(self.inner.snapshots_dir.join(id.to_string()).join(DIFF_DIR));
            next = meta.parent.clone();
        }
        Ok(lowerdirs)
    }

    /// The snapshots dir, which every lowerdir lives in (for relative overlay options).
    pub(crate) fn snapshots_dir(&self) -> &Path {
        &self.inner.snapshots_dir
    }

    pub fn prepare_rootfs(
        &self,
        top_chain_id: &str,
        rw_dir: &Path,
    ) -> Result<RootfsMount, SnapshotError> {
        let lowerdirs = self.chain_lowerdirs(top_chain_id)?;
        let upperdir = upper_dir(rw_dir);
        let workdir = rw_dir.join("work");
        fs::create_dir_all(rw_dir).map_err(|e| SnapshotError::io("create directory", rw_dir, e))?;
        if !upperdir.exists() {
            mkdir(&upperdir, 0o755)?;
            let image_root = fs::metadata(&lowerdirs[0])
                .map_err(|e| SnapshotError::io("stat", &lowerdirs[0], e))?;
            std::os::unix::fs::chown(&upperdir, Some(image_root.uid()), Some(image_root.gid()))
                .map_err(|e| SnapshotError::io("chown", &upperdir, e))?;
            fs::set_permissions(
                &upperdir,
                fs::Permissions::from_mode(image_root.mode() & 0o7777),
            )
            .map_err(|e| SnapshotError::io("chmod", &upperdir, e))?;
        }
        mkdir(&workdir, 0o700)?;
        Ok(RootfsMount::new(
            lowerdirs,
            upperdir,
            workdir,
            self.inner.snapshots_dir.clone(),
        ))
    }
}

/// Validates the digests and that `chain_id` really is `chain_id(parent, diff_id)`.
fn check_chain(chain: &str, parent: Option<&str>, diff_id: &str) -> Result<(), SnapshotError> {
    validate_digest(chain)?;
    validate_digest(diff_id)?;
    if let Some(parent) = parent {
        validate_digest(parent)?;
    }
    let expected = chain_id(parent, diff_id);
    if expected != chain {
        return Err(SnapshotError::ChainIdMismatch {
            chain_id: chain.to_string(),
            expected,
        });
    }
    Ok(())
}

impl UnpackedLayer {
    /// The verified diff ID.
    pub fn diff_id(&self) -> &str {
        &self.diff_id
    }

    /// Makes the layer visible as snapshot `chain_id` on top of `parent`, which must be
    /// committed. If `chain_id` already exists, this copy is discarded and the existing
    /// snapshot returned.
    pub fn commit(
        mut self,
        chain_id: &str,
        parent: Option<&str>,
    ) -> Result<SnapshotInfo, SnapshotError> {
        check_chain(chain_id, parent, &self.diff_id)?;
        let dir = self.dir.clone();
        let snapshotter = self.snapshotter.clone();
        let inner = &snapshotter.inner;
        // Its content reaches the disk before it can become visible: a crash never leaves a
        // committed snapshot with missing files.
        if inner.options.sync {
            inner.sync_clock.flush(&dir, self.written_at)?;
        }
        let meta = Meta::new(chain_id, parent, &self.diff_id, self.size);
        meta.write(&dir, inner.options.sync)?;

        let mut index = snapshotter.write_index();
        if let Some((id, existing)) = index.get(chain_id) {
            return Ok(snapshotter.info(*id, existing)); // `self` drops: temp dir removed
        }
        if let Some(parent) = parent
            && !index.contains_key(parent)
        {
            return Err(SnapshotError::ParentNotFound {
                chain_id: chain_id.to_string(),
                parent: parent.to_string(),
            });
        }
        let target = inner.snapshots_dir.join(self.id.to_string());
        fs::rename(&dir, &target).map_err(|e| SnapshotError::io("rename into place", &dir, e))?;
        self.committed = true;
        let info = snapshotter.info(self.id, &meta);
        index.insert(chain_id.to_string(), (self.id, meta));
        // The snapshot is in place and indexed either way; a failed fsync is still reported.
        if inner.options.sync {
            File::open(&inner.snapshots_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| SnapshotError::io("fsync", &inner.snapshots_dir, e))?;
        }
        Ok(info)
    }
}

/// The writable layer (overlay upperdir) of a rootfs prepared in `rw_dir`: what a container wrote,
/// for CRI's writable-layer stats.
pub fn upper_dir(rw_dir: &Path) -> std::path::PathBuf {
    rw_dir.join("upper")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_flush_covers_the_layers_written_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SyncClock::default();
        let (a, b) = (clock.now(), clock.now());
        clock.flush(dir.path(), a).unwrap();
        assert_eq!(clock.started.load(Ordering::SeqCst), 1);
        // Written before that flush began: covered, no second syncfs.
        clock.flush(dir.path(), b).unwrap();
        assert_eq!(clock.started.load(Ordering::SeqCst), 1);
        // Written after it: flushed again.
        let c = clock.now();
        clock.flush(dir.path(), c).unwrap();
        assert_eq!(clock.started.load(Ordering::SeqCst), 2);
        assert_eq!(clock.covered.load(Ordering::SeqCst), 2);
    }
}
