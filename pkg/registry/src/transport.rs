//! One authenticated GET against one endpoint: redirects followed by hand
//! (so the registry's `Authorization` never reaches another host, e.g. the
//! object store a blob redirects to) and the 401 → authenticate → retry
//! once dance.

use reqwest::header::{AUTHORIZATION, HeaderMap, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};

use crate::auth::{AuthKey, Challenge, basic_header, fetch_token, parse_challenges};
use crate::client::Client;
use crate::credentials::Credentials;
use crate::endpoint::Endpoint;
use crate::error::{RegistryError, excerpt};

/// Registries chain at most a couple of redirects; more is a loop.
const MAX_REDIRECTS: usize = 10;

/// What one request is for.
pub(crate) struct Request<'a> {
    pub endpoint: &'a Endpoint,
    /// Registry name for error messages (`docker.io`).
    pub registry: &'a str,
    pub repository: &'a str,
    pub url: Url,
    pub headers: HeaderMap,
    /// Whole-request timeout (manifests); `None` for streamed blobs.
    pub timeout: Option<std::time::Duration>,
    pub creds: Option<&'a Credentials>,
}

/// Same scheme, host and port: where credentials may follow a redirect.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl Client {
    /// GET `req.url`, following redirects. `auth` is sent only to URLs of
    /// the same origin as the original.
    pub(crate) async fn get_following(
        &self,
        req: &Request<'_>,
        auth: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let http = self.http_for(req.endpoint);
        let mut url = req.url.clone();
        let mut auth = auth;
        for _ in 0..=MAX_REDIRECTS {
            let mut b = http.get(url.clone()).headers(req.headers.clone());
            if same_origin(&req.url, &url) {
                // Configured headers are for the endpoint, not for wherever it redirects (an
                // object store); they often carry a token, as the registry's Authorization does.
                for (name, value) in &req.endpoint.headers {
                    b = b.header(name.as_str(), value.as_str());
                }
            }
            if let Some(a) = auth {
                b = b.header(AUTHORIZATION, a);
            }
            if let Some(t) = req.timeout {
                b = b.timeout(t);
            }
            let resp = b.send().await.map_err(|e| RegistryError::Network {
                endpoint: req.endpoint.to_string(),
                source: e,
            })?;
            if !resp.status().is_redirection() || resp.status() == StatusCode::NOT_MODIFIED {
                return Ok(resp);
            }
            let next = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"));
            let Some(next) = next else {
                return Err(self.http_error(req, resp).await);
            };
            if !same_origin(&req.url, &next) {
                // Once dropped, never restored, even if redirected back.
                auth = None;
            }
            tracing::debug!(from = %url, to = %next, "following redirect");
            url = next;
        }
        Err(RegistryError::Http {
            endpoint: req.endpoint.to_string(),
            url: req.url.to_string(),
            status: 310,
            body: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// GET with authentication: cached/preset auth first; on a 401 from the
    /// registry itself, authenticate as challenged and retry once. A second
    /// 401 (or a 403) is [`RegistryError::Unauthorized`].
    pub(crate) async fn get_authed(&self, req: &Request<'_>) -> Result<Response, RegistryError> {
        let key = AuthKey {
            authority: req.endpoint.authority().to_string(),
            repository: req.repository.to_string(),
            credentials: Credentials::fingerprint(req.creds),
        };
        let preset = match req.creds {
            Some(Credentials::RegistryToken(t)) => Some(format!("Bearer {t}")),
            _ => self.inner.auth.get(&key),
        };
        let resp = self.get_following(req, preset.as_deref()).await?;
        if !self.is_registry_denial(req, &resp) {
            return Ok(resp);
        }
        if matches!(req.creds, Some(Credentials::RegistryToken(_))) {
            return Err(self
                .unauthorized(req, resp, "the registry token was rejected")
                .await);
        }
        if resp.status() == StatusCode::FORBIDDEN {
            self.inner.auth.remove(&key);
            return Err(self.unauthorized(req, resp, "access denied").await);
        }
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let bearer = challenges
            .iter()
            .find(|c| matches!(c, Challenge::Bearer { .. }));
        let header = match (bearer, challenges.contains(&Challenge::Basic), req.creds) {
            (
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope,
                }),
                _,
                creds,
            ) => {
                let default_scope = format!("repository:{}:pull", req.repository);
                let scope = scope.as_deref().unwrap_or(&default_scope);
                let (token, lifetime) = fetch_token(
                    self.http_for(req.endpoint),
                    self.inner.options.request_timeout,
                    req.registry,
                    realm,
                    service.as_deref(),
                    scope,
                    creds,
                )
                .await?;
                let h = format!("Bearer {token}");
                self.inner
                    .auth
                    .insert(key.clone(), h.clone(), Some(lifetime));
                h
            }
            (_, true, Some(Credentials::Basic { username, password })) => {
                let h = basic_header(username, password);
                self.inner.auth.insert(key.clone(), h.clone(), None);
                h
            }
            (_, true, None) => {
                let detail = "the registry requires a username and password and none were given";
                return Err(self.unauthorized(req, resp, detail).await);
            }
            (_, true, Some(_)) => {
                let detail = "the registry asks for Basic auth, which needs a username and password, not a token";
                return Err(self.unauthorized(req, resp, detail).await);
            }
            (_, false, _) => {
                let detail = "HTTP 401 without a usable WWW-Authenticate challenge";
                return Err(self.unauthorized(req, resp, detail).await);
            }
        };
        drop(resp);
        let resp = self.get_following(req, Some(&header)).await?;
        if self.is_registry_denial(req, &resp) {
            self.inner.auth.remove(&key);
            let detail = match req.creds {
                None => {
                    "anonymous access denied (the repository may not exist, or may need credentials)"
                }
                Some(_) => "the credentials were rejected",
            };
            return Err(self.unauthorized(req, resp, detail).await);
        }
        Ok(resp)
    }

    /// A 401/403 from the endpoint itself (not from a redirect target such
    /// as an object store, whose denials are plain HTTP errors).
    fn is_registry_denial(&self, req: &Request<'_>, resp: &Response) -> bool {
        matches!(
            resp.status(),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
        ) && same_origin(&req.url, resp.url())
    }

    async fn unauthorized(&self, req: &Request<'_>, resp: Response, what: &str) -> RegistryError {
        let status = resp.status().as_u16();
        let body = read_excerpt(resp).await;
        RegistryError::Unauthorized {
            registry: req.registry.to_string(),
            detail: format!(
                "{what} (HTTP {status} from {} for {}): {body}",
                req.endpoint, req.repository
            ),
        }
    }

    /// An unexpected status, with the start of the body for the message.
    pub(crate) async fn http_error(&self, req: &Request<'_>, resp: Response) -> RegistryError {
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        let body = read_excerpt(resp).await;
        RegistryError::Http {
            endpoint: req.endpoint.to_string(),
            url,
            status,
            body,
        }
    }
}

/// The first few KiB of an error response's body: enough for the message,
/// without downloading whatever an error page (or a blob) weighs.
async fn read_excerpt(mut resp: Response) -> String {
    const LIMIT: usize = 4096;
    let mut buf = Vec::new();
    while buf.len() < LIMIT {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => return format!("(body unreadable: {e})"),
        }
    }
    excerpt(&buf)
}
