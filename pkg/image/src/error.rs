//! The image store's error type. Variants say what failed and carry the typed cause; the CRI
//! layer (pkg/cri/src/error.rs) alone decides which gRPC code each one answers with.

use std::io;
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
    /// An image's config (the one being committed on or saved) is not valid JSON.
    #[error("invalid image config: {source}")]
    InvalidConfig {
        #[source]
        source: serde_json::Error,
    },
    /// An image archive being loaded is not a readable tar stream.
    #[error("invalid image archive: not a readable tar archive: {source}")]
    ArchiveTar {
        #[source]
        source: io::Error,
    },
    /// The stream carrying an image archive failed (the client's upload broke off).
    #[error("invalid image archive: reading the archive: {source}")]
    ArchiveStream {
        #[source]
        source: io::Error,
    },
    /// One of an archive's JSON documents (`oci-layout`, `index.json`, `manifest.json`) does not
    /// parse.
    #[error("invalid image archive: {document}: {source}")]
    ArchiveJson {
        document: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Reading a layer's stream failed while decompressing it (`op` says at which point).
    #[error("decompressing layer: {op}: {source}")]
    ReadLayer {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// The layer looks like zstd but its frame header does not decode.
    #[error("decompressing layer: zstd: {source}")]
    Zstd {
        #[source]
        source: ruzstd::decoding::errors::FrameDecoderError,
    },
    /// The layer's unpacker finished while its blob was still arriving, without saying why.
    #[error("{what}: the unpacker finished before the end of the blob")]
    UnpackerStopped { what: String },
    #[error("pulling {what}: no data received for {secs} s")]
    Stalled { what: String, secs: u64 },
    /// Another layer of the same pull failed; its error is the one reported.
    #[error("layer download cancelled: another layer of the pull failed")]
    Cancelled,
    /// Every caller waiting for a pull went away before it finished.
    #[error("the pull was abandoned: every caller went away")]
    Abandoned,
    /// The pull's download slots were closed (they never are while the pull runs).
    #[error("waiting for a layer download slot: {source}")]
    DownloadSlots {
        #[source]
        source: tokio::sync::AcquireError,
    },
    /// A filesystem operation on Berth's own files (content store, staging dirs, archives).
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A blocking task (store write, unpack, commit, ...) panicked or was cancelled.
    #[error("{what} task: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Serialising a document Berth writes (config, manifest, index) failed.
    #[error("encoding {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The result of a coalesced operation, shared by every caller that waited for it.
    #[error(transparent)]
    Shared(#[from] std::sync::Arc<ImageError>),
}

impl ImageError {
    /// A closure for `map_err` that records the operation and path of a failed I/O call.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { op, path, source }
    }

    /// A closure for `map_err` on a joined blocking task.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| ImageError::Task { what, source }
    }

    /// A closure for `map_err` on `serde_json::to_vec` of a document Berth writes.
    pub(crate) fn encode(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| ImageError::Encode { what, source }
    }
}
