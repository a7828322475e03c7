//! Registry authentication: `WWW-Authenticate` challenges, the token
//! endpoint of the Docker token protocol (also used by every major
//! registry), and a cache of what worked.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::credentials::Credentials;
use crate::error::{RegistryError, excerpt};

/// Lifetime of a token whose response has no `expires_in` (the spec's
/// default).
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Tokens are dropped this long before they expire, so a request never
/// goes out with a token about to lapse on the way.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// `client_id` sent with OAuth2 refresh-token requests.
const CLIENT_ID: &str = "berth";

/// One parsed challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

/// Parses one `WWW-Authenticate` header value (which may hold several
/// challenges, with quoted parameter values that contain commas).
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out = Vec::new();
    let mut rest = header.trim();
    while !rest.is_empty() {
        let (scheme, after) = match rest.find(|c: char| c.is_ascii_whitespace() || c == ',') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut params: HashMap<String, String> = HashMap::new();
        let mut p = after.trim_start_matches([' ', '\t', ',']);
        // key=value or key="quoted, value" pairs until the next scheme.
        while let Some(eq) = p.find('=') {
            let key = p[..eq].trim();
            if key.is_empty() || key.contains(|c: char| c.is_ascii_whitespace() || c == ',') {
                break;
            }
            let v = &p[eq + 1..];
            let (value, remaining) = if let Some(q) = v.strip_prefix('"') {
                let mut val = String::new();
                let mut chars = q.char_indices();
                let mut end = q.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                val.push(n);
                            }
                        }
                        '"' => {
                            end = i + 1;
                            break;
                        }
                        c => val.push(c),
                    }
                }
                (val, &q[end.min(q.len())..])
            } else {
                let end = v.find(',').unwrap_or(v.len());
                (v[..end].trim().to_string(), &v[end..])
            };
            params.insert(key.to_ascii_lowercase(), value);
            p = remaining.trim_start_matches([' ', '\t', ',']);
        }
        rest = p;
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some(realm) = params.remove("realm") {
                out.push(Challenge::Bearer {
                    realm,
                    service: params.remove("service"),
                    scope: params.remove("scope"),
                });
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            out.push(Challenge::Basic);
        }
    }
    out
}

/// What `Authorization` header to send to an endpoint for a repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct AuthKey {
    pub authority: String,
    pub repository: String,
    /// [`Credentials::fingerprint`]: tokens never cross credentials.
    pub credentials: String,
}

/// Cached `Authorization` values: bearer tokens until they expire, Basic
/// for as long as the process lives (the server asked for it once).
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<AuthKey, (String, Option<Instant>)>>,
}

impl AuthCache {
    pub fn get(&self, key: &AuthKey) -> Option<String> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((v, exp)) if exp.is_none_or(|e| Instant::now() < e) => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: AuthKey, value: String, lifetime: Option<Duration>) {
        let expires = lifetime.map(|l| Instant::now() + l.saturating_sub(EXPIRY_MARGIN));
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        // Keep the map bounded: expired entries go whenever we add one.
        let now = Instant::now();
        map.retain(|_, (_, exp)| exp.is_none_or(|e| now < e));
        map.insert(key, (value, expires));
    }

    pub fn remove(&self, key: &AuthKey) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// `Basic <base64(user:pass)>`.
pub(crate) fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{username}:{password}"))
    )
}

#[derive(Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Asks a token endpoint for a bearer token for `scope`. Returns the token
/// and how long it is valid.
pub(crate) async fn fetch_token(
    http: &reqwest::Client,
    timeout: Duration,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: Option<&Credentials>,
) -> Result<(String, Duration), RegistryError> {
    let unauthorized = |detail: String| RegistryError::Unauthorized {
        registry: registry.to_string(),
        detail,
    };
    let url = reqwest::Url::parse(realm)
        .map_err(|e| unauthorized(format!("token realm {realm:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(unauthorized(format!(
            "token realm {realm:?} is not http(s)"
        )));
    }
    let service = service.unwrap_or_default();
    let req = match creds {
        Some(Credentials::IdentityToken(t)) => http.post(url).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", t.as_str()),
            ("service", service),
            ("scope", scope),
            ("client_id", CLIENT_ID),
        ]),
        other => {
            let mut q: Vec<(&str, &str)> = Vec::new();
            if !service.is_empty() {
                q.push(("service", service));
            }
            // No scope at all for a login check (docker login's token request).
            if !scope.is_empty() {
                q.push(("scope", scope));
            }
            let mut r = http.get(url).query(&q);
            if let Some(Credentials::Basic { username, password }) = other {
                r = r.header(
                    reqwest::header::AUTHORIZATION,
                    basic_header(username, password),
                );
            }
            r
        }
    };
    let network = |e: reqwest::Error| RegistryError::Network {
        endpoint: format!("token endpoint {realm}"),
        source: e,
    };
    let resp = req.timeout(timeout).send().await.map_err(network)?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(network)?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(unauthorized(format!(
            "token endpoint {realm} rejected the credentials (HTTP {}): {}",
            status.as_u16(),
            excerpt(&body)
        )));
    }
    if !status.is_success() {
        return Err(RegistryError::Http {
            endpoint: format!("token endpoint {realm}"),
            url: realm.to_string(),
            status: status.as_u16(),
            body: excerpt(&body),
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
        unauthorized(format!(
            "token endpoint {realm} sent an unreadable answer: {e}"
        ))
    })?;
    let token = parsed
        .token
        .filter(|t| !t.is_empty())
        .or(parsed.access_token.filter(|t| !t.is_empty()))
        .ok_or_else(|| unauthorized(format!("token endpoint {realm} sent no token")))?;
    let lifetime = parsed
        .expires_in
        .filter(|&s| s > 0)
        .map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs);
    Ok((token, lifetime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#;
        assert_eq!(
            parse_challenges(h),
            [Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            }]
        );
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            [Challenge::Basic]
        );
        assert_eq!(parse_challenges("basic"), [Challenge::Basic]);
        // Two challenges in one header, unquoted values, escapes.
        let both = r#"Basic realm="a, b", Bearer realm=https://t.example/tok, service="s\"q""#;
        assert_eq!(
            parse_challenges(both),
            [
                Challenge::Basic,
                Challenge::Bearer {
                    realm: "https://t.example/tok".into(),
                    service: Some("s\"q".into()),
                    scope: None,
                }
            ]
        );
        // Bearer without realm is unusable; unknown schemes are skipped.
        assert!(parse_challenges(r#"Bearer service="x""#).is_empty());
        assert!(parse_challenges(r#"Negotiate abc"#).is_empty());
        assert!(parse_challenges("").is_empty());
        // Unterminated quote doesn't panic.
        assert!(parse_challenges(r#"Bearer realm="https://x"#).len() == 1);
    }

    #[test]
    fn cache_expires() {
        let c = AuthCache::default();
        let k = AuthKey {
            authority: "r".into(),
            repository: "x".into(),
            credentials: "anonymous".into(),
        };
        c.insert(
            k.clone(),
            "Bearer a".into(),
            Some(Duration::from_secs(3600)),
        );
        assert_eq!(c.get(&k).as_deref(), Some("Bearer a"));
        // Shorter than the margin: expired at once.
        c.insert(k.clone(), "Bearer b".into(), Some(Duration::from_secs(5)));
        assert_eq!(c.get(&k), None);
        c.insert(k.clone(), "Basic x".into(), None);
        assert_eq!(c.get(&k).as_deref(), Some("Basic x"));
        c.remove(&k);
        assert_eq!(c.get(&k), None);
    }
}
