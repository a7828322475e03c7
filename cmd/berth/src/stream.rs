//! The client side of Kubernetes' streaming protocols over WebSocket, for the URLs CRI Exec, Attach
//! and PortForward return: dialling the streaming server, the channel framing, the exit status, and
//! an interactive exec/attach session between the local terminal (or pipes) and the remote process.
//!
//! Every binary message starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 error (a
//! metav1.Status as JSON once the process is done), 4 resize (`{"Width":W,"Height":H}`).
//! `v5.channel.k8s.io` adds `[255, channel]`, "this channel is closed", which is how a remote
//! `cat` learns that its stdin has ended; `v4.channel.k8s.io` has no way to say so.

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri, header};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::term::{self, DetachKeys, RawMode};

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;
pub const RESIZE: u8 = 4;
/// v5's "channel closed" marker, followed by the channel.
const CLOSE: u8 = 255;

/// How long a session goes on reading output after berth asked to close it (detach): output the
/// server had already sent is still shown, a server that never answers does not keep berth.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long an attach goes on after the end of its stdin before it detaches: the answer to the last
/// input is still shown, and the server has delivered that input (a close at once could overtake
/// it, as servers may drop the session's queued input when the client goes).
const DETACH_LINGER: Duration = Duration::from_millis(500);

pub type Ws = WebSocketStream<TcpStream>;

/// A message for `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(data.len() + 1);
    message.push(channel);
    message.extend_from_slice(data);
    message
}

/// A message's channel and data; `None` for an empty message (which carries nothing).
pub fn split(message: &[u8]) -> Option<(u8, &[u8])> {
    message
        .split_first()
        .map(|(channel, data)| (*channel, data))
}

/// v5: "nothing more will be sent on `channel`".
pub fn close_channel(channel: u8) -> Vec<u8> {
    vec![CLOSE, channel]
}

/// A terminal size change for the remote terminal.
pub fn resize(width: u16, height: u16) -> Vec<u8> {
    let json = serde_json::json!({ "Width": width, "Height": height });
    frame(RESIZE, json.to_string().as_bytes())
}

/// How a remote process ended, as its metav1.Status on the error channel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Success (0), or a NonZeroExitCode failure with the command's exit code.
    Exited(i32),
    /// Any other failure: the command could not be run, the stream broke, ...
    Failed(String),
}

/// Parses the error channel's metav1.Status.
pub fn parse_status(raw: &[u8]) -> anyhow::Result<Outcome> {
    let status: serde_json::Value =
        serde_json::from_slice(raw).context("the exit status is not a Kubernetes Status")?;
    let field = |name: &str| status.get(name).and_then(|v| v.as_str()).unwrap_or("");
    match field("status") {
        "Success" => return Ok(Outcome::Exited(0)),
        "Failure" => {}
        other => bail!("the exit status says {other:?}, neither Success nor Failure"),
    }
    let message = match field("message") {
        "" => "the command failed".to_string(),
        m => m.to_string(),
    };
    if field("reason") == "NonZeroExitCode" {
        let code = status
            .pointer("/details/causes")
            .and_then(|c| c.as_array())
            .into_iter()
            .flatten()
            .find(|c| c.get("reason").and_then(|r| r.as_str()) == Some("ExitCode"))
            .and_then(|c| c.get("message")?.as_str()?.trim().parse::<i32>().ok());
        if let Some(code) = code {
            return Ok(Outcome::Exited(code));
        }
    }
    Ok(Outcome::Failed(message))
}

/// An exit code for the shell: the low 8 bits, as a process's status has them.
pub fn exit_code(code: i32) -> std::process::ExitCode {
    std::process::ExitCode::from((code & 0xff) as u8)
}

