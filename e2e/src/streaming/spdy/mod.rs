//! SPDY/3.1 over an HTTP/1.1 Upgrade, as kubectl and kubelet's clients speak it (written from the
//! SPDY/3.1 draft and the Kubernetes protocol descriptions; only the client side).

pub mod frame;
pub mod session;

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use session::{RecvStream, SendStream, Session, SessionGuard};

use super::HttpError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An upgraded connection: the session, what keeps it alive, and the protocol the server chose.
pub struct Upgraded {
    pub session: Session,
    pub guard: SessionGuard,
    pub protocol: String,
}

/// POSTs to `url` asking for `Upgrade: SPDY/3.1` with one `X-Stream-Protocol-Version` per offered
/// protocol. A non-101 answer is an [`HttpError`].
pub async fn connect(url: &str, protocols: &[&str]) -> anyhow::Result<Upgraded> {
    let (authority, path) = session::split_url(url)?;
    let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&authority))
        .await
        .with_context(|| format!("connecting to {authority}: timed out"))?
        .with_context(|| format!("connecting to {authority}"))?;
    tcp.set_nodelay(true)?;
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: berth-e2e\r\n\
         Content-Length: 0\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
    );
    for protocol in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await?;

    let (status, headers, leftover) = read_head(&mut tcp).await?;
    if status != 101 {
        let body = read_body(&mut tcp, &headers, leftover).await;
        return Err(HttpError { status, body }.into());
    }
    let upgrade = header(&headers, "upgrade").unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("spdy/3.1") {
        bail!("101 with Upgrade {upgrade:?}, not SPDY/3.1");
    }
    let protocol = header(&headers, "x-stream-protocol-version")
        .unwrap_or_default()
        .to_string();
    let (session, guard) = Session::start(tcp, leftover)?;
    Ok(Upgraded {
        session,
        guard,
        protocol,
    })
}

type HeaderList = Vec<(String, String)>;

fn header<'a>(headers: &'a HeaderList, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Reads the response head; returns its status, headers and the bytes read past it.
async fn read_head(tcp: &mut TcpStream) -> anyhow::Result<(u16, HeaderList, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            bail!("HTTP response head over 64 KiB");
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(CONNECT_TIMEOUT, tcp.read(&mut chunk))
            .await
            .context("no HTTP response within 10s")??;
        if n == 0 {
            bail!(
                "connection closed before an HTTP response (got {:?})",
                String::from_utf8_lossy(&buf)
            );
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let leftover = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok((status, headers, leftover))
}

/// The body of an error response (Content-Length, else until close; 2 s at most).
async fn read_body(tcp: &mut TcpStream, headers: &HeaderList, mut body: Vec<u8>) -> String {
    let want = header(headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while want.is_none_or(|w| body.len() < w) {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => body.extend_from_slice(&chunk[..n]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
