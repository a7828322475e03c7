//! Server configuration, with kubelet's and containerd's defaults.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// PEM files for serving HTTPS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingConfig {
    /// Where to listen. Default `127.0.0.1:0`: loopback, ephemeral port (as containerd does);
    /// the URLs carry the address and port actually bound (for `0.0.0.0`/`[::]` that is the
    /// unspecified address, which only local clients such as kubelet can dial).
    pub address: SocketAddr,
    /// Serve HTTPS with these files instead of plain HTTP.
    pub tls: Option<TlsFiles>,
    /// A session with no traffic in either direction for this long is closed (default 4 h, as
    /// kubelet and containerd; zero disables it).
    pub idle_timeout: Duration,
    /// How long a URL stays usable (default 60 s).
    pub token_ttl: Duration,
    /// How long a SPDY client may take to open its streams (default 30 s).
    pub stream_creation_timeout: Duration,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls: None,
            idle_timeout: Duration::from_secs(4 * 60 * 60),
            token_ttl: Duration::from_secs(60),
            stream_creation_timeout: Duration::from_secs(30),
        }
    }
}
