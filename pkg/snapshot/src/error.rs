//! The snapshotter's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while unpacking, committing, removing or mounting snapshots.
///
/// Variants a caller is expected to act on ([`SnapshotError::UnsafePath`],
/// [`SnapshotError::DiffIdMismatch`], [`SnapshotError::NotFound`],
/// [`SnapshotError::ParentNotFound`], [`SnapshotError::HasChildren`], [`SnapshotError::Locked`])
/// carry structured fields; the rest wrap the underlying OS error together with the path or tar
/// entry it concerns, so a log line alone says what failed where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A tar entry tried to reach outside the layer being extracted (`..` above the root, an
    /// absolute path, a hardlink to a file outside, or a parent path that resolves through a
    /// symlink pointing outside). The whole unpack is refused and its temp dir removed: a layer
    /// that does this is hostile or broken, and silently re-rooting it would hide that.
    #[error("unsafe path in layer: entry {entry:?}: {reason}")]
    UnsafePath { entry: String, reason: String },

    /// The sha256 of the uncompressed tar stream is not the diff ID the image config declares.
    #[error("layer content does not match its diff ID: expected {expected}, got {actual}")]
    DiffIdMismatch { expected: String, actual: String },

    /// A digest argument (diff ID, chain ID, parent) is not `sha256:` followed by 64 lowercase
    /// hex digits.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest { value: String, reason: &'static str },

    /// `chain_id` is not `chain_id(parent, diff_id)`: the caller mixed up layers.
    #[error("chain ID {chain_id} does not match its parent and diff ID (expected {expected})")]
    ChainIdMismatch { chain_id: String, expected: String },

    /// No snapshot with this chain ID exists.
    #[error("snapshot {chain_id} not found")]
    NotFound { chain_id: String },

    /// The parent named for a new snapshot does not exist (or was removed during the unpack).
    #[error("cannot commit snapshot {chain_id}: parent snapshot {parent} does not exist")]
    ParentNotFound { chain_id: String, parent: String },

    /// The snapshot is the parent of other snapshots; remove those first.
    #[error("snapshot {chain_id} is the parent of {children:?}; remove them first")]
    HasChildren {
        chain_id: String,
        children: Vec<String>,
    },

    /// Another [`crate::Snapshotter`] (in this process or another one) has this root open.
    /// Two owners would delete each other's in-progress unpacks on open; clone the existing
    /// snapshotter instead.
    #[error("snapshot root {path} is already in use by another snapshotter")]
    Locked { path: PathBuf },

    /// The kernel lacks something the snapshotter needs (openat2 needs Linux 5.6).
    #[error("unsupported kernel: {0}")]
    Unsupported(String),

    /// The layer stream is not a valid tar archive (bad header checksum, truncated data, ...).
    #[error("invalid layer tar{}: {source}", entry.as_ref().map(|e| format!(" at entry {e:?}")).unwrap_or_default())]
    InvalidTar {
        entry: Option<String>,
        #[source]
        source: io::Error,
    },

    /// The layer unpacks to more than the configured cap (its uncompressed tar stream, or the
    /// file content it writes, is over `limit` bytes): a decompression bomb or an image too
    /// big for this node. The partial snapshot is removed.
    #[error(
        "layer unpacks to more than {limit} bytes (the configured maximum unpacked layer size); refusing it"
    )]
    LayerTooLarge { limit: u64 },

    /// Creating one tar entry on disk failed.
    #[error("cannot extract entry {entry:?}: {op}: {source}")]
    Extract {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// A filesystem operation on the snapshotter's own files failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A snapshot's metadata file parses but says something impossible.
    #[error("corrupt snapshot metadata {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    /// A snapshot's metadata file is not valid JSON of its format.
    #[error("corrupt snapshot metadata {path}: {source}")]
    ParseMeta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A snapshot's metadata file names a chain ID, diff ID or parent that is not a digest.
    #[error("corrupt snapshot metadata {path}: {source}")]
    MetaDigest {
        path: PathBuf,
        #[source]
        source: Box<SnapshotError>,
    },

    /// Serialising a snapshot's metadata failed.
    #[error("encoding snapshot metadata {path}: {source}")]
    EncodeMeta {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// The overlay mount options do not fit in one page even with paths relative to the
    /// snapshots directory.
    #[error(
        "overlay mount options for {layers} layers are {len} bytes, over the {limit}-byte limit"
    )]
    MountOptionsTooLong {
        layers: usize,
        len: usize,
        limit: usize,
    },

    /// mount(2) or umount2(2) failed.
    #[error("cannot {op} {target}: {source}")]
    Mount {
        op: &'static str,
        target: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
