//! Fetching a manifest or opening a blob from one endpoint.

use bytes::{Bytes, BytesMut};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};

use crate::blob::BlobStream;
use crate::client::Client;
use crate::credentials::Credentials;
use crate::digest::{Algorithm, Digest};
use crate::endpoint::Endpoint;
use crate::error::RegistryError;
use crate::manifest::{ManifestKind, detect_media_type, media_type, parse_manifest};
use crate::reference::Reference;
use crate::transport::Request;

/// The registry's digest of what it served.
const DOCKER_CONTENT_DIGEST: &str = "docker-content-digest";

/// A fetched, verified and parsed manifest or index.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// The reference it was fetched for, pinned to `digest`.
    pub reference: Reference,
    /// The exact bytes served (what the digest covers; store these).
    pub bytes: Bytes,
    /// From `Content-Type`, or the body when that is missing or generic.
    pub media_type: String,
    /// Digest of `bytes`, computed here (never taken from a header).
    pub digest: String,
    /// Which endpoint served it: pass it to [`Client::fetch_blob`].
    pub endpoint: Endpoint,
    /// The parsed document.
    pub kind: ManifestKind,
}

/// `<base>/v2/<repository>/<kind>/<key>` (`<base>/...` with `override_path`); mirrors also get `?ns=<registry>`
/// (as containerd sends it) so a mirror serving several registries can tell
/// which one is meant.
fn api_url(ep: &Endpoint, r: &Reference, kind: &str, key: &str) -> Result<Url, RegistryError> {
    let s = format!("{}/{}/{kind}/{key}", ep.api_root(), r.repository);
    let mut url = Url::parse(&s).map_err(|e| RegistryError::Config {
        host: r.registry.clone(),
        reason: format!("cannot form URL {s:?}: {e}"),
    })?;
    if ep.is_mirror() {
        url.query_pairs_mut().append_pair("ns", &r.registry);
    }
    Ok(url)
}

impl Client {
    pub(crate) async fn fetch_manifest_from(
        &self,
        ep: &Endpoint,
        r: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<Manifest, RegistryError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT,
            HeaderValue::from_static(media_type::MANIFEST_ACCEPT),
        );
        let req = Request {
            endpoint: ep,
            registry: &r.registry,
            repository: &r.repository,
            url: api_url(ep, r, "manifests", r.manifest_key())?,
            headers,
            timeout: Some(self.inner.options.request_timeout),
            creds,
        };
        let mut resp = self.get_authed(&req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                reference: r.to_string(),
                tried: ep.url().to_string(),
            });
        }
        if !resp.status().is_success() {
            return Err(self.http_error(&req, resp).await);
        }
        let what = format!("manifest of {r} from {ep}");
        let limit = self.inner.options.max_manifest_size;
        let too_large = || RegistryError::TooLarge {
            what: what.clone(),
            limit,
        };
        if resp.content_length().is_some_and(|l| l > limit) {
            return Err(too_large());
        }
        let header_digest = resp
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let network = |e| RegistryError::Network {
            endpoint: ep.to_string(),
            source: e,
        };
        let mut body = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(network)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let body = body.freeze();

        // By digest: the bytes must hash to it. By tag: if the registry
        // says what it served, hold it to that.
        let expected = match &r.digest {
            Some(d) => Some(Digest::parse(d)?),
            None => header_digest.as_deref().and_then(|h| Digest::parse(h).ok()),
        };
        let algorithm = expected
            .as_ref()
            .map_or(Algorithm::Sha256, Digest::algorithm);
        let actual = Digest::compute(algorithm, &body);
        if let Some(exp) = expected
            && exp != actual
        {
            return Err(RegistryError::DigestMismatch {
                what,
                expected: exp.to_string(),
                actual: actual.to_string(),
            });
        }
        let media_type = detect_media_type(content_type.as_deref(), &body).ok_or_else(|| {
            RegistryError::UnsupportedMediaType {
                reference: r.to_string(),
                media_type: content_type.clone().unwrap_or_default(),
                detail: "cannot tell what kind of document the registry sent".into(),
            }
        })?;
        let kind = parse_manifest(&r.to_string(), &media_type, &body)?;
        let digest = actual.to_string();
        Ok(Manifest {
            reference: r.with_digest(digest.clone()),
            bytes: body,
            media_type,
            digest,
            endpoint: ep.clone(),
            kind,
        })
    }

    pub(crate) async fn fetch_blob_from(
        &self,
        ep: &Endpoint,
        r: &Reference,
        digest: &str,
        creds: Option<&Credentials>,
    ) -> Result<BlobStream, RegistryError> {
        let req = Request {
            endpoint: ep,
            registry: &r.registry,
            repository: &r.repository,
            url: api_url(ep, r, "blobs", digest)?,
            headers: HeaderMap::new(),
            timeout: None,
            creds,
        };
        let resp = self.get_authed(&req).await?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Err(RegistryError::BlobNotFound {
                repository: r.name(),
                digest: digest.to_string(),
                tried: ep.url().to_string(),
            });
        }
        if resp.status() != StatusCode::OK {
            return Err(self.http_error(&req, resp).await);
        }
        Ok(BlobStream::new(resp, ep.clone(), digest))
    }
}
