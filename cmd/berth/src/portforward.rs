//! `berth port-forward POD [LOCAL_PORT:]REMOTE_PORT...`: local TCP ports forwarded into a pod's
//! network namespace, as `kubectl port-forward` does, through the runtime's streaming server.
//!
//! Every accepted connection gets a PortForward URL of its own (they are single-use) and one
//! WebSocket (`v4.channel.k8s.io`, the port in the `port` query parameter) with two channels: 0
//! carries the data both ways, 1 the server's error text. The first two bytes the server sends on
//! each channel are the port, little-endian, which berth skips.

use std::io::Write;
use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{self, Connect};
use crate::containers::{self, Runtime};
use crate::stream;

const DATA: u8 = 0;
const ERROR: u8 = 1;
/// The port number that opens each channel.
const PORT_PREFIX: usize = 2;
/// How long berth still takes the pod's data after the local side closed: the server answers the
/// close at once, unless it is gone.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A forwarded port: `local` 0 means one the system picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub local: u16,
    pub remote: u16,
}

/// `PORT` (the same port here and in the pod), `LOCAL:REMOTE`, or `:REMOTE` / `0:REMOTE` (any free
/// local port), as kubectl takes them.
pub fn port_spec(arg: &str) -> Result<PortSpec, String> {
    let port = |s: &str, what: &str, zero: bool| -> Result<u16, String> {
        match s.parse::<u16>() {
            Ok(0) if !zero => Err(format!("{what} port in {arg:?} must be 1-65535")),
            Ok(p) => Ok(p),
            Err(_) => Err(format!(
                "{arg:?} is not [LOCAL_PORT:]REMOTE_PORT: {what} port {s:?} is not a port number"
            )),
        }
    };
    match arg.split_once(':') {
        None => {
            let p = port(arg, "the", false)?;
            Ok(PortSpec {
                local: p,
                remote: p,
            })
        }
        Some((local, remote)) => Ok(PortSpec {
            local: if local.is_empty() {
                0
            } else {
                port(local, "the local", true)?
            },
            remote: port(remote, "the remote", false)?,
        }),
    }
}

#[derive(Debug, Clone, Args)]
pub struct PortForwardArgs {
    /// The pod: ID, unique ID prefix or name.
    pub pod: String,
    /// The ports: 8080 (the same port here and in the pod), 9000:8080, or :8080 (any free local
    /// port; the one chosen is printed).
    #[arg(required = true, value_parser = port_spec, value_name = "[LOCAL_PORT:]REMOTE_PORT")]
    pub ports: Vec<PortSpec>,
}

/// `?port=N` on the URL: the WebSocket protocol takes its ports from the query.
fn with_port(url: &str, port: u16) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}port={port}")
}

/// Listens on 127.0.0.1 until Ctrl-C, forwarding each connection to its remote port.
pub async fn port_forward(connect: &Connect, args: &PortForwardArgs) -> anyhow::Result<()> {
    let mut runtime = connect.runtime().await?;
    let pod = containers::find_pod(&mut runtime, &args.pod).await?;
    if pod.state != cri::PodSandboxState::SandboxReady as i32 {
        bail!("pod {} is not ready: nothing to forward to", args.pod);
    }
    let mut seen = Vec::new();
    for spec in &args.ports {
        if spec.local != 0 && seen.contains(&spec.local) {
            bail!("local port {} is given twice", spec.local);
        }
        seen.push(spec.local);
    }
    let mut listeners = Vec::new();
    for spec in &args.ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, spec.local))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{}", spec.local))?;
        let local = listener.local_addr()?.port();
        writeln!(
            std::io::stdout(),
            "Forwarding from 127.0.0.1:{local} -> {}",
            spec.remote
        )?;
        listeners.push((listener, local, spec.remote));
    }
    let mut accepting = JoinSet::new();
    for (listener, local, remote) in listeners {
        let forwarder = Forwarder {
            runtime: runtime.clone(),
            pod_id: pod.id.clone(),
            local,
            remote,
            timeout: connect.timeout,
        };
        accepting.spawn(forwarder.accept(listener));
    }
    tokio::select! {
        signal = tokio::signal::ctrl_c() => signal.context("waiting for Ctrl-C")?,
        // Accept loops only end on a listener that broke for good.
        Some(result) = accepting.join_next() => {
            result.context("port-forward listener")??;
        }
    }
    Ok(())
}

/// Forwards the connections of one local port.
#[derive(Clone)]
struct Forwarder {
    runtime: Runtime,
    pod_id: String,
    local: u16,
    remote: u16,
    timeout: Duration,
}

impl Forwarder {
    async fn accept(self, listener: TcpListener) -> anyhow::Result<()> {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                // Out of descriptors and the like: this connection is lost, later ones may not be.
                Err(e) => {
                    eprintln!("berth: accepting on 127.0.0.1:{}: {e}", self.local);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Like kubectl; a closed stdout is no reason to stop forwarding (println! would panic).
            let _ = writeln!(std::io::stdout(), "Handling connection for {}", self.local);
            let forwarder = self.clone();
            tokio::spawn(async move {
                if let Err(e) = forwarder.clone().forward(tcp).await {
                    eprintln!(
                        "berth: forwarding 127.0.0.1:{} -> {}: {}",
                        forwarder.local,
                        forwarder.remote,
                        client::render(&e)
                    );
                }
            });
        }
    }

