//! What a pull needs from a registry: resolve a reference to a manifest or index, fetch a manifest
//! by digest, stream a blob. [`berth_registry::Client`] is the real one; the pull tests serve
//! images from memory through a fake, so the pull logic (coalescing, verification, cleanup after
//! failures) is tested without a network, without root and in milliseconds.

use std::future::Future;
use std::pin::Pin;

use berth_registry::{BlobStream, Credentials, Endpoint, Manifest, Reference, RegistryError};
use bytes::Bytes;

/// A registry request in flight.
pub(crate) type Fetching<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, RegistryError>> + Send + 'a>>;

/// Where pulls fetch manifests and blobs from. Each call is one registry request (the client
/// itself tries its endpoints in turn): what the tests count.
pub(crate) trait PullSource: Send + Sync {
    /// The manifest or index `reference` names, by digest if it has one, else by tag; verified
    /// against its digest (see [`berth_registry::Client::fetch_manifest`]).
    fn fetch_manifest<'a>(
        &'a self,
        reference: &'a Reference,
        credentials: Option<&'a Credentials>,
    ) -> Fetching<'a, Manifest>;

    /// A stream of the blob `digest` of `reference`'s repository, trying `preferred` first. The
    /// bytes are NOT verified: the caller checks them.
    fn fetch_blob<'a>(
        &'a self,
        reference: &'a Reference,
        digest: &'a str,
        preferred: Option<&'a Endpoint>,
        credentials: Option<&'a Credentials>,
    ) -> Fetching<'a, Box<dyn BlobChunks>>;
}

/// A blob being downloaded.
pub(crate) trait BlobChunks: Send {
    /// The next chunk, or `None` at the end of the blob.
    fn next_chunk(&mut self) -> Fetching<'_, Option<Bytes>>;
}

impl PullSource for berth_registry::Client {
    fn fetch_manifest<'a>(
        &'a self,
        reference: &'a Reference,
        credentials: Option<&'a Credentials>,
    ) -> Fetching<'a, Manifest> {
        Box::pin(berth_registry::Client::fetch_manifest(
            self,
            reference,
            credentials,
        ))
    }

    fn fetch_blob<'a>(
        &'a self,
        reference: &'a Reference,
        digest: &'a str,
        preferred: Option<&'a Endpoint>,
        credentials: Option<&'a Credentials>,
    ) -> Fetching<'a, Box<dyn BlobChunks>> {
        Box::pin(async move {
            let blob =
                berth_registry::Client::fetch_blob(self, reference, digest, preferred, credentials)
                    .await?;
            Ok(Box::new(blob) as Box<dyn BlobChunks>)
        })
    }
}

impl BlobChunks for BlobStream {
    fn next_chunk(&mut self) -> Fetching<'_, Option<Bytes>> {
        Box::pin(BlobStream::next_chunk(self))
    }
}
