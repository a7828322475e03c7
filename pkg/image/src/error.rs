use std::path::PathBuf;

use berth_registry::RegistryError;
use berth_snapshot::SnapshotError;
use berth_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid digest {0:?}")]
    InvalidDigest(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{what}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("unsupported layer media type {0:?}")]
    UnsupportedLayer(String),
    #[error("unsupported manifest: {0}")]
    UnsupportedManifest(String),
    #[error("invalid image {reference}: {reason}")]
    InvalidImage { reference: String, reason: String },
    #[error("decompressing layer: {0}")]
    Decompress(String),
    #[error("pulling {what}: no data received for {secs} s")]
    Stalled { what: String, secs: u64 },
    /// Another layer of the same pull failed; its error is the one reported.
    #[error("layer download cancelled: another layer of the pull failed")]
    Cancelled,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
    /// The result of a coalesced operation, shared by every caller that waited for it.
    #[error(transparent)]
    Shared(#[from] std::sync::Arc<ImageError>),
}
