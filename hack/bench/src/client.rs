//! Connecting to a CRI endpoint (unix socket) with tonic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use berth_cri_api::v1::image_service_client::ImageServiceClient;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

/// Both CRI services over one shared HTTP/2 channel. Cheap to clone: clones
/// share the connection (tonic multiplexes concurrent calls over it).
#[derive(Clone)]
pub struct Clients {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
}

/// Message size limits: CRI responses (ListImages on a big store, verbose
/// Status) can exceed tonic's 4 MiB default.
const MAX_MSG: usize = 64 * 1024 * 1024;

impl Clients {
    pub fn new(channel: Channel) -> Clients {
        Clients {
            runtime: RuntimeServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG),
            image: ImageServiceClient::new(channel)
                .max_decoding_message_size(MAX_MSG)
                .max_encoding_message_size(MAX_MSG),
        }
    }
}

/// `unix:///run/x.sock` or `/run/x.sock` -> `/run/x.sock`.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    if let Some(rest) = endpoint.strip_prefix("unix://") {
        if rest.is_empty() {
            bail!("empty unix socket path in endpoint {endpoint:?}");
        }
        return Ok(PathBuf::from(rest));
    }
    if endpoint.starts_with('/') {
        return Ok(PathBuf::from(endpoint));
    }
    bail!("unsupported endpoint {endpoint:?}: expected unix:///path/to/socket")
}

/// Connect (eagerly) to a CRI unix socket.
pub async fn connect(endpoint: &str, connect_timeout: Duration) -> Result<Channel> {
    let path = socket_path(endpoint)?;
    // The URI is ignored by the connector; it only has to parse.
    let channel = Endpoint::try_from("http://[::]")?
        .connect_timeout(connect_timeout)
        .connect_with_connector(tower::service_fn(move |_| {
            let p = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(p).await?))
            }
        }))
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_endpoints() {
        assert_eq!(
            socket_path("unix:///run/berth/berth.sock").unwrap(),
            PathBuf::from("/run/berth/berth.sock")
        );
        assert_eq!(
            socket_path("/tmp/c.sock").unwrap(),
            PathBuf::from("/tmp/c.sock")
        );
        assert!(socket_path("unix://").is_err());
        assert!(socket_path("tcp://127.0.0.1:1234").is_err());
    }
}
