//! Port-forward over WebSocket (kubelet's `portforward/websocket.go`), and SPDY tunnelled in
//! WebSocket (`SPDY/3.1+portforward.k8s.io`, what newer kubectl sends).
//!
//! The ports come from `?port=P` query parameters (repeatable, comma lists allowed). Port `i`
//! gets channels `2i` (data, both ways) and `2i+1` (error, to the client); the server's first
//! message on each is the port as two little-endian bytes. One TCP connection per port; the
//! WebSocket closes when every pair is done.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;

use crate::backend::Backend;
use crate::negotiate::Rejection;
use crate::portforward::{Until, dial_error, forward};
use crate::spdy_portforward;
use crate::ws::{ChannelSet, Codec, Duplex};

/// Two channels per port must fit the channel byte.
const MAX_PORTS: usize = 128;

/// The `port` query parameters (kubelet's `NewV4Options`).
pub(crate) fn ports(query: Option<&str>) -> Result<Vec<u16>, Rejection> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "port" {
            continue;
        }
        if value.is_empty() {
            return Err(Rejection::bad_request(
                "query parameter \"port\" cannot be empty",
            ));
        }
        for p in value.split("%2C").flat_map(|v| v.split(',')) {
            match p.parse::<u16>() {
                Ok(0) => {
                    return Err(Rejection::bad_request(format!(
                        "port \"{value}\" must be > 0"
                    )));
                }
                Ok(port) => ports.push(port),
                Err(e) => {
                    return Err(Rejection::bad_request(format!(
                        "unable to parse \"{value}\" as a port: {e}"
                    )));
                }
            }
        }
    }
    if ports.is_empty() {
        return Err(Rejection::bad_request(
            "query parameter \"port\" is required",
        ));
    }
    if ports.len() > MAX_PORTS {
        return Err(Rejection::bad_request(format!(
            "at most {MAX_PORTS} ports per port-forward connection"
        )));
    }
    Ok(ports)
}

/// Channel-framed port-forward.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    codec: Codec,
    backend: Arc<dyn Backend>,
    pod: String,
    ports: Vec<u16>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut channels = ChannelSet::new(codec, false);
    let mut pairs = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        // `ports()` caps the count so that every channel fits its byte.
        let Ok(data) = u8::try_from(2 * i) else {
            break;
        };
        let error = data + 1;
        pairs.push((
            *port,
            channels.reader(data),
            channels.writer(data),
            channels.writer(error),
        ));
    }
    let pump = channels.pump(ws).run();
    tokio::pin!(pump);

    let backend = &backend;
    let pod = &pod;
    let session = async {
        let mut tasks = Vec::with_capacity(pairs.len());
        for (port, reader, mut data, mut error) in pairs {
            tasks.push(async move {
                let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
                if data.send(prefix.clone()).await.is_err() || error.send(prefix).await.is_err() {
                    return;
                }
                match backend.port_forward(pod, port).await {
                    Ok(tcp) => forward(tcp, reader, data, Until::PodDone).await,
                    Err(e) => {
                        let message = dial_error(port, pod, &e);
                        tracing::debug!(%message, "port-forward");
                        let _ = error.write_all(message.as_bytes()).await;
                    }
                }
            });
        }
        join_all(tasks).await;
    };
    tokio::select! {
        _ = &mut pump => return,
        () = session => {}
    }
    pump.await;
}

/// Runs futures concurrently to completion (no `futures` crate).
async fn join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for slot in futures.iter_mut() {
            if let Some(f) = slot {
                if f.as_mut().poll(cx).is_ready() {
                    *slot = None;
                } else {
                    pending = true;
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await
}

/// SPDY/3.1 port-forward carried in binary WebSocket messages.
pub(crate) async fn serve_tunnel<S>(
    ws: WebSocketStream<S>,
    backend: Arc<dyn Backend>,
    pod: String,
    stream_creation_timeout: std::time::Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut channels = ChannelSet::new(Codec::Tunnel, false);
    let io = Duplex {
        reader: channels.reader(0),
        writer: channels.writer(0),
    };
    let pump = channels.pump(ws).run();
    tokio::pin!(pump);
    let session = spdy_portforward::serve(io, backend, pod, stream_creation_timeout);
    tokio::select! {
        _ = &mut pump => return,
        () = session => {}
    }
    // The SPDY session dropped its end of the tunnel: close the WebSocket (bounded, in case the
    // session's i/o task is slow to let go).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), pump).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_parameters() {
        assert_eq!(
            ports(Some("port=80&port=8080,9090")).unwrap(),
            vec![80, 8080, 9090]
        );
        assert_eq!(ports(Some("x=1&port=5%2C6")).unwrap(), vec![5, 6]);
        assert!(ports(None).is_err());
        assert!(ports(Some("port=")).is_err());
        assert!(ports(Some("port=0")).is_err());
        assert!(ports(Some("port=70000")).is_err());
        assert!(ports(Some("port=http")).is_err());
    }
}
