//! Errors of binding the server and of asking it for URLs.

use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("cannot listen for streaming on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("streaming TLS: cannot read {path}: {source}")]
    TlsFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("streaming TLS: {0}")]
    Tls(String),
    /// Too many URLs handed out and not used yet (kubelet and containerd allow 1000 too).
    #[error("maximum number of in-flight streaming requests exceeded ({limit})")]
    TooManyInFlight { limit: usize },
    /// The request makes no sense (the CRI layer maps this to InvalidArgument).
    #[error("invalid streaming request: {0}")]
    InvalidRequest(&'static str),
    #[error("cannot generate a streaming token: {0}")]
    Random(String),
}