    async fn forward(mut self, tcp: TcpStream) -> anyhow::Result<()> {
        tcp.set_nodelay(true)?;
        let url = self
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: self.pod_id.clone(),
                port: vec![i32::from(self.remote)],
            })
            .await?
            .into_inner()
            .url;
        let (ws, _) =
            stream::connect(&with_port(&url, self.remote), &[stream::V4], self.timeout).await?;
        relay(ws, tcp).await
    }
}

/// Copies between the local connection and the pod's port until either side closes. Text on the
/// error channel becomes the error.
async fn relay<S, L>(ws: WebSocketStream<S>, local: L) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    L: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut messages) = ws.split();
    let (mut local_in, mut local_out) = tokio::io::split(local);
    let mut prefix = [PORT_PREFIX; 2];
    let mut errors = Vec::new();
    let mut buf = vec![0; 32 * 1024];
    // Set once the local side is done and berth has asked the server to close.
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            message = messages.next() => {
                let data = match message {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Binary(data))) => data,
                    Some(Ok(_)) => continue,
                    Some(Err(_)) if closing.is_some() => break,
                    Some(Err(e)) => return Err(e).context("reading from the streaming server"),
                };
                let Some((channel @ (DATA | ERROR), payload)) = stream::split(&data) else {
                    continue;
                };
                let skip = &mut prefix[usize::from(channel)];
                let n = (*skip).min(payload.len());
                *skip -= n;
                let payload = &payload[n..];
                if channel == ERROR {
                    errors.extend_from_slice(payload);
                } else if !payload.is_empty() && local_out.write_all(payload).await.is_err() {
                    // The local client is gone: nothing more to deliver.
                    break;
                }
            }
            read = local_in.read(&mut buf), if closing.is_none() => match read {
                Ok(n) if n > 0 => sink.send(Message::binary(stream::frame(DATA, &buf[..n]))).await?,
                // The local client is done (or broke): the pod's answer in flight still arrives
                // before the server's answer to the close.
                _ => {
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                    sink.send(Message::Close(None)).await?;
                }
            },
            () = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)),
                if closing.is_some() => break,
        }
    }
    let _ = local_out.shutdown().await;
    if closing.is_none() {
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    }
    let errors = String::from_utf8_lossy(&errors);
    if !errors.trim().is_empty() {
        bail!("{}", errors.trim());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    #[test]
    fn port_specs_are_parsed_like_kubectl_does() {
        let spec = |local, remote| Ok(PortSpec { local, remote });
        assert_eq!(port_spec("8080"), spec(8080, 8080));
        assert_eq!(port_spec("9000:80"), spec(9000, 80));
        assert_eq!(port_spec(":80"), spec(0, 80));
        assert_eq!(port_spec("0:80"), spec(0, 80));
        for bad in ["", "0", "80:", "80:0", "x", "70000", "1:2:3", "-1:80", ":"] {
            assert!(port_spec(bad).is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            with_port("http://h/portforward/t", 80),
            "http://h/portforward/t?port=80"
        );
        assert_eq!(with_port("http://h/p?a=b", 80), "http://h/p?a=b&port=80");
    }

    /// A server that opens both channels with the port, answers "pong" to "ping" (split over
    /// messages to check the prefix is skipped across them), reports an error and closes.
    #[tokio::test]
    async fn relay_skips_the_port_prefix_and_reports_errors() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (local, mut user) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
            ws.send(Message::binary(vec![DATA, 80])).await.unwrap();
            ws.send(Message::binary(vec![DATA, 0, b'p'])).await.unwrap();
            ws.send(Message::binary(vec![ERROR, 80, 0])).await.unwrap();
            let Some(Ok(Message::Binary(got))) = ws.next().await else {
                panic!("no data from the client");
            };
            assert_eq!(&got[..], b"\x00ping");
            ws.send(Message::binary(b"\x00ong".to_vec())).await.unwrap();
            ws.send(Message::binary(b"\x01connection refused".to_vec()))
                .await
                .unwrap();
            ws.close(None).await.unwrap();
        });
        let ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let relaying = tokio::spawn(relay(ws, local));
        user.write_all(b"ping").await.unwrap();
        let mut answer = Vec::new();
        user.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"pong");
        let error = relaying.await.unwrap().unwrap_err();
        assert_eq!(error.to_string(), "connection refused");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_local_close_closes_the_websocket() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (local, user) = tokio::io::duplex(64 * 1024);
        let server = tokio::spawn(async move {
            let mut ws = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
            ws.send(Message::binary(vec![DATA, 80, 0])).await.unwrap();
            // The client's close arrives; the library answers it.
            while let Some(Ok(m)) = ws.next().await {
                assert!(m.is_close(), "{m:?}");
            }
        });
        let ws = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        drop(user);
        relay(ws, local).await.unwrap();
        server.await.unwrap();
    }
}
