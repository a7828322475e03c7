//! Remote command sessions (exec, attach) over either transport.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::spdy::{self, SendStream, SessionGuard};
use super::ws::{self, WsControl};
use super::{ExecOutput, StreamOptions, Transport, decode_status};

/// Output as it arrives, from either transport.
pub(crate) enum Event {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The whole error stream (SPDY) or one error channel message (WebSocket).
    Status(Vec<u8>),
    /// The transport failed (the clean end is the channel closing).
    Failed(String),
}

enum Control {
    Spdy {
        stdin: Option<SendStream>,
        resize: Option<SendStream>,
        _session: spdy::Session,
        _guard: SessionGuard,
    },
    Ws(WsControl),
}

#[derive(Debug, Clone, Copy)]
enum Output {
    Any = 0,
    Stdout = 1,
    Stderr = 2,
}

/// An exec or attach session: send stdin and sizes while reading output; then [`Self::wait`].
/// Dropping it (or [`Self::disconnect`]) closes the connection at once.
pub struct ExecSession {
    transport: Transport,
    protocol: String,
    events: mpsc::UnboundedReceiver<Event>,
    control: Control,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// stdout and stderr interleaved as received.
    combined: Vec<u8>,
    /// Where the next `read_until` looks, in `combined`, `stdout` and `stderr`.
    cursors: [usize; 3],
    status: Vec<u8>,
    failure: Option<String>,
    ended: bool,
}

impl ExecSession {
    /// Connects and creates the streams `options` name (which must match the CRI request).
    pub async fn open(
        url: &str,
        transport: Transport,
        options: StreamOptions,
    ) -> anyhow::Result<ExecSession> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (control, protocol) = match transport {
            Transport::Spdy(_) => open_spdy(url, transport, options, events_tx).await?,
            Transport::Ws(version) => {
                let control = ws::open_exec(url, version, events_tx).await?;
                let protocol = control.protocol.clone();
                (Control::Ws(control), protocol)
            }
        };
        Ok(ExecSession {
            transport,
            protocol,
            events,
            control,
            stdout: Vec::new(),
            stderr: Vec::new(),
            combined: Vec::new(),
            cursors: [0; 3],
            status: Vec::new(),
            failure: None,
            ended: false,
        })
    }

    /// The protocol the server chose.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    pub async fn send_stdin(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match &self.control {
            Control::Spdy { stdin, .. } => {
                stdin
                    .as_ref()
                    .context("the session has no stdin stream")?
                    .send(data)
                    .await
            }
            Control::Ws(ws) => ws.send(0, data),
        }
    }

    /// Closes stdin: FIN on the SPDY stream, `[255, 0]` on WebSocket v5 (others cannot).
    pub async fn close_stdin(&mut self) -> anyhow::Result<()> {
        match &self.control {
            Control::Spdy { stdin, .. } => {
                stdin
                    .as_ref()
                    .context("the session has no stdin stream")?
                    .finish()
                    .await
            }
            Control::Ws(ws) => ws.close_channel(0),
        }
    }

    /// Sends a terminal size (`{"Width":..,"Height":..}`) on the resize stream or channel 4.
    pub async fn resize(&mut self, width: u16, height: u16) -> anyhow::Result<()> {
        if !self.transport.can_resize() {
            bail!("{} has no resize stream", self.transport.protocol());
        }
        let size = serde_json::json!({"Width": width, "Height": height}).to_string();
        match &self.control {
            Control::Spdy { resize, .. } => {
                resize
                    .as_ref()
                    .context("the session has no resize stream (tty: false?)")?
                    .send(format!("{size}\n").as_bytes())
                    .await
            }
            Control::Ws(ws) => ws.send(4, size.as_bytes()),
        }
    }

    /// Reads output (stdout and stderr) until `marker` appears after the previous match; returns
    /// the output from there up to and including the marker.
    pub async fn read_until(&mut self, marker: &str, timeout: Duration) -> anyhow::Result<String> {
        self.read_until_in(Output::Any, marker, timeout).await
    }

    /// [`Self::read_until`] on stdout alone (matches on it are tracked apart from the others).
    pub async fn read_stdout_until(
        &mut self,
        marker: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        self.read_until_in(Output::Stdout, marker, timeout).await
    }

    /// [`Self::read_until`] on stderr alone.
    pub async fn read_stderr_until(
        &mut self,
        marker: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        self.read_until_in(Output::Stderr, marker, timeout).await
    }

    async fn read_until_in(
        &mut self,
        which: Output,
        marker: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let slot = which as usize;
        loop {
            let buf = match which {
                Output::Any => &self.combined,
                Output::Stdout => &self.stdout,
                Output::Stderr => &self.stderr,
            };
            let cursor = self.cursors[slot];
            if let Some(i) = find(&buf[cursor..], marker.as_bytes()) {
                let end = cursor + i + marker.len();
                let text = String::from_utf8_lossy(&buf[cursor..end]).into_owned();
                self.cursors[slot] = end;
                return Ok(text);
            }
            let rest = preview(&buf[cursor..]);
            if self.ended {
                bail!(
                    "the session ended before {marker:?} appeared on {which:?}; output after the last match: {rest}{}",
                    self.failure_note()
                );
            }
            if !self.next_event(deadline).await {
                bail!(
                    "{marker:?} did not appear on {which:?} within {timeout:?}; output after the last match: {rest}"
                );
            }
        }
    }

    /// All stdout and stderr so far, interleaved.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.combined).into_owned()
    }

    /// Waits for the end of the session (the server closes it once the process exits, or the
    /// container for attach) and decodes its status.
    pub async fn wait(mut self, timeout: Duration) -> anyhow::Result<ExecOutput> {
        let deadline = Instant::now() + timeout;
        while !self.ended {
            if !self.next_event(deadline).await {
                bail!(
                    "the session did not end within {timeout:?}; output: {}, error stream: {}",
                    preview(&self.combined),
                    preview(&self.status)
                );
            }
        }
        if let Some(failure) = &self.failure
            && self.status.is_empty()
        {
            return Err(anyhow!(
                "the connection failed before a status arrived: {failure}; output: {}",
                preview(&self.combined)
            ));
        }
        Ok(ExecOutput {
            status: decode_status(&self.status, self.transport.status_json()),
            stdout: std::mem::take(&mut self.stdout),
            stderr: std::mem::take(&mut self.stderr),
            raw_status: std::mem::take(&mut self.status),
            protocol: self.protocol.clone(),
        })
    }

    /// Drops the connection without closing anything properly, as a crashed client would (the
    /// transport's tasks are aborted, which closes the socket).
    pub fn disconnect(self) {
        drop(self);
    }

    fn failure_note(&self) -> String {
        self.failure
            .as_ref()
            .map(|f| format!(" (transport: {f})"))
            .unwrap_or_default()
    }

    /// Handles one event; `false` on timeout.
    async fn next_event(&mut self, deadline: Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.events.recv()).await {
            Err(_) => false,
            Ok(None) => {
                self.ended = true;
                true
            }
            Ok(Some(event)) => {
                match event {
                    Event::Stdout(data) => {
                        self.stdout.extend_from_slice(&data);
                        self.combined.extend_from_slice(&data);
                    }
                    Event::Stderr(data) => {
                        self.stderr.extend_from_slice(&data);
                        self.combined.extend_from_slice(&data);
                    }
                    Event::Status(data) => self.status.extend_from_slice(&data),
                    Event::Failed(why) => self.failure = Some(why),
                }
                true
            }
        }
    }
}