/// Dials the streaming server at `url` (http:// or ws://) and does the WebSocket handshake,
/// offering `protocols` in order of preference. Returns the stream and the protocol it chose.
pub async fn connect(
    url: &str,
    protocols: &[&str],
    timeout: Duration,
) -> anyhow::Result<(Ws, String)> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("the runtime's streaming URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http" | "ws") => {}
        // The streaming server berthd runs on loopback speaks plain HTTP; TLS would need a client
        // certificate setup berth has no flags for.
        Some("https" | "wss") => bail!(
            "the runtime's streaming server wants TLS ({url}), which berth does not speak: \
             give the streaming server a plain-HTTP loopback address"
        ),
        _ => bail!("the runtime's streaming URL {url:?} is not an http:// URL"),
    }
    let host = uri
        .host()
        .with_context(|| format!("no host in the streaming URL {url:?}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host, |a| a.as_str());
    let mut request = format!("ws://{authority}{path}")
        .into_client_request()
        .with_context(|| format!("the streaming URL {url:?}"))?;
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_str(&protocols.join(", "))?,
    );
    let dial = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connecting to the streaming server at {host}:{port}"))?;
        // Keystrokes go out one by one, without waiting for more.
        tcp.set_nodelay(true)?;
        tokio_tungstenite::client_async(request, tcp)
            .await
            .map_err(handshake_error)
    };
    let (ws, response) = tokio::time::timeout(timeout, dial)
        .await
        .with_context(|| format!("the streaming server at {host}:{port} did not answer"))??;
    let protocol = response
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|p| p.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((ws, protocol))
}

/// A refused handshake with what the server said (an expired token, a bad request).
fn handshake_error(e: WsError) -> anyhow::Error {
    match e {
        WsError::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            anyhow::anyhow!(
                "the streaming server refused the session: {} {}",
                response.status(),
                body.trim()
            )
        }
        e => anyhow::Error::new(e).context("WebSocket handshake with the streaming server"),
    }
}

/// What an exec or attach session carries.
#[derive(Debug, Clone, Copy)]
pub struct Streams {
    /// Local stdin is sent to the process.
    pub stdin: bool,
    /// The process has a terminal: resizes are sent, and with `stdin` a local terminal goes raw.
    pub tty: bool,
    /// Attach: the end of stdin (or Ctrl-P Ctrl-Q on a raw terminal) detaches.
    pub detach: bool,
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The server reported the process's end.
    Status(Outcome),
    /// berth detached (attach).
    Detached,
    /// The server closed the stream without a status.
    Closed,
}

/// Local stdin, read on a thread of its own: a blocking read of a terminal cannot be cancelled, and
/// a thread (unlike tokio's blocking pool) does not hold up berth's exit. `None` at EOF.
fn read_stdin() -> anyhow::Result<mpsc::Receiver<std::io::Result<Vec<u8>>>> {
    let (tx, rx) = mpsc::channel(4);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = vec![0; 32 * 1024];
            loop {
                let chunk = match stdin.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => Ok(buf[..n].to_vec()),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => Err(e),
                };
                let failed = chunk.is_err();
                if tx.blocking_send(chunk).is_err() || failed {
                    return;
                }
            }
        })
        .context("starting the stdin reader")?;
    Ok(rx)
}

