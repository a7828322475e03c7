//! The `[registry]` section: hosts, their mirrors, TLS and credentials, and containerd's host
//! directory (`config_path`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) const REDACTED: &str = "<redacted>";

/// Registries, keyed by host (`docker.io`, `registry.k8s.io`, `localhost:5000`), with `*` as the
/// catch-all for hosts without an entry of their own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// A containerd-style host directory (`/etc/containerd/certs.d`): `<dir>/<host>/hosts.toml`
    /// and `<dir>/_default/hosts.toml`, read at start and on every reload. A host with a table of
    /// its own under `hosts` that sets mirrors, TLS or headers ignores its directory.
    pub config_path: Option<PathBuf>,
    /// Where `berth login` keeps credentials, in docker's config.json format (`auths`), read at
    /// each pull that brings none. Unset in a file: `<root>/auth.json` (filled in by `load`).
    pub auth_file: Option<PathBuf>,
    pub hosts: BTreeMap<String, RegistryHost>,
}

/// The file name of `auth_file` under the root when none is configured.
pub const DEFAULT_AUTH_FILE: &str = "auth.json";

/// Gives `registry.auth_file` its default, which depends on `root` (so it is set once the files
/// and flags have decided the root).
pub(crate) fn resolve_auth_file(config: &mut crate::Config) {
    if config.registry.auth_file.is_none() {
        config.registry.auth_file = Some(config.root.join(DEFAULT_AUTH_FILE));
    }
}

impl RegistryConfig {
    /// Key of the catch-all entry in [`RegistryConfig::hosts`].
    pub const CATCH_ALL: &str = "*";

    /// The settings for `host`: its own entry, else the catch-all, else none.
    pub fn host(&self, host: &str) -> Option<&RegistryHost> {
        self.hosts
            .get(host)
            .or_else(|| self.hosts.get(Self::CATCH_ALL))
    }
}

/// How to reach one registry. Field names are the config file format.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryHost {
    /// Endpoints tried in order before the origin: a URL (`http://127.0.0.1:5000`) or a table
    /// with its own TLS, client certificate and headers. A mirror serves any registry's
    /// repositories under the same path; the image keeps the name that was asked for.
    pub mirrors: Vec<Mirror>,
    /// Allow plain HTTP and do not verify TLS certificates (origin and mirrors).
    pub insecure: bool,
    /// Extra CA certificate (PEM) trusted for this host and its mirrors.
    pub ca_file: Option<PathBuf>,
    /// TLS client certificate (PEM) presented to this host and to mirrors without their own; the
    /// key is in `client_key`, or in the same file when that is unset.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Extra HTTP headers sent with every request to this host and its mirrors.
    pub headers: BTreeMap<String, String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 `user:password`, as in docker's config.json.
    pub auth: Option<String>,
    pub identity_token: Option<String>,
    /// Never fall back to the origin when every mirror fails (air-gapped nodes).
    pub skip_origin: bool,
}

impl RegistryHost {
    /// Fields never printed or reported.
    pub(crate) const SECRETS: [&str; 3] = ["password", "auth", "identity_token"];

    /// Whether this entry says anything about where and how to connect (as opposed to only
    /// credentials): such an entry takes precedence over the host's `config_path` directory.
    pub fn configures_endpoints(&self) -> bool {
        !self.mirrors.is_empty()
            || self.insecure
            || self.ca_file.is_some()
            || self.client_cert.is_some()
            || !self.headers.is_empty()
            || self.skip_origin
    }
}

/// Secrets are redacted so that configs can be logged.
impl std::fmt::Debug for RegistryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| REDACTED);
        f.debug_struct("RegistryHost")
            .field("mirrors", &self.mirrors)
            .field("insecure", &self.insecure)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("headers", &redact_headers(&self.headers))
            .field("username", &self.username)
            .field("password", &redact(&self.password))
            .field("auth", &redact(&self.auth))
            .field("identity_token", &redact(&self.identity_token))
            .field("skip_origin", &self.skip_origin)
            .finish()
    }
}

/// One mirror. In a file it is either a URL string or a table with `url` and its own options.
#[derive(Clone, PartialEq, Eq)]
pub struct Mirror {
    pub url: String,
    /// Plain HTTP allowed and certificates not verified for this mirror (the host's `insecure`
    /// applies to its mirrors too).
    pub insecure: bool,
    /// Extra CA (PEM) for this mirror, on top of the host's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for this mirror (instead of the host's); key as for the host.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// Headers for this mirror, on top of (and overriding) the host's.
    pub headers: BTreeMap<String, String>,
    /// false: only fetch content by digest from this mirror, never resolve a tag with it
    /// (containerd's `capabilities = ["pull"]`, for mirrors not trusted with tags).
    pub resolve: bool,
    /// `url` is the API root itself (no `/v2` appended), for registries serving it elsewhere.
    pub override_path: bool,
}

impl Default for Mirror {
    fn default() -> Self {
        Mirror {
            url: String::new(),
            insecure: false,
            ca_file: None,
            client_cert: None,
            client_key: None,
            headers: BTreeMap::new(),
            resolve: true,
            override_path: false,
        }
    }
}

impl Mirror {
    /// A mirror with nothing but its URL.
    pub fn url(url: impl Into<String>) -> Mirror {
        Mirror {
            url: url.into(),
            ..Mirror::default()
        }
    }
}