/// At most 300 bytes of `bytes` for a message (and how many there were).
pub(crate) fn preview(bytes: &[u8]) -> String {
    if bytes.len() <= 300 {
        return format!("{:?}", String::from_utf8_lossy(bytes));
    }
    format!(
        "{:?}... ({} bytes)",
        String::from_utf8_lossy(&bytes[..300]),
        bytes.len()
    )
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Creates the streams as client-go does: error first, then stdin, stdout, stderr (not with a
/// tty), resize (tty, v3 and later); each waits for its SYN_REPLY.
async fn open_spdy(
    url: &str,
    transport: Transport,
    options: StreamOptions,
    events: mpsc::UnboundedSender<Event>,
) -> anyhow::Result<(Control, String)> {
    let offered = transport.protocol();
    let up = spdy::connect(url, &[offered]).await?;
    // A server without versioned protocols answers none: that is channel.k8s.io.
    let protocol = if up.protocol.is_empty() && offered == "channel.k8s.io" {
        offered.to_string()
    } else {
        up.protocol.clone()
    };
    if protocol != offered {
        bail!("offered {offered}, the server chose {protocol:?}");
    }
    let session = up.session.clone();
    let open = |kind: &'static str| {
        let session = session.clone();
        async move {
            session
                .open(&[("streamType", kind)])
                .await
                .with_context(|| format!("creating the {kind} stream"))
        }
    };
    let (_, mut error) = open("error").await?;
    let stdin = if options.stdin {
        Some(open("stdin").await?.0)
    } else {
        None
    };
    let stdout = if options.stdout {
        Some(open("stdout").await?.1)
    } else {
        None
    };
    let stderr = if options.stderr && !options.tty {
        Some(open("stderr").await?.1)
    } else {
        None
    };
    let resize = if options.tty && transport.can_resize() {
        Some(open("resize").await?.0)
    } else {
        None
    };
    for (stream, wrap) in [
        (stdout, Event::Stdout as fn(Vec<u8>) -> Event),
        (stderr, Event::Stderr),
    ] {
        let Some(mut stream) = stream else { continue };
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(data) = stream.recv().await {
                let _ = events.send(wrap(data));
            }
            if let Some(why) = stream.end_reason().filter(|w| !w.starts_with("reset")) {
                let _ = events.send(Event::Failed(why));
            }
        });
    }
    tokio::spawn(async move {
        let status = error.read_all().await;
        let _ = events.send(Event::Status(status));
        if let Some(why) = error.end_reason().filter(|w| !w.starts_with("reset")) {
            let _ = events.send(Event::Failed(why));
        }
    });
    Ok((
        Control::Spdy {
            stdin,
            resize,
            _session: up.session,
            _guard: up.guard,
        },
        protocol,
    ))
}
