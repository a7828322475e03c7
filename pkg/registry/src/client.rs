//! The registry client: configuration, endpoint order and fallback.

use std::collections::HashMap;
use std::sync::Arc;

use berth_config::hosts_dir::DEFAULT_NAMESPACE;

use crate::auth::AuthCache;
use crate::auth_file::AuthFile;
use crate::blob::BlobStream;
use crate::config::{CATCH_ALL, RegistryConfig};
use crate::credentials::Credentials;
use crate::digest::Digest;
use crate::endpoint::{Endpoint, HostPlan, TlsKey};
use crate::error::RegistryError;
use crate::fetch::Manifest;
use crate::reference::Reference;
use crate::tls::{ClientOptions, build_http_client};

/// A client for OCI distribution-spec registries. Cheap to clone (shared
/// connection pools and token cache); `Send + Sync`.
#[derive(Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub options: ClientOptions,
    /// Plans of configured hosts, by key (including `*`).
    plans: HashMap<String, HostPlan>,
    /// Plans from `registry.config_path`, by host (including `_default`).
    dir_plans: HashMap<String, HostPlan>,
    /// For hosts with neither their own entry nor a catch-all.
    default_plan: HostPlan,
    /// One HTTP client per TLS setting, all built up front.
    http: HashMap<TlsKey, reqwest::Client>,
    /// The one for `TlsKey::default()` (system roots, verified).
    default_http: reqwest::Client,
    pub auth: AuthCache,
    /// `registry.auth_file`: `berth login`'s credentials (read per pull, stat-cached).
    pub auth_file: Option<AuthFile>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("hosts", &self.inner.plans.keys().collect::<Vec<_>>())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds a client with default options. Mirror URLs, credentials and
    /// CA files are all checked now, so configuration errors surface when
    /// berthd starts, not at the first pull.
    pub fn new(config: RegistryConfig) -> Result<Client, RegistryError> {
        Client::with_options(config, ClientOptions::default())
    }

    /// Like [`new`](Self::new), with explicit timeouts and limits.
    pub fn with_options(
        config: RegistryConfig,
        options: ClientOptions,
    ) -> Result<Client, RegistryError> {
        let mut plans = HashMap::new();
        for (key, host) in &config.hosts {
            plans.insert(key.clone(), HostPlan::new(key, host, &config)?);
        }
        let dir_plans = match &config.config_path {
            Some(dir) => crate::hosts_dir::plans(dir)?,
            None => HashMap::new(),
        };
        let default_plan = HostPlan::default();
        let default_http = build_http_client(&TlsKey::default(), &options)?;
        let mut http = HashMap::new();
        http.insert(TlsKey::default(), default_http.clone());
        let keys = plans
            .values()
            .chain(dir_plans.values())
            .chain(std::iter::once(&default_plan))
            .flat_map(HostPlan::tls_keys);
        for key in keys {
            if !http.contains_key(key) {
                http.insert(key.clone(), build_http_client(key, &options)?);
            }
        }
        Ok(Client {
            inner: Arc::new(Inner {
                options,
                plans,
                dir_plans,
                default_plan,
                http,
                default_http,
                auth: AuthCache::default(),
                auth_file: config.auth_file.clone().map(AuthFile::new),
            }),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The HTTP client for an endpoint's TLS setting. Endpoints only come
    /// from this client's plans, whose keys were all built in `new`; an
    /// unknown one (an `Endpoint` from another client) gets the default.
    pub(crate) fn http_for(&self, ep: &Endpoint) -> &reqwest::Client {
        self.inner
            .http
            .get(&ep.tls)
            .unwrap_or(&self.inner.default_http)
    }

    /// Where `registry`'s endpoints come from: its own table when that says how to connect,
    /// else its `config_path` directory, else its own table (credentials only), else the
    /// catch-all `*` when that says how to connect, else `_default` from the directory, else `*`.
    fn plan(&self, registry: &str) -> &HostPlan {
        let own = self.inner.plans.get(registry);
        let all = self.inner.plans.get(CATCH_ALL);
        fn connects(p: Option<&HostPlan>) -> Option<&HostPlan> {
            p.filter(|p| p.configures_endpoints)
        }
        connects(own)
            .or_else(|| self.inner.dir_plans.get(registry))
            .or(own)
            .or_else(|| connects(all))
            .or_else(|| self.inner.dir_plans.get(DEFAULT_NAMESPACE))
            .or(all)
            .unwrap_or(&self.inner.default_plan)
    }

    /// Where content of `registry` is fetched from, in order: its mirrors,
    /// then the origin (unless `skip_origin`).
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>, RegistryError> {
        self.plan(registry).endpoints(registry)
    }

    /// The credentials used for `registry`: the request's, else `berth login`'s (the auth
    /// file), else the configured ones (`[registry.hosts]`). A login is an explicit act for that
    /// exact registry, newer than the configuration, and `berth logout` falls back to the
    /// configured ones. They are also sent to the host's mirrors, which the operator configured
    /// and so trusts.
    fn credentials(&self, registry: &str, creds: Option<&Credentials>) -> Option<Credentials> {
        if let Some(c) = creds {
            return Some(c.clone());
        }
        self.stored_credentials(registry).or_else(|| {
            self.inner
                .plans
                .get(registry)
                .or_else(|| self.inner.plans.get(CATCH_ALL))
                .and_then(|p| p.credentials.clone())
        })
    }

    /// Fetches a manifest or index by digest (if the reference has one) or
    /// tag, trying each endpoint in turn.
    ///
    /// The request accepts OCI manifests and indexes and Docker schema 2
    /// manifests and lists. An endpoint that answers 404, fails, answers an
    /// error status, is denied or serves bad content makes us try the next
    /// one; when all fail, the most telling error is returned (e.g.
    /// [`Unauthorized`](RegistryError::Unauthorized) naming the registry
    /// over a mirror's 404), and [`NotFound`](RegistryError::NotFound) only
    /// when every endpoint said so. The content is verified: at most
    /// `max_manifest_size` bytes, and its digest equal to the one it was
    /// requested by (or, by tag, to the registry's `Docker-Content-Digest`).
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<Manifest, RegistryError> {
        let creds = self.credentials(&reference.registry, creds);
        let creds = creds.as_ref();
        let mut endpoints = self.endpoints(&reference.registry)?;
        if reference.digest.is_none() {
            // A tag is resolved only by endpoints trusted to (containerd's `resolve`).
            endpoints.retain(|e| e.resolve);
            if endpoints.is_empty() {
                return Err(RegistryError::Config {
                    host: reference.registry.clone(),
                    reason: format!(
                        "no endpoint may resolve the tag of {reference}: every mirror is pull-only \
                         (resolve = false) and the origin is not used; pull by digest"
                    ),
                });
            }
        }
        let mut errors = Vec::new();
        for ep in &endpoints {
            match self.fetch_manifest_from(ep, reference, creds).await {
                Ok(m) => return Ok(m),
                Err(e) => {
                    tracing::debug!(endpoint = %ep, reference = %reference, error = %e, "manifest fetch failed");
                    errors.push(e);
                }
            }
        }
        Err(combine(
            errors,
            |tried| RegistryError::NotFound {
                reference: reference.to_string(),
                tried,
            },
            &endpoints,
        ))
    }

    /// Opens a stream of the blob `digest` of `reference`'s repository.
    ///
    /// Tries `preferred` first (pass the endpoint that served the manifest:
    /// it has the blobs and a warm connection), then the usual order.
    /// Redirects (to object storage, typically) are followed; the registry's
    /// `Authorization` is not sent to another host. The body is not
    /// buffered: the caller reads it chunk by chunk and should check it with
    /// a [`DigestVerifier`](crate::DigestVerifier).
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &str,
        preferred: Option<&Endpoint>,
        creds: Option<&Credentials>,
    ) -> Result<BlobStream, RegistryError> {
        Digest::parse(digest)?;
        let creds = self.credentials(&reference.registry, creds);
        let creds = creds.as_ref();
        let mut endpoints = self.endpoints(&reference.registry)?;
        if let Some(p) = preferred {
            endpoints.retain(|e| e.url() != p.url());
            endpoints.insert(0, p.clone());
        }
        let mut errors = Vec::new();
        for ep in &endpoints {
            match self.fetch_blob_from(ep, reference, digest, creds).await {
                Ok(b) => return Ok(b),
                Err(e) => {
                    tracing::debug!(endpoint = %ep, digest, error = %e, "blob fetch failed");
                    errors.push(e);
                }
            }
        }
        Err(combine(
            errors,
            |tried| RegistryError::BlobNotFound {
                repository: reference.name(),
                digest: digest.to_string(),
                tried,
            },
            &endpoints,
        ))
    }
}

/// The error to report once every endpoint failed: "not found" if that is
/// all they said, else the highest-ranked failure (the first among equals,
/// i.e. the one from the most preferred endpoint).
fn combine(
    errors: Vec<RegistryError>,
    not_found: impl FnOnce(String) -> RegistryError,
    endpoints: &[Endpoint],
) -> RegistryError {
    let tried = endpoints
        .iter()
        .map(|e| e.url())
        .collect::<Vec<_>>()
        .join(", ");
    if errors.iter().all(RegistryError::is_not_found) {
        return not_found(tried);
    }
    let mut best: Option<RegistryError> = None;
    for e in errors {
        if best.as_ref().is_none_or(|b| e.rank() > b.rank()) {
            best = Some(e);
        }
    }
    best.unwrap_or_else(|| not_found(tried))
}
