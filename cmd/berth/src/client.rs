//! Connecting to a CRI endpoint and rendering its answers.

use std::time::Duration;

use anyhow::{Context, bail};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint, Uri};

/// 16 MiB, like kubelet: list responses on a busy node are large.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

pub async fn channel(endpoint: &str, timeout: Duration) -> anyhow::Result<Channel> {
    channel_with(endpoint, timeout, Some(timeout)).await
}

/// `call_timeout` `None`: calls may take as long as they take (pulls).
async fn channel_with(
    endpoint: &str,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
) -> anyhow::Result<Channel> {
    let Some(path) = endpoint.strip_prefix("unix://") else {
        bail!("unsupported endpoint {endpoint:?}: only unix:///path is supported");
    };
    let path = path.to_string();
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move {
            Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
        }
    });
    // The URI is required by tonic but unused: the connector dials the socket.
    let mut endpoint_config = Endpoint::try_from("http://[::]:0")?.connect_timeout(connect_timeout);
    if let Some(timeout) = call_timeout {
        endpoint_config = endpoint_config.timeout(timeout);
    }
    endpoint_config
        .connect_with_connector(connector)
        .await
        .with_context(|| format!("connecting to {endpoint}"))
}

pub async fn runtime(
    endpoint: &str,
    timeout: Duration,
) -> anyhow::Result<RuntimeServiceClient<Channel>> {
    Ok(RuntimeServiceClient::new(channel(endpoint, timeout).await?)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE))
}

pub async fn images(
    endpoint: &str,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
) -> anyhow::Result<ImageServiceClient<Channel>> {
    Ok(
        ImageServiceClient::new(channel_with(endpoint, connect_timeout, call_timeout).await?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
}

/// `berth info`: conditions, handlers and the verbose info, with JSON-valued entries inlined.
pub fn info_json(status: &cri::StatusResponse) -> anyhow::Result<String> {
    let conditions: Vec<serde_json::Value> = status
        .status
        .iter()
        .flat_map(|s| &s.conditions)
        .map(|c| {
            serde_json::json!({
                "type": c.r#type, "status": c.status, "reason": c.reason, "message": c.message,
            })
        })
        .collect();
    let mut info = serde_json::Map::new();
    let mut keys: Vec<&String> = status.info.keys().collect();
    keys.sort();
    for key in keys {
        let raw = &status.info[key];
        let value =
            serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::from(raw.as_str()));
        info.insert(key.clone(), value);
    }
    let handlers: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| {
            if h.name.is_empty() {
                "(default)"
            } else {
                h.name.as_str()
            }
        })
        .collect();
    Ok(serde_json::to_string_pretty(&serde_json::json!({
        "conditions": conditions,
        "runtimeHandlers": handlers,
        "info": info,
    }))?)
}