impl From<&str> for Mirror {
    fn from(url: &str) -> Mirror {
        Mirror::url(url)
    }
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("url", &self.url)
            .field("insecure", &self.insecure)
            .field("ca_file", &self.ca_file)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("headers", &redact_headers(&self.headers))
            .field("resolve", &self.resolve)
            .field("override_path", &self.override_path)
            .finish()
    }
}

/// [`Mirror`]'s table form; a separate type so that [`Mirror`] can be written as a string.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MirrorTable {
    url: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    insecure: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_cert: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_key: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    headers: BTreeMap<String, String>,
    #[serde(default = "yes", skip_serializing_if = "Clone::clone")]
    resolve: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    override_path: bool,
}

fn yes() -> bool {
    true
}

/// A mirror is a string or a table. A visitor (rather than an untagged enum) keeps serde's precise
/// message, with its key, for a mistake inside a table.
struct MirrorVisitor;

impl<'de> serde::de::Visitor<'de> for MirrorVisitor {
    type Value = Mirror;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a mirror URL or a table with `url`")
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Mirror, E> {
        Ok(Mirror::url(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Mirror, A::Error> {
        let t = MirrorTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(from_table(t))
    }
}

fn from_table(t: MirrorTable) -> Mirror {
    Mirror {
        url: t.url,
        insecure: t.insecure,
        ca_file: t.ca_file,
        client_cert: t.client_cert,
        client_key: t.client_key,
        headers: t.headers,
        resolve: t.resolve,
        override_path: t.override_path,
    }
}

impl<'de> Deserialize<'de> for Mirror {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MirrorVisitor)
    }
}

impl Serialize for Mirror {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let plain = Mirror::url(self.url.clone());
        if *self == plain {
            return s.serialize_str(&self.url);
        }
        MirrorTable {
            url: self.url.clone(),
            insecure: self.insecure,
            ca_file: self.ca_file.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            headers: self.headers.clone(),
            resolve: self.resolve,
            override_path: self.override_path,
        }
        .serialize(s)
    }
}

fn redact_headers(h: &BTreeMap<String, String>) -> BTreeMap<&str, &str> {
    // Header values are often tokens (e.g. a proxy's Authorization); only names are shown.
    h.keys().map(|k| (k.as_str(), REDACTED)).collect()
}

/// Redacts secrets and header values in the JSON form of a [`RegistryConfig`].
pub(crate) fn redact_json(registry: &mut serde_json::Value) {
    let Some(hosts) = registry.get_mut("hosts").and_then(|h| h.as_object_mut()) else {
        return;
    };
    let redact_headers = |obj: &mut serde_json::Map<String, serde_json::Value>| {
        if let Some(headers) = obj.get_mut("headers").and_then(|h| h.as_object_mut()) {
            for v in headers.values_mut() {
                *v = serde_json::Value::String(REDACTED.into());
            }
        }
    };
    for host in hosts.values_mut().filter_map(|h| h.as_object_mut()) {
        for key in RegistryHost::SECRETS {
            if let Some(v) = host.get_mut(key).filter(|v| !v.is_null()) {
                *v = serde_json::Value::String(REDACTED.into());
            }
        }
        redact_headers(host);
        if let Some(mirrors) = host.get_mut("mirrors").and_then(|m| m.as_array_mut()) {
            for m in mirrors.iter_mut().filter_map(|m| m.as_object_mut()) {
                redact_headers(m);
            }
        }
    }
}

/// Checks the registry section; returns (key, message) of the first problem.
pub(crate) fn validate(config: &RegistryConfig) -> Result<(), (String, String)> {
    if let Some(dir) = &config.config_path
        && !dir.is_absolute()
    {
        return Err((
            "registry.config_path".into(),
            format!("{} must be an absolute path", dir.display()),
        ));
    }
    if let Some(file) = &config.auth_file
        && !file.is_absolute()
    {
        return Err((
            "registry.auth_file".into(),
            format!("{} must be an absolute path", file.display()),
        ));
    }
    for (host, entry) in &config.hosts {
        let key = |k: &str| format!("registry.hosts.{host}.{k}");
        for mirror in &entry.mirrors {
            if !(mirror.url.starts_with("http://") || mirror.url.starts_with("https://")) {
                return Err((
                    key("mirrors"),
                    format!("{:?} must start with http:// or https://", mirror.url),
                ));
            }
            if mirror.client_key.is_some() && mirror.client_cert.is_none() {
                return Err((
                    key("mirrors"),
                    format!("mirror {:?}: client_key needs client_cert", mirror.url),
                ));
            }
            check_headers(&mirror.headers).map_err(|m| (key("mirrors"), m))?;
        }
        if entry.password.is_some() && entry.username.is_none() {
            return Err((key("password"), "a password needs a username".into()));
        }
        if entry.client_key.is_some() && entry.client_cert.is_none() {
            return Err((key("client_key"), "client_key needs client_cert".into()));
        }
        check_headers(&entry.headers).map_err(|m| (key("headers"), m))?;
    }
    Ok(())
}

/// Header names are HTTP tokens; values must not break the request (no CR, LF or NUL).
pub fn check_headers(headers: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in headers {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || !name.bytes().all(token) {
            return Err(format!("{name:?} is not a valid HTTP header name"));
        }
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(format!(
                "header {name:?}: the value must not contain CR, LF or NUL"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
