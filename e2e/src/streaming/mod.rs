//! A client for the Kubernetes streaming protocols that CRI Exec, Attach and PortForward URLs
//! speak, written independently of Berth's server (`pkg/streaming`) so that tests and benchmarks
//! check the server against the protocols rather than against itself. It was validated against
//! containerd 1.6's CRI streaming server (Kubernetes' own code): see `e2e/tests/streaming_containerd.rs`.
//!
//! - SPDY/3.1 over `Upgrade: SPDY/3.1` ([`spdy`]): remote command protocols `v4.channel.k8s.io`
//!   (Status JSON on the error stream), `v3` (adds the resize stream), `v2` and `channel.k8s.io`
//!   (text errors), and `portforward.k8s.io` ([`SpdyPortForwarder`]).
//! - WebSocket ([`ws`]): `v5.channel.k8s.io` (stdin close), `v4.channel.k8s.io`,
//!   `v4.base64.channel.k8s.io`, `channel.k8s.io`, and port-forward ([`port_forward_ws`]).
//!
//! One-shot: [`exec`]. Interactive (attach, or exec with stdin): [`ExecSession`].
//!
//! [`go_spdy`] is a second SPDY client, on the Go library kubectl and kubelet use (spdystream).

pub mod berth;
pub mod cri;
pub mod go_spdy;
mod portforward;
mod remote;
pub mod spdy;
pub mod stdin_eof;
pub mod ws;

use std::time::Duration;

pub use portforward::{PortForwardStream, SpdyPortForwarder, http_get, port_forward_spdy};
pub use remote::ExecSession;
pub use ws::port_forward_ws;

/// Which transport and protocol version to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Spdy(SpdyVersion),
    Ws(WsVersion),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpdyVersion {
    /// `v4.channel.k8s.io`: Status JSON on the error stream.
    V4,
    /// `v3.channel.k8s.io`: the resize stream.
    V3,
    /// `v2.channel.k8s.io`: text errors.
    V2,
    /// `channel.k8s.io`.
    V1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WsVersion {
    /// `v5.channel.k8s.io`: v4 plus closing stdin (`[255, 0]`).
    V5,
    /// `v4.channel.k8s.io`: binary frames, channel byte first; Status JSON on channel 3.
    V4,
    /// `v4.base64.channel.k8s.io`: text frames, `'0' + channel` then base64.
    V4Base64,
    /// `channel.k8s.io`: binary frames, text errors.
    V1,
}

impl Transport {
    /// The protocol name offered (`X-Stream-Protocol-Version` or `Sec-WebSocket-Protocol`).
    pub fn protocol(self) -> &'static str {
        match self {
            Transport::Spdy(SpdyVersion::V4) => "v4.channel.k8s.io",
            Transport::Spdy(SpdyVersion::V3) => "v3.channel.k8s.io",
            Transport::Spdy(SpdyVersion::V2) => "v2.channel.k8s.io",
            Transport::Spdy(SpdyVersion::V1) => "channel.k8s.io",
            Transport::Ws(WsVersion::V5) => "v5.channel.k8s.io",
            Transport::Ws(WsVersion::V4) => "v4.channel.k8s.io",
            Transport::Ws(WsVersion::V4Base64) => "v4.base64.channel.k8s.io",
            Transport::Ws(WsVersion::V1) => "channel.k8s.io",
        }
    }

    /// Whether the error stream carries a Status JSON (else plain text).
    fn status_json(self) -> bool {
        matches!(
            self,
            Transport::Spdy(SpdyVersion::V4)
                | Transport::Ws(WsVersion::V5 | WsVersion::V4 | WsVersion::V4Base64)
        )
    }

    /// Whether a tty session has a resize stream or channel.
    fn can_resize(self) -> bool {
        !matches!(
            self,
            Transport::Spdy(SpdyVersion::V2 | SpdyVersion::V1) | Transport::Ws(WsVersion::V1)
        )
    }

    /// Whether stdin can be closed without closing the connection.
    pub fn can_close_stdin(self) -> bool {
        matches!(self, Transport::Spdy(_) | Transport::Ws(WsVersion::V5))
    }

    /// The transports tests iterate over.
    pub const ALL: [Transport; 8] = [
        Transport::Spdy(SpdyVersion::V4),
        Transport::Spdy(SpdyVersion::V3),
        Transport::Spdy(SpdyVersion::V2),
        Transport::Spdy(SpdyVersion::V1),
        Transport::Ws(WsVersion::V5),
        Transport::Ws(WsVersion::V4),
        Transport::Ws(WsVersion::V4Base64),
        Transport::Ws(WsVersion::V1),
    ];
}

/// The streams of a session. They must match the CRI request the URL came from (its `stdin`,
/// `stdout`, `stderr`, `tty`): the server waits for exactly those streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            stdin: false,
            stdout: true,
            stderr: true,
            tty: false,
        }
    }
}

