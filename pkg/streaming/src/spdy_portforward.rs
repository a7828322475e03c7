//! Port-forward over SPDY/3.1 (kubelet's `portforward/httpstream.go`).
//!
//! Every forwarded connection is a pair of client streams with the same `requestid` header: a
//! `data` stream and an `error` stream, both with the `port`. Old clients send no request id;
//! then, like kubelet, it is derived from the stream id (error: id, data: id - 2). Streams with a
//! missing or bad port or type are reset; a pair not complete within the stream creation timeout
//! is dropped with a message on its error stream. Complete pairs dial the pod's port through the
//! backend and copy both ways; a dial failure is written on the error stream. Any number of pairs
//! run at once, each as a task owned by the session (they end with it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use berth_spdy::{Headers, RstStatus, Session, SessionConfig, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backend::Backend;
use crate::portforward::{Until, dial_error, forward};

fn config() -> SessionConfig {
    SessionConfig {
        // The session window (four times this) bounds what one connection buffers.
        initial_window: 256 * 1024,
        max_streams: 512,
        ..SessionConfig::default()
    }
}

struct Pair {
    data: Option<Stream>,
    error: Option<Stream>,
    expires: Instant,
}

/// Checks a new stream's headers; returns (port, is_data) or why it is refused.
fn validate(stream: &Stream) -> Result<(u16, bool), String> {
    let port = stream.header("port").unwrap_or("");
    if port.is_empty() {
        return Err("\"port\" header is required".to_string());
    }
    let port = match port.parse::<u16>() {
        Ok(0) => return Err(format!("port {port:?} must be > 0")),
        Ok(p) => p,
        Err(e) => return Err(format!("unable to parse {port:?} as a port: {e}")),
    };
    match stream.header("streamtype").unwrap_or("") {
        "data" => Ok((port, true)),
        "error" => Ok((port, false)),
        "" => Err("\"streamtype\" header is required".to_string()),
        other => Err(format!("invalid stream type {other:?}")),
    }
}

fn request_id(stream: &Stream, is_data: bool) -> String {
    match stream.header("requestid") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ if is_data => stream.id().saturating_sub(2).to_string(),
        _ => stream.id().to_string(),
    }
}

/// Runs one port-forward session on an upgraded connection (or a WebSocket tunnel).
pub(crate) async fn serve<T>(
    io: T,
    backend: Arc<dyn Backend>,
    pod: String,
    stream_creation_timeout: Duration,
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (session, mut incoming) = Session::server(io, config());
    let pod: Arc<str> = Arc::from(pod);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut tasks = JoinSet::new();
    loop {
        let next_expiry = pairs.values().map(|p| p.expires).min();
        tokio::select! {
            stream = incoming.recv() => {
                let Some(stream) = stream else { break };
                let (port, is_data) = match validate(&stream) {
                    Ok(v) => v,
                    Err(e) => {
                        tracing::debug!(error = %e, "port-forward stream refused");
                        stream.reset(RstStatus::Cancel);
                        continue;
                    }
                };
                if stream.reply(Headers::new(), false).await.is_err() {
                    continue;
                }
                let id = request_id(&stream, is_data);
                let pair = pairs.entry(id.clone()).or_insert_with(|| Pair {
                    data: None,
                    error: None,
                    expires: Instant::now() + stream_creation_timeout,
                });
                let slot = if is_data { &mut pair.data } else { &mut pair.error };
                if slot.is_some() {
                    let kind = if is_data { "data" } else { "error" };
                    let message =
                        format!("error processing stream for request {id}: {kind} stream already assigned");
                    tracing::debug!(%message, "port-forward");
                    stream.reset(RstStatus::ProtocolError);
                    if let Some(error) = pair.error.take() {
                        write_error(&mut tasks, error, message);
                    }
                    continue;
                }
                *slot = Some(stream);
                if pair.data.is_some() && pair.error.is_some()
                    && let Some(Pair { data: Some(data), error: Some(error), .. }) = pairs.remove(&id)
                {
                    tasks.spawn(forward_pair(backend.clone(), pod.clone(), port, data, error));
                }
            }
            () = sleep_until(next_expiry) => {
                let now = Instant::now();
                let expired: Vec<String> =
                    pairs.iter().filter(|(_, p)| p.expires <= now).map(|(id, _)| id.clone()).collect();
                for id in expired {
                    if let Some(pair) = pairs.remove(&id) {
                        let message = format!("request {id}: timed out waiting for streams");
                        tracing::debug!(%message, "port-forward");
                        if let Some(error) = pair.error {
                            write_error(&mut tasks, error, message);
                        }
                    }
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = session.closed() => break,
        }
    }
    // Dropping `tasks` aborts the pairs still running; their sockets close with them.
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn write_error(tasks: &mut JoinSet<()>, error: Stream, message: String) {
    tasks.spawn(async move {
        let (_, mut send) = error.split();
        let _ = send.send(message.as_bytes()).await;
        let _ = send.finish().await;
    });
}

async fn forward_pair(
    backend: Arc<dyn Backend>,
    pod: Arc<str>,
    port: u16,
    data: Stream,
    error: Stream,
) {
    let (_, mut error) = error.split();
    let (from_client, to_client) = data.split();
    match backend.port_forward(&pod, port).await {
        Ok(tcp) => forward(tcp, from_client, to_client, Until::BothDone).await,
        Err(e) => {
            let message = dial_error(port, &pod, &e);
            tracing::debug!(%message, "port-forward");
            let _ = error.send(message.as_bytes()).await;
        }
    }
    let _ = error.finish().await;
}
