//! Connecting to a CRI endpoint and rendering its answers.

use std::time::Duration;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use berth_cri_api::v1::image_service_client::ImageServiceClient;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// 16 MiB, like kubelet: list responses on a busy node are large.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

pub async fn channel(endpoint: &str, timeout: Duration) -> anyhow::Result<Channel> {
    channel_with(endpoint, timeout, Some(timeout)).await
}

/// `call_timeout` `None`: calls may take as long as they take (pulls).
pub async fn channel_with(
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

/// A runtime client whose calls may take longer than `--timeout` (`None`: as long as they take),
/// for StopContainer's grace period, ExecSync and the like.
pub async fn runtime_with(
    endpoint: &str,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
) -> anyhow::Result<RuntimeServiceClient<Channel>> {
    Ok(
        RuntimeServiceClient::new(channel_with(endpoint, connect_timeout, call_timeout).await?)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE),
    )
}

/// How to reach the runtime, as the global flags say.
#[derive(Debug, Clone)]
pub struct Connect {
    pub endpoint: String,
    /// `--timeout`: for connecting, and for each call unless a verb needs longer.
    pub timeout: Duration,
}

impl Connect {
    pub async fn runtime(&self) -> anyhow::Result<RuntimeServiceClient<Channel>> {
        runtime(&self.endpoint, self.timeout).await
    }

    /// Calls bounded by `call` (`None`: unbounded) instead of `--timeout`.
    pub async fn runtime_for(
        &self,
        call: Option<Duration>,
    ) -> anyhow::Result<RuntimeServiceClient<Channel>> {
        runtime_with(&self.endpoint, self.timeout, call).await
    }

    pub async fn images(
        &self,
        call: Option<Duration>,
    ) -> anyhow::Result<ImageServiceClient<Channel>> {
        images(&self.endpoint, self.timeout, call).await
    }
}

/// An error for a person: the context chain, with a gRPC status shown as its message alone
/// (`container "abc" not found`), not tonic's `code: ..., message: "..."`.
pub fn render(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        if let Some(status) = cause.downcast_ref::<tonic::Status>() {
            parts.push(if status.message().is_empty() {
                status.code().description().to_string()
            } else {
                status.message().to_string()
            });
            if let Some(source) = std::error::Error::source(status) {
                parts.push(source.to_string());
            }
            break;
        }
        let part = cause.to_string();
        // Errors whose message repeats their source's (hyper's, io's) are said once.
        if parts.last() != Some(&part) {
            parts.push(part);
        }
    }
    parts.join(": ")
}

/// The gRPC code of the first status in an error's chain.
pub fn code(error: &anyhow::Error) -> Option<tonic::Code> {
    error
        .chain()
        .find_map(|c| c.downcast_ref::<tonic::Status>())
        .map(tonic::Status::code)
}

/// Whether an error is a closed stdout (`berth logs | head`): not worth a message.
pub fn broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_render_as_their_message() {
        let e = anyhow::Error::from(tonic::Status::not_found("container \"abc\" not found"));
        assert_eq!(render(&e), "container \"abc\" not found");
        assert_eq!(code(&e), Some(tonic::Code::NotFound));
        let e = e.context("stopping abc");
        assert_eq!(render(&e), "stopping abc: container \"abc\" not found");
        let e = anyhow::Error::from(tonic::Status::unavailable(""));
        assert_eq!(render(&e), tonic::Code::Unavailable.description());
        let e = anyhow::anyhow!("plain").context("outer");
        assert_eq!((render(&e), code(&e)), ("outer: plain".to_string(), None));
        let pipe = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert!(broken_pipe(&pipe.context("writing")) && !broken_pipe(&e));
    }
}
