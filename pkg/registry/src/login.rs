//! `berth login`: checking credentials against a registry as `docker login` does, then keeping
//! them in the auth file (see `auth_file.rs`), and `berth logout`.
//!
//! The check is docker's: `GET /v2/` without credentials; a registry that answers 200 needs none
//! (and accepts any, as with docker). On a 401 its challenge says how to authenticate: Basic (the
//! same GET again with the credentials) or Bearer (a token from the realm for the credentials,
//! with no scope, then the GET with that token). Anything but a 2xx at the end is a refusal,
//! reported with the registry's own message.

use reqwest::header::{HeaderMap, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use crate::auth::{Challenge, basic_header, fetch_token, parse_challenges};
use crate::auth_file::{StoredLogin, normalize_server};
use crate::client::Client;
use crate::credentials::Credentials;
use crate::endpoint::Endpoint;
use crate::error::{RegistryError, excerpt};
use crate::transport::Request;

/// What a successful login stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedIn {
    /// The normalised registry name (`docker.io`).
    pub server: String,
    /// The key written to the file (`https://index.docker.io/v1/`).
    pub key: String,
}

impl Client {
    fn auth_file(&self) -> Result<&crate::auth_file::AuthFile, RegistryError> {
        self.inner
            .auth_file
            .as_ref()
            .ok_or_else(|| RegistryError::Config {
                host: "registry.auth_file".into(),
                reason: "no credentials file is configured".into(),
            })
    }

    /// Checks `username`/`password` against `server`'s registry and, if it accepts them, stores
    /// them in the auth file (replacing an earlier login to it).
    pub async fn login(
        &self,
        server: &str,
        username: &str,
        password: &str,
    ) -> Result<LoggedIn, RegistryError> {
        let server = normalize_server(server)?;
        if username.is_empty() {
            return Err(RegistryError::InvalidCredentials(
                "a username is required".into(),
            ));
        }
        let auth_file = self.auth_file()?;
        let creds = Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        };
        self.verify(&server, &creds).await?;
        let key = auth_file.store(&server, username, password)?;
        tracing::info!(registry = %server, username, file = %auth_file.path().display(), "logged in");
        Ok(LoggedIn { server, key })
    }

    /// Forgets the login to `server`; false if there was none. Returns the normalised name too.
    pub fn logout(&self, server: &str) -> Result<(String, bool), RegistryError> {
        let normalized = normalize_server(server)?;
        let removed = self.auth_file()?.remove(&normalized)?;
        if removed {
            tracing::info!(registry = %normalized, "logged out");
        }
        Ok((normalized, removed))
    }

    /// The logins in the auth file, and its path (no file configured: none).
    pub fn logins(&self) -> Result<(Vec<StoredLogin>, Option<std::path::PathBuf>), RegistryError> {
        match &self.inner.auth_file {
            Some(file) => Ok((file.logins()?, Some(file.path().to_path_buf()))),
            None => Ok((Vec::new(), None)),
        }
    }

    /// The credentials `berth login` stored for `registry`. A file that can't be read is logged
    /// and treated as holding none: a pull that needs no credentials must not fail over it.
    pub(crate) fn stored_credentials(&self, registry: &str) -> Option<Credentials> {
        let file = self.inner.auth_file.as_ref()?;
        match file.lookup(registry) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "registry auth file unusable; pulling without its credentials");
                None
            }
        }
    }

    /// docker login's check against the registry's origin (its mirrors are not asked: they are
    /// not the registry, and a mirror may serve anyone).
    async fn verify(&self, server: &str, creds: &Credentials) -> Result<(), RegistryError> {
        let endpoints = self.endpoints(server)?;
        let origins: Vec<&Endpoint> = endpoints.iter().filter(|e| !e.is_mirror()).collect();
        // With skip_origin only the mirrors are ever used, so they are what the login is for.
        let candidates: Vec<&Endpoint> = if origins.is_empty() {
            endpoints.iter().take(1).collect()
        } else {
            origins
        };
        let mut last = None;
        for ep in candidates {
            match self.verify_at(ep, server, creds).await {
                // An insecure host is tried over https, then http: only a failure to connect
                // moves on.
                Err(e @ RegistryError::Network { .. }) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Config {
            host: server.to_string(),
            reason: "no endpoint to log in to".into(),
        }))
    }

    async fn verify_at(
        &self,
        ep: &Endpoint,
        server: &str,
        creds: &Credentials,
    ) -> Result<(), RegistryError> {
        let root = format!("{}/", ep.api_root());
        let url = Url::parse(&root).map_err(|e| RegistryError::Config {
            host: server.to_string(),
            reason: format!("cannot form URL {root:?}: {e}"),
        })?;
        let req = Request {
            endpoint: ep,
            registry: server,
            repository: "",
            url,
            headers: HeaderMap::new(),
            timeout: Some(self.inner.options.request_timeout),
            creds: Some(creds),
        };
        let resp = self.get_following(&req, None).await?;
        if resp.status().is_success() {
            tracing::info!(registry = %server, "the registry asks for no credentials; login accepted unchecked");
            return Ok(());
        }
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Err(self.http_error(&req, resp).await);
        }
        let challenges: Vec<Challenge> = resp
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(parse_challenges)
            .collect();
        let Credentials::Basic { username, password } = creds else {
            return Err(RegistryError::InvalidCredentials(
                "login takes a username and password".into(),
            ));
        };
        let bearer = challenges.iter().find_map(|c| match c {
            Challenge::Bearer { realm, service, .. } => Some((realm, service)),
            Challenge::Basic => None,
        });
        let header = match bearer {
            Some((realm, service)) => {
                // No scope: docker login asks the token server only whether it knows the user.
                let (token, _) = fetch_token(
                    self.http_for(ep),
                    self.inner.options.request_timeout,
                    server,
                    realm,
                    service.as_deref(),
                    "",
                    Some(creds),
                )
                .await?;
                format!("Bearer {token}")
            }
            None if challenges.contains(&Challenge::Basic) => basic_header(username, password),
            None => {
                return Err(RegistryError::Unauthorized {
                    registry: server.to_string(),
                    detail: format!(
                        "{ep} answered HTTP 401 without a usable WWW-Authenticate challenge"
                    ),
                });
            }
        };
        drop(resp);
        let resp = self.get_following(&req, Some(&header)).await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let body = resp.bytes().await.map(|b| excerpt(&b)).unwrap_or_default();
            return Err(RegistryError::Unauthorized {
                registry: server.to_string(),
                detail: format!("login refused (HTTP {} from {ep}): {body}", status.as_u16()),
            });
        }
        Err(self.http_error(&req, resp).await)
    }
}
