//! A blob being downloaded, read chunk by chunk.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use crate::endpoint::Endpoint;
use crate::error::RegistryError;

type ChunkStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send + Sync>>;

/// The body of a blob response. Nothing is buffered beyond what the
/// connection holds: read with [`next_chunk`](Self::next_chunk) or as a
/// [`Stream`]. The content is NOT verified here; feed the chunks to a
/// [`DigestVerifier`](crate::DigestVerifier).
pub struct BlobStream {
    /// `Content-Length` of the response, when the server sent one.
    pub content_length: Option<u64>,
    /// The endpoint the blob comes from (before any redirect).
    pub endpoint: Endpoint,
    digest: String,
    inner: ChunkStream,
}

impl fmt::Debug for BlobStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStream")
            .field("digest", &self.digest)
            .field("content_length", &self.content_length)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl BlobStream {
    pub(crate) fn new(resp: reqwest::Response, endpoint: Endpoint, digest: &str) -> BlobStream {
        BlobStream {
            content_length: resp.content_length(),
            endpoint,
            digest: digest.to_string(),
            inner: Box::pin(resp.bytes_stream()),
        }
    }

    /// The digest this blob was requested by.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The next chunk, or `None` at the end of the body.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, RegistryError> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }

    fn map_err(&self, e: reqwest::Error) -> RegistryError {
        RegistryError::Network {
            endpoint: format!("{} (blob {})", self.endpoint, self.digest),
            source: e,
        }
    }
}

impl Stream for BlobStream {
    type Item = Result<Bytes, RegistryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.inner.as_mut().poll_next(cx) {
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(self.map_err(e)))),
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
