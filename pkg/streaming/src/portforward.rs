//! Moving bytes between a forwarded connection and a pod port, for both transports.
//!
//! Half-closes are propagated: the client's end of data becomes a TCP `shutdown(Write)` towards
//! the pod, the pod's EOF ends the client's stream. Over SPDY both directions run until each is
//! done (TCP semantics); over WebSocket the client cannot half-close, so the pod's EOF ends the
//! pair, as kubelet's and containerd's forwarding does.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::remotecommand::CHUNK;

/// The message written on the error stream when the pod's port cannot be reached (kubelet's
/// wording without the pod UID, which CRI runtimes do not know).
pub(crate) fn dial_error(port: u16, pod_sandbox_id: &str, error: &str) -> String {
    format!("error forwarding port {port} to pod {pod_sandbox_id}: {error}")
}

/// When a forwarded pair is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    /// Both directions ended.
    BothDone,
    /// The pod closed its side.
    PodDone,
}

pub(crate) async fn forward<R, W>(tcp: TcpStream, from_client: R, mut to_client: W, until: Until)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (pod_read, mut pod_write) = tcp.into_split();
    let up = async {
        let mut from_client = BufReader::with_capacity(CHUNK, from_client);
        if let Err(e) = tokio::io::copy_buf(&mut from_client, &mut pod_write).await {
            tracing::debug!(error = %e, "port-forward client to pod stopped");
        }
        let _ = pod_write.shutdown().await;
    };
    let down = async {
        let mut pod_read = BufReader::with_capacity(CHUNK, pod_read);
        if let Err(e) = tokio::io::copy_buf(&mut pod_read, &mut to_client).await {
            tracing::debug!(error = %e, "port-forward pod to client stopped");
        }
        let _ = to_client.shutdown().await;
    };
    match until {
        Until::BothDone => {
            tokio::join!(up, down);
        }
        Until::PodDone => {
            tokio::pin!(up);
            tokio::pin!(down);
            tokio::select! {
                () = &mut up => {
                    // Client side ended first (connection going away): finish the pod side.
                    down.await;
                }
                () = &mut down => {}
            }
        }
    }
}
