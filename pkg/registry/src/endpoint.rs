//! Where to fetch a registry's content from: mirrors first, then the
//! origin, each with the TLS settings that apply to it.
//!
//! The plan for every configured host is computed once, when the client is
//! built, so that a malformed mirror URL is reported at startup rather than
//! at the first pull.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use reqwest::Url;

use crate::config::{Mirror, RegistryConfig, RegistryHost};
use crate::credentials::Credentials;
use crate::error::RegistryError;
use crate::reference::DOCKER_HUB;

/// Docker Hub's API endpoint (`docker.io` is only its name).
pub const DOCKER_HUB_ENDPOINT: &str = "https://registry-1.docker.io";

/// A TLS client certificate: the certificate (chain) file and the key file (`None`: the key is
/// in the certificate's file).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientCert {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
}

impl ClientCert {
    pub fn new(cert: Option<&PathBuf>, key: Option<&PathBuf>) -> Option<ClientCert> {
        cert.map(|cert| ClientCert {
            cert: cert.clone(),
            key: key.cloned(),
        })
    }
}

/// The TLS settings of one endpoint; one HTTP client is built per distinct
/// value, so connection pools are shared by endpoints that trust the same.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TlsKey {
    /// Don't verify certificates.
    pub insecure: bool,
    /// Extra CA bundles to trust, sorted and deduplicated.
    pub ca_files: Vec<PathBuf>,
    /// The certificate presented when the server asks for one.
    pub client: Option<ClientCert>,
}

impl TlsKey {
    fn from_host(h: &RegistryHost) -> TlsKey {
        TlsKey {
            insecure: h.insecure,
            ca_files: h.ca_file.iter().cloned().collect(),
            client: ClientCert::new(h.client_cert.as_ref(), h.client_key.as_ref()),
        }
    }

    fn from_mirror(m: &Mirror) -> TlsKey {
        TlsKey {
            insecure: m.insecure,
            ca_files: m.ca_file.iter().cloned().collect(),
            client: ClientCert::new(m.client_cert.as_ref(), m.client_key.as_ref()),
        }
    }

    /// Adds `other`'s trust to this one; this one's client certificate, if any, wins.
    pub(crate) fn merge(mut self, other: &TlsKey) -> TlsKey {
        self.insecure |= other.insecure;
        self.ca_files.extend(other.ca_files.iter().cloned());
        self.ca_files.sort();
        self.ca_files.dedup();
        if self.client.is_none() {
            self.client = other.client.clone();
        }
        self
    }
}

/// Extra request headers of an endpoint: (name, value), a name may repeat.
pub(crate) type Headers = Vec<(String, String)>;

/// `base` with `overlay`'s names replacing base's.
fn merge_headers(base: &Headers, overlay: &Headers) -> Headers {
    let mut out: Headers = base
        .iter()
        .filter(|(n, _)| !overlay.iter().any(|(o, _)| o.eq_ignore_ascii_case(n)))
        .cloned()
        .collect();
    out.extend(overlay.iter().cloned());
    out
}

fn headers_of(map: &std::collections::BTreeMap<String, String>) -> Headers {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// One place a registry's content can be fetched from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    base: String,
    authority: String,
    mirror: bool,
    pub(crate) tls: TlsKey,
    pub(crate) headers: Headers,
    /// May resolve tags; otherwise only asked for content by digest.
    pub(crate) resolve: bool,
    /// `base` is the API root itself (no `/v2`).
    pub(crate) override_path: bool,
}

impl Endpoint {
    fn new(url: &Url, mirror: bool, tls: TlsKey) -> Endpoint {
        Endpoint::with(url, mirror, tls, Headers::new(), true, false)
    }

    pub(crate) fn with(
        url: &Url,
        mirror: bool,
        tls: TlsKey,
        headers: Headers,
        resolve: bool,
        override_path: bool,
    ) -> Endpoint {
        let mut base = url.as_str().trim_end_matches('/').to_string();
        // Tolerate mirrors written with the API root ("https://m/v2").
        if !override_path && let Some(stripped) = base.strip_suffix("/v2") {
            base = stripped.to_string();
        }
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        Endpoint {
            base,
            authority,
            mirror,
            tls,
            headers,
            resolve,
            override_path,
        }
    }

    /// Where `/<repository>/manifests/...` goes: `<base>/v2`, or the base itself with
    /// `override_path`.
    pub(crate) fn api_root(&self) -> String {
        if self.override_path {
            self.base.clone()
        } else {
            format!("{}/v2", self.base)
        }
    }

