//! HTTP clients, one per distinct TLS setting.
//!
//! reqwest is built with rustls on the `ring` provider (no C/cmake crypto
//! build) and trusts the system's roots; per-host CA bundles are added on
//! top. Redirects are never followed by reqwest: the transport follows them
//! itself so it controls where the Authorization header goes.

use std::path::Path;
use std::time::Duration;

use crate::endpoint::{ClientCert, TlsKey};
use crate::error::RegistryError;

/// Tunables of the HTTP layer.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Time allowed to establish a TCP (+TLS) connection.
    pub connect_timeout: Duration,
    /// Longest silence allowed while reading any response, blob bodies
    /// included. `None` (the default) means no limit: the caller enforces
    /// a pull stall timeout across the whole pipeline instead, since a slow
    /// disk write is not the registry's fault.
    pub read_timeout: Option<Duration>,
    /// Whole-request limit for small requests: manifests and tokens. Blob
    /// downloads have no overall limit (a 2 GiB layer may take minutes).
    pub request_timeout: Duration,
    /// Manifests larger than this are refused (before or while reading).
    pub max_manifest_size: u64,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(30),
            read_timeout: None,
            request_timeout: Duration::from_secs(60),
            max_manifest_size: 4 * 1024 * 1024,
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Builds the HTTP client for one TLS setting, loading its CA files now.
pub(crate) fn build_http_client(
    key: &TlsKey,
    options: &ClientOptions,
) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(options.connect_timeout)
        .user_agent(options.user_agent.clone())
        .tcp_nodelay(true)
        // Idle connections go after 20 s, not 90: each keeps the read buffer its largest
        // blob grew (about 100 KiB), which made up most of what berthd's heap still held a minute
        // after a burst of pods (issue 16). kubelet's pulls for one pod come within seconds.
        .pool_idle_timeout(Duration::from_secs(20))
        // Large blobs over HTTP/2: let the window grow with the link.
        .http2_adaptive_window(true)
        .danger_accept_invalid_certs(key.insecure);
    if let Some(t) = options.read_timeout {
        b = b.read_timeout(t);
    }
    for path in &key.ca_files {
        for cert in load_ca(path)? {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some(client) = &key.client {
        b = b.identity(load_identity(client)?);
    }
    b.build().map_err(|source| RegistryError::HttpClient {
        ca_files: key.ca_files.clone(),
        source,
    })
}

/// Reads a client certificate chain and its private key (PEM; both may be in one file).
fn load_identity(client: &ClientCert) -> Result<reqwest::Identity, RegistryError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| RegistryError::ReadTlsFile {
            what: "client certificate",
            path: path.to_path_buf(),
            source,
        })
    };
    let mut pem = read(&client.cert)?;
    if let Some(key) = &client.key {
        pem.push(b'\n');
        pem.extend(read(key)?);
    }
    reqwest::Identity::from_pem(&pem).map_err(|source| RegistryError::InvalidPem {
        what: "client certificate",
        path: client.cert.clone(),
        expected: "certificate and private key",
        source,
    })
}

/// Reads a PEM bundle; it must hold at least one certificate.
fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, RegistryError> {
    let err = |reason: String| RegistryError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|source| RegistryError::ReadTlsFile {
        what: "CA file",
        path: path.to_path_buf(),
        source,
    })?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
        RegistryError::InvalidPem {
            what: "CA file",
            path: path.to_path_buf(),
            expected: "certificate bundle",
            source,
        }
    })?;
    if certs.is_empty() {
        return Err(err("no PEM certificates found in the file".into()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_file_errors_name_the_file() {
        let opts = ClientOptions::default();
        let missing = TlsKey {
            ca_files: vec!["/nonexistent/berth-ca.pem".into()],
            ..TlsKey::default()
        };
        let e = build_http_client(&missing, &opts).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/berth-ca.pem"), "{e}");

        let dir = std::env::temp_dir().join(format!("berth-registry-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = build_http_client(
            &TlsKey {
                ca_files: vec![empty.clone()],
                ..TlsKey::default()
            },
            &opts,
        )
        .unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();

        assert!(build_http_client(&TlsKey::default(), &opts).is_ok());
        let insecure = TlsKey {
            insecure: true,
            ..TlsKey::default()
        };
        assert!(build_http_client(&insecure, &opts).is_ok());
    }
}