/// A one-shot exec (see [`exec`]).
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Sent, then stdin is closed where the protocol can (SPDY, WebSocket v5). `Some` needs the CRI
    /// request's `stdin: true`.
    pub stdin: Option<Vec<u8>>,
    pub stdout: bool,
    /// Ignored with a tty (its output is all on stdout).
    pub stderr: bool,
    pub tty: bool,
    /// Terminal sizes (width, height) sent first, in order.
    pub resize: Vec<(u16, u16)>,
    /// For the whole session.
    pub timeout: Duration,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            stdin: None,
            stdout: true,
            stderr: true,
            tty: false,
            resize: Vec::new(),
            timeout: Duration::from_secs(30),
        }
    }
}

impl ExecOptions {
    pub fn streams(&self) -> StreamOptions {
        StreamOptions {
            stdin: self.stdin.is_some(),
            stdout: self.stdout,
            stderr: self.stderr && !self.tty,
            tty: self.tty,
        }
    }
}

/// How a remote command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecStatus {
    /// Success (0), or a Status with reason `NonZeroExitCode` and its `ExitCode` cause.
    Exited(i32),
    /// Any other Status (its message), or the text of a v1-v3 error stream.
    Error(String),
}

/// What a finished session gave.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExecStatus,
    /// The error stream's bytes as received (the Status JSON, or v1-v3 text; may be empty).
    pub raw_status: Vec<u8>,
    /// The protocol the server chose.
    pub protocol: String,
}

impl ExecOutput {
    pub fn exit_code(&self) -> Option<i32> {
        match self.status {
            ExecStatus::Exited(code) => Some(code),
            ExecStatus::Error(_) => None,
        }
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// For failure messages: the status and the beginning of each stream.
    pub fn summary(&self) -> String {
        format!(
            "{:?} via {} (error stream {}), stdout {}, stderr {}",
            self.status,
            self.protocol,
            remote::preview(&self.raw_status),
            remote::preview(&self.stdout),
            remote::preview(&self.stderr)
        )
    }
}

/// A non-101 answer to an upgrade request (e.g. 404 for an unknown, expired or used token).
#[derive(Debug, Clone)]
pub struct HttpError {
    pub status: u16,
    pub body: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP {} instead of an upgrade: {:?}",
            self.status, self.body
        )
    }
}

impl std::error::Error for HttpError {}

/// The HTTP status of a failed upgrade, if that is why `err` happened.
pub fn http_status(err: &anyhow::Error) -> Option<u16> {
    err.downcast_ref::<HttpError>().map(|e| e.status)
}

/// Runs a remote command to its end: connects, sends the sizes, then stdin (and closes it), and
/// collects stdout, stderr and the status.
pub async fn exec(
    url: &str,
    transport: Transport,
    options: ExecOptions,
) -> anyhow::Result<ExecOutput> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let mut session = tokio::time::timeout_at(
        deadline,
        ExecSession::open(url, transport, options.streams()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {url} timed out"))??;
    for (width, height) in &options.resize {
        session.resize(*width, *height).await?;
    }
    if let Some(stdin) = &options.stdin {
        session.send_stdin(stdin).await?;
        if transport.can_close_stdin() {
            session.close_stdin().await?;
        }
    }
    session
        .wait(deadline.saturating_duration_since(tokio::time::Instant::now()))
        .await
}

/// Decodes the error stream: a `metav1.Status` for v4/v5, text for older protocols.
pub fn decode_status(raw: &[u8], json: bool) -> ExecStatus {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return ExecStatus::Exited(0);
    }
    let text = String::from_utf8_lossy(raw).into_owned();
    if !json {
        return ExecStatus::Error(text);
    }
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(raw) else {
        return ExecStatus::Error(format!("error stream is not a Status: {text}"));
    };
    if status["status"] == "Success" {
        return ExecStatus::Exited(0);
    }
    if status["reason"] == "NonZeroExitCode"
        && let Some(code) = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["reason"] == "ExitCode")
            .and_then(|c| c["message"].as_str()?.parse().ok())
    {
        return ExecStatus::Exited(code);
    }
    ExecStatus::Error(
        status["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(text),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_statuses() {
        assert_eq!(decode_status(b"", true), ExecStatus::Exited(0));
        assert_eq!(
            decode_status(br#"{"metadata":{},"status":"Success"}"#, true),
            ExecStatus::Exited(0)
        );
        let failed = br#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
        assert_eq!(decode_status(failed, true), ExecStatus::Exited(3));
        assert_eq!(
            decode_status(br#"{"status":"Failure","message":"boom"}"#, true),
            ExecStatus::Error("boom".into())
        );
        assert_eq!(
            decode_status(b"exit status 3", false),
            ExecStatus::Error("exit status 3".into())
        );
    }
}
