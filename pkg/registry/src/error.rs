//! The crate's one error type.
//!
//! Variants are kept distinguishable so that the CRI layer can map them to
//! gRPC codes (NotFound, Unauthenticated/PermissionDenied, InvalidArgument,
//! DataLoss, Unavailable...) without parsing messages. Every message names
//! the registry, repository, endpoint or digest involved, because a pull
//! failure is read by someone looking at `kubectl describe pod`.

use std::path::PathBuf;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference string cannot be parsed or is not normalisable.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },

    /// The credentials given (CRI AuthConfig or config file) are malformed.
    #[error("invalid registry credentials: {0}")]
    InvalidCredentials(String),

    /// No endpoint has the manifest (every one answered 404 or failed).
    #[error("manifest for {reference} not found on any endpoint (tried {tried})")]
    NotFound { reference: String, tried: String },

    /// No endpoint has the blob.
    #[error("blob {digest} of {repository} not found on any endpoint (tried {tried})")]
    BlobNotFound {
        repository: String,
        digest: String,
        tried: String,
    },

    /// The registry rejected our (or the absence of) credentials.
    #[error("not authorized to pull from {registry}: {detail}")]
    Unauthorized { registry: String, detail: String },

    /// The manifest's media type is one we cannot (or will not) handle.
    #[error("unsupported manifest media type {media_type:?} for {reference}: {detail}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
        detail: String,
    },

    /// The bytes received do not hash to the digest they were requested by.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// The bytes received are not the size the descriptor announced.
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },

    /// A manifest (or other bounded document) exceeded its size cap.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge { what: String, limit: u64 },

    /// An endpoint answered with an unexpected HTTP status.
    #[error("{endpoint} answered HTTP {status} for {url}: {body}")]
    Http {
        endpoint: String,
        url: String,
        status: u16,
        body: String,
    },

    /// Connecting to, or talking to, an endpoint failed below HTTP.
    #[error("network error talking to {endpoint}: {source}")]
    Network {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    /// A CA file from the configuration holds no certificate.
    #[error("cannot load CA file {path}: {reason}")]
    Tls { path: PathBuf, reason: String },

    /// A CA file or client certificate from the configuration cannot be read.
    #[error("cannot read {what} {path}: {source}")]
    ReadTlsFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A CA file or client certificate from the configuration is not the PEM it should be.
    #[error("{what} {path} is not a PEM {expected}: {source}")]
    InvalidPem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        #[source]
        source: reqwest::Error,
    },

    /// The HTTP client for an endpoint cannot be built from its TLS settings.
    #[error("cannot build HTTP client (CA files {ca_files:?}): {source}")]
    HttpClient {
        ca_files: Vec<PathBuf>,
        #[source]
        source: reqwest::Error,
    },

    /// The registry configuration is invalid.
    #[error("invalid registry configuration for {host:?}: {reason}")]
    Config { host: String, reason: String },

    /// The containerd-style hosts directory (`registry.config_path`) cannot be read.
    #[error("invalid registry configuration: {source}")]
    HostsDir {
        #[source]
        source: berth_config::ConfigError,
    },

    /// The credentials configured for a registry host are malformed.
    #[error("invalid registry configuration for {host:?}: {source}")]
    HostCredentials {
        host: String,
        #[source]
        source: Box<RegistryError>,
    },

    /// A manifest, index or config document is not valid JSON of its kind.
    #[error("invalid {what}: {reason}")]
    InvalidManifest { what: String, reason: String },

    /// A manifest, index or config document does not parse as JSON of its kind.
    #[error("invalid {what}: {source}")]
    ParseManifest {
        what: String,
        #[source]
        source: serde_json::Error,
    },

    /// No manifest in an index matches the requested platform.
    #[error("no manifest for platform {wanted} in index (available: {available})")]
    NoMatchingPlatform { wanted: String, available: String },
}

impl RegistryError {
    /// True for errors that say "this endpoint can't serve it" rather than
    /// "the request is wrong": the client moves on to the next endpoint.
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. } | Self::BlobNotFound { .. })
    }

    /// Ranks per-endpoint failures so that, when every endpoint failed, the
    /// most telling one is reported: a rejected login beats corrupt content,
    /// which beats an HTTP error, which beats a network error, which beats
    /// "not found".
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Self::Unauthorized { .. } => 6,
            Self::UnsupportedMediaType { .. } => 5,
            Self::DigestMismatch { .. }
            | Self::SizeMismatch { .. }
            | Self::TooLarge { .. }
            | Self::InvalidManifest { .. }
            | Self::ParseManifest { .. } => 4,
            Self::Http { .. } => 3,
            Self::Network { .. } => 2,
            _ => 1,
        }
    }
}

/// Shortens a response body for inclusion in an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(&body[..body.len().min(MAX)]);
    let mut s: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    s = s.trim().to_string();
    if body.len() > MAX {
        s.push_str("...");
    }
    if s.is_empty() {
        s.push_str("(empty body)");
    }
    s
}
