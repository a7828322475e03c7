//! Berth's client for OCI distribution-spec registries (Docker Hub and any
//! other registry).
//!
//! What it does, and why it is not an off-the-shelf client: it needs
//! control over mirrors (tried in order, with or without falling back to
//! the origin), per-host TLS (extra CAs, insecure hosts) and credentials,
//! and it must stream blobs straight to the content store without
//! buffering them.
//!
//! - [`Reference`]: Docker-normalised image references.
//! - [`Client`]: [`fetch_manifest`](Client::fetch_manifest) (verified,
//!   size-capped, parsed) and [`fetch_blob`](Client::fetch_blob) (a
//!   [`BlobStream`]), with anonymous, Basic, bearer-token, identity-token and
//!   registry-token authentication.
//! - [`DigestVerifier`]: incremental digest + size check for streamed blobs.
//! - [`manifest`]: serde types for manifests, indexes and image configs;
//!   [`select_platform`] picks an index entry for a platform.
//!
//! Everything the network or the user can influence is an error, never a
//! panic; errors are [`RegistryError`] variants that the CRI layer maps to
//! gRPC codes.

mod auth;
pub mod auth_file;
mod blob;
mod client;
pub mod config;
mod credentials;
mod digest;
mod endpoint;
mod error;
mod fetch;
mod hosts_dir;
mod login;
pub mod manifest;
mod platform;
mod reference;
mod tls;
mod transport;

pub use auth_file::{AuthFile, StoredLogin, normalize_server};
pub use blob::BlobStream;
pub use client::Client;
pub use config::{Mirror, RegistryConfig, RegistryHost};
pub use credentials::Credentials;
pub use digest::{Algorithm, Digest, DigestVerifier, sha256_digest};
pub use endpoint::{DOCKER_HUB_ENDPOINT, Endpoint, is_loopback};
pub use error::RegistryError;
pub use fetch::Manifest;
pub use login::LoggedIn;
pub use manifest::{
    ContainerConfig, Descriptor, History, ImageConfig, ImageIndex, ImageManifest, ManifestKind,
    Platform, RootFs, parse_config, parse_manifest,
};
pub use platform::{host_platform, select_platform};
pub use reference::{DEFAULT_TAG, DOCKER_HUB, Reference};
pub use tls::ClientOptions;