async fn next_signal(signal: &mut Option<Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

fn write_out(out: &mut dyn Write, data: &[u8]) -> std::io::Result<()> {
    out.write_all(data)?;
    out.flush()
}

/// Runs an exec or attach session on `url` until the process ends, the server closes, or berth
/// detaches.
pub async fn session(url: &str, streams: Streams, timeout: Duration) -> anyhow::Result<End> {
    let (ws, protocol) = connect(url, &[V5, V4], timeout).await?;
    let can_close = match protocol.as_str() {
        V5 => true,
        V4 => false,
        other => bail!("the streaming server chose the protocol {other:?}, not {V5} or {V4}"),
    };
    let (mut sink, mut stream) = ws.split();
    let raw = streams.tty && streams.stdin && term::stdin_is_terminal();
    // Dropped on every return below, and on unwinding: the terminal is always given back.
    let _raw_mode = if raw { Some(RawMode::enable()?) } else { None };
    // In raw mode Ctrl-C reaches the remote process, not berth; a SIGTERM or SIGHUP must still
    // end berth through the guard above rather than kill it with the terminal raw.
    let mut terminate = if raw {
        Some(signal(SignalKind::terminate()).context("handling SIGTERM")?)
    } else {
        None
    };
    let mut hangup = if raw {
        Some(signal(SignalKind::hangup()).context("handling SIGHUP")?)
    } else {
        None
    };
    let mut winch = None;
    if streams.tty && term::size().is_some() {
        // Watched before the first size is read, so that no change falls in between.
        winch = Some(signal(SignalKind::window_change()).context("handling SIGWINCH")?);
        if let Some((width, height)) = term::size() {
            sink.send(Message::binary(resize(width, height))).await?;
        }
    }
    let mut stdin = if streams.stdin {
        Some(read_stdin()?)
    } else {
        None
    };
    let mut detach_keys = (streams.detach && raw).then(DetachKeys::default);
    let mut status = Vec::new();
    // Set once berth has asked the server to close: the time it stops waiting for its answer.
    let mut closing: Option<tokio::time::Instant> = None;
    // Set when stdin ended on an attach: the time it detaches.
    let mut linger: Option<tokio::time::Instant> = None;
    let mut end = End::Closed;
    loop {
        tokio::select! {
            message = stream.next() => {
                let data = match message {
                    None | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Binary(data))) => data,
                    // Pings are answered by the library; text belongs to the base64 protocols,
                    // which berth does not offer.
                    Some(Ok(_)) => continue,
                    // A stream that ends without a close frame after a detach is no news.
                    Some(Err(_)) if closing.is_some() => break,
                    Some(Err(e)) => return Err(e).context("reading from the streaming server"),
                };
                match split(&data) {
                    Some((STDOUT, out)) => write_out(&mut std::io::stdout().lock(), out)?,
                    Some((STDERR, out)) => write_out(&mut std::io::stderr().lock(), out)?,
                    Some((ERROR, part)) => {
                        status.extend_from_slice(part);
                        // The status is the last thing the server sends: once it parses, the
                        // session is over, whether or not the server closes promptly.
                        if let Ok(outcome) = parse_status(&status) {
                            end = End::Status(outcome);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            chunk = async { stdin.as_mut()?.recv().await }, if stdin.is_some() && closing.is_none() => {
                let mut detached = false;
                match chunk {
                    Some(Ok(mut data)) => {
                        if let Some(keys) = detach_keys.as_mut() {
                            (data, detached) = keys.filter(&data);
                        }
                        if !data.is_empty() {
                            sink.send(Message::binary(frame(STDIN, &data))).await?;
                        }
                    }
                    Some(Err(e)) => return Err(e).context("reading stdin"),
                    None => {
                        stdin = None;
                        if can_close {
                            sink.send(Message::binary(close_channel(STDIN))).await?;
                        } else if !streams.detach {
                            eprintln!(
                                "berth: stdin ended, but the streaming server speaks {V4}, which \
                                 can't tell the command so: it runs until it exits by itself"
                            );
                        }
                        if streams.detach {
                            end = End::Detached;
                            linger = Some(tokio::time::Instant::now() + DETACH_LINGER);
                        }
                    }
                }
                if detached {
                    end = End::Detached;
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                    sink.send(Message::Close(None)).await?;
                }
            }
            () = tokio::time::sleep_until(linger.unwrap_or_else(tokio::time::Instant::now)),
                if linger.is_some() && closing.is_none() => {
                closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                sink.send(Message::Close(None)).await?;
            }
            () = next_signal(&mut winch), if closing.is_none() => {
                if let Some((width, height)) = term::size() {
                    sink.send(Message::binary(resize(width, height))).await?;
                }
            }
            () = tokio::time::sleep_until(closing.unwrap_or_else(tokio::time::Instant::now)),
                if closing.is_some() => break,
            () = next_signal(&mut terminate) => bail!("terminated"),
            () = next_signal(&mut hangup) => bail!("the terminal hung up"),
        }
    }
    if end == End::Closed && !status.is_empty() {
        end = End::Status(parse_status(&status)?);
    }
    if closing.is_none() {
        // Courtesy: the server learns the session is over from a close frame, not a reset.
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_by_channel() {
        assert_eq!(frame(STDIN, b"hi"), b"\x00hi");
        assert_eq!(split(b"\x01out"), Some((STDOUT, &b"out"[..])));
        assert_eq!(split(b"\x02"), Some((STDERR, &b""[..])));
        assert_eq!(split(b""), None);
        assert_eq!(close_channel(STDIN), [255, 0]);
        let r = resize(80, 24);
        assert_eq!(r[0], RESIZE);
        let json: serde_json::Value = serde_json::from_slice(&r[1..]).unwrap();
        assert_eq!(json, serde_json::json!({"Width": 80, "Height": 24}));
    }

    #[test]
    fn statuses_give_exit_codes_or_messages() {
        let ok = br#"{"metadata":{},"status":"Success"}"#;
        assert_eq!(parse_status(ok).unwrap(), Outcome::Exited(0));
        let exit5 = br#"{"metadata":{},"status":"Failure",
            "message":"command terminated with non-zero exit code: exit status 5",
            "reason":"NonZeroExitCode",
            "details":{"causes":[{"reason":"Other","message":"x"},{"reason":"ExitCode","message":"5"}]}}"#;
        assert_eq!(parse_status(exit5).unwrap(), Outcome::Exited(5));
        let failed = br#"{"status":"Failure","message":"executable file not found","reason":"InternalError"}"#;
        assert_eq!(
            parse_status(failed).unwrap(),
            Outcome::Failed("executable file not found".into())
        );
        // A NonZeroExitCode without a usable code is still a failure, with its message.
        let no_code = br#"{"status":"Failure","message":"m","reason":"NonZeroExitCode",
            "details":{"causes":[{"reason":"ExitCode","message":"five"}]}}"#;
        assert_eq!(parse_status(no_code).unwrap(), Outcome::Failed("m".into()));
        assert_eq!(
            parse_status(br#"{"status":"Failure"}"#).unwrap(),
            Outcome::Failed("the command failed".into())
        );
        assert!(parse_status(br#"{"status":"Succ"#).is_err(), "incomplete");
        assert!(parse_status(br#"{"status":"Pending"}"#).is_err());
        assert!(parse_status(b"plain text").is_err());
    }

    #[tokio::test]
    async fn connect_refuses_tls_and_reports_refusals() {
        let e = connect("https://127.0.0.1:1/exec/t", &[V5], Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("TLS"), "{e}");
        // A server that refuses the upgrade (an expired token): its status and body are shown.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0; 4096];
            let _ = tcp.read(&mut buf).await;
            let body = "token expired";
            let answer = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tcp.write_all(answer.as_bytes()).await.unwrap();
        });
        let url = format!("http://{address}/exec/t");
        let e = connect(&url, &[V5, V4], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "the streaming server refused the session: 404 Not Found token expired"
        );
    }

    #[tokio::test]
    async fn connect_offers_v5_then_v4_and_returns_the_servers_choice() {
        use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            // An older server: it knows v4 only. (The error type is tungstenite's callback's.)
            #[allow(clippy::result_large_err)]
            let choose = |request: &Request, mut response: Response| {
                let offered = request.headers()[header::SEC_WEBSOCKET_PROTOCOL].clone();
                assert_eq!(offered, "v5.channel.k8s.io, v4.channel.k8s.io");
                assert_eq!(request.uri().path(), "/exec/t");
                response
                    .headers_mut()
                    .insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(V4));
                Ok(response)
            };
            let mut ws = tokio_tungstenite::accept_hdr_async(tcp, choose)
                .await
                .unwrap();
            ws.send(Message::binary(frame(STDOUT, b"hi")))
                .await
                .unwrap();
        });
        let url = format!("http://{address}/exec/t");
        let (mut ws, protocol) = connect(&url, &[V5, V4], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(protocol, V4);
        let Some(Ok(Message::Binary(data))) = ws.next().await else {
            panic!("no message");
        };
        assert_eq!(split(&data), Some((STDOUT, &b"hi"[..])));
        server.await.unwrap();
    }

    #[test]
    fn exit_codes_keep_their_low_byte() {
        assert_eq!(exit_code(3), std::process::ExitCode::from(3));
        assert_eq!(exit_code(256 + 7), std::process::ExitCode::from(7));
    }
}