    /// Base URL, e.g. `https://registry-1.docker.io` (requests go to
    /// `<base>/v2/...`).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `host[:port]` of the endpoint; tokens are cached per authority.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// A configured mirror rather than the registry itself.
    pub fn is_mirror(&self) -> bool {
        self.mirror
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)?;
        if self.mirror {
            f.write_str(" (mirror)")?;
        }
        Ok(())
    }
}

/// Everything needed to reach one registry host.
#[derive(Clone, Debug, Default)]
pub(crate) struct HostPlan {
    pub mirrors: Vec<Endpoint>,
    pub origin_tls: TlsKey,
    pub origin_headers: Headers,
    pub insecure: bool,
    pub has_ca: bool,
    pub skip_origin: bool,
    /// Says where or how to connect (not only credentials): see [`RegistryHost::configures_endpoints`].
    pub configures_endpoints: bool,
    pub credentials: Option<Credentials>,
}

impl HostPlan {
    /// Validates a host entry: mirror URLs and credentials.
    pub fn new(
        key: &str,
        h: &RegistryHost,
        cfg: &RegistryConfig,
    ) -> Result<HostPlan, RegistryError> {
        let config_err = |reason: String| RegistryError::Config {
            host: key.to_string(),
            reason,
        };
        let tls = TlsKey::from_host(h);
        let headers = headers_of(&h.headers);
        let mut mirrors = Vec::new();
        for m in &h.mirrors {
            let url =
                parse_mirror(&m.url).map_err(|r| config_err(format!("mirror {:?}: {r}", m.url)))?;
            // A mirror host with its own entry adds its own CA/insecure/client certificate.
            let own = url
                .host_str()
                .map(|host| match url.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host.to_string(),
                })
                .and_then(|a| cfg.hosts.get(&a))
                .map(TlsKey::from_host)
                .unwrap_or_default();
            // The mirror's own settings first (its client certificate wins), then its host
            // entry's, then those of the registry it mirrors.
            let mirror_tls = TlsKey::from_mirror(m).merge(&own).merge(&tls);
            mirrors.push(Endpoint::with(
                &url,
                true,
                mirror_tls,
                merge_headers(&headers, &headers_of(&m.headers)),
                m.resolve,
                m.override_path,
            ));
        }
        if h.skip_origin && mirrors.is_empty() {
            return Err(config_err(
                "skip_origin is set but no mirrors are configured".into(),
            ));
        }
        let credentials =
            Credentials::from_host(h).map_err(|source| RegistryError::HostCredentials {
                host: key.to_string(),
                source: Box::new(source),
            })?;
        Ok(HostPlan {
            mirrors,
            origin_tls: tls,
            origin_headers: headers,
            insecure: h.insecure,
            has_ca: h.ca_file.is_some(),
            skip_origin: h.skip_origin,
            configures_endpoints: h.configures_endpoints(),
            credentials,
        })
    }

    /// Every TLS setting this plan may use.
    pub(crate) fn tls_keys(&self) -> impl Iterator<Item = &TlsKey> {
        std::iter::once(&self.origin_tls).chain(self.mirrors.iter().map(|m| &m.tls))
    }

    /// Mirrors in order, then the origin endpoint(s) unless skipped.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>, RegistryError> {
        let mut eps = self.mirrors.clone();
        if self.skip_origin {
            return Ok(eps);
        }
        let bad = |reason: String| RegistryError::Config {
            host: registry.to_string(),
            reason,
        };
        let origin = |scheme: &str| -> Result<Endpoint, RegistryError> {
            let s = if registry == DOCKER_HUB {
                DOCKER_HUB_ENDPOINT.replace("https", scheme)
            } else {
                format!("{scheme}://{registry}")
            };
            let url = Url::parse(&s).map_err(|e| bad(format!("cannot form URL {s:?}: {e}")))?;
            let mut ep = Endpoint::new(&url, false, self.origin_tls.clone());
            ep.headers = self.origin_headers.clone();
            Ok(ep)
        };
        if is_loopback(registry) && !self.has_ca {
            // As Docker does: a registry on this machine is reached over
            // plain HTTP without configuration (nothing crosses a network).
            eps.push(origin("http")?);
        } else if self.insecure {
            // https with unverified certificates first, then plain http.
            eps.push(origin("https")?);
            eps.push(origin("http")?);
        } else {
            eps.push(origin("https")?);
        }
        Ok(eps)
    }
}

/// A mirror URL: http(s), a host, no query or fragment; no scheme = https.
pub(crate) fn parse_mirror(m: &str) -> Result<Url, String> {
    let with_scheme = if m.contains("://") {
        m.to_string()
    } else {
        format!("https://{m}")
    };
    let url = Url::parse(&with_scheme).map_err(|e| e.to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "scheme must be http or https, not {:?}",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("no host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in username/password, not in the URL".into());
    }
    Ok(url)
}

/// `localhost`, `127.0.0.0/8` or `::1`, with or without a port.
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else if registry.parse::<Ipv6Addr>().is_ok() {
        registry
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(h: RegistryHost) -> HostPlan {
        HostPlan::new("x", &h, &RegistryConfig::default()).unwrap()
    }

    fn urls(eps: &[Endpoint]) -> Vec<&str> {
        eps.iter().map(Endpoint::url).collect()
    }

    #[test]
    fn loopback_detection() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "10.0.0.1:5000",
            "[::2]:5000",
            "localhost.example.com",
            "128.0.0.1",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }

    #[test]
    fn origin_endpoints() {
        let p = plan(RegistryHost::default());
        assert_eq!(
            urls(&p.endpoints("docker.io").unwrap()),
            ["https://registry-1.docker.io"]
        );
        assert_eq!(urls(&p.endpoints("quay.io").unwrap()), ["https://quay.io"]);
        assert_eq!(
            urls(&p.endpoints("127.0.0.1:5000").unwrap()),
            ["http://127.0.0.1:5000"]
        );
        assert_eq!(
            urls(&p.endpoints("[::1]:5000").unwrap()),
            ["http://[::1]:5000"]
        );
        let ins = plan(RegistryHost {
            insecure: true,
            ..Default::default()
        });
        assert_eq!(
            urls(&ins.endpoints("reg.lan:5000").unwrap()),
            ["https://reg.lan:5000", "http://reg.lan:5000"]
        );
        assert!(ins.endpoints("reg.lan:5000").unwrap()[0].tls.insecure);
    }

    #[test]
    fn mirrors_then_origin_or_not() {
        let h = RegistryHost {
            mirrors: vec![
                "http://127.0.0.1:5000".into(),
                "mirror.example.com/v2/".into(),
            ],
            ..Default::default()
        };
        let p = plan(h.clone());
        let eps = p.endpoints("docker.io").unwrap();
        assert_eq!(
            urls(&eps),
            [
                "http://127.0.0.1:5000",
                "https://mirror.example.com",
                "https://registry-1.docker.io"
            ]
        );
        assert!(eps[0].is_mirror() && !eps[2].is_mirror());
        assert_eq!(eps[1].authority(), "mirror.example.com");
        assert_eq!(eps[0].authority(), "127.0.0.1:5000");
        let p = plan(RegistryHost {
            skip_origin: true,
            ..h
        });
        assert_eq!(p.endpoints("docker.io").unwrap().len(), 2);
    }

    #[test]
    fn mirror_tls_merges_own_entry() {
        let mut cfg = RegistryConfig::default();
        cfg.hosts.insert(
            "m.example.com".into(),
            RegistryHost {
                ca_file: Some("/m.pem".into()),
                ..Default::default()
            },
        );
        let h = RegistryHost {
            mirrors: vec!["https://m.example.com".into()],
            ca_file: Some("/a.pem".into()),
            ..Default::default()
        };
        let p = HostPlan::new("docker.io", &h, &cfg).unwrap();
        assert_eq!(
            p.mirrors[0].tls.ca_files,
            [PathBuf::from("/a.pem"), PathBuf::from("/m.pem")]
        );
        assert_eq!(p.origin_tls.ca_files, [PathBuf::from("/a.pem")]);
    }

    #[test]
    fn rejects_bad_config() {
        for (m, want) in [
            ("ftp://x", "scheme"),
            ("https://x?y=1", "query"),
            ("https://u:p@x", "credentials"),
            ("http://", "empty host"),
        ] {
            let h = RegistryHost {
                mirrors: vec![m.into()],
                ..Default::default()
            };
            let e = HostPlan::new("docker.io", &h, &RegistryConfig::default()).unwrap_err();
            assert!(e.to_string().contains(want), "{m}: {e}");
            assert!(e.to_string().contains("docker.io"), "{e}");
        }
        let h = RegistryHost {
            skip_origin: true,
            ..Default::default()
        };
        assert!(HostPlan::new("x", &h, &RegistryConfig::default()).is_err());
        let h = RegistryHost {
            auth: Some("!!".into()),
            ..Default::default()
        };
        assert!(HostPlan::new("x", &h, &RegistryConfig::default()).is_err());
    }
}
