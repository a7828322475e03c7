//! Exec and attach, independent of the transport.
//!
//! Both SPDY and WebSocket sessions end up with the same four client-side byte streams (stdin and
//! resize from the client, stdout and stderr to it); this module starts the [`Process`] and moves
//! bytes until it is over, then says how it ended so the transport can write the status. The
//! order is kubelet's and containerd's: the session ends when the process has exited *and* its
//! output is drained; client stdin EOF closes the process's stdin; resize events are JSON
//! `{"Width":W,"Height":H}` objects, a stream of them.

use std::pin::Pin;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::backend::{AttachTarget, Backend, ExecTarget, Process};
use crate::status::Outcome;

pub(crate) type BoxRead = Pin<Box<dyn AsyncRead + Send>>;
pub(crate) type BoxWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// Copy buffer size; also the largest chunk forwarded at once.
pub(crate) const CHUNK: usize = 32 * 1024;

/// The client's side of a session.
#[derive(Default)]
pub(crate) struct ClientStreams {
    pub stdin: Option<BoxRead>,
    pub stdout: Option<BoxWrite>,
    pub stderr: Option<BoxWrite>,
    pub resize: Option<BoxRead>,
}

/// What a remote-command URL stands for.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Exec(ExecTarget),
    Attach(AttachTarget),
}

impl Target {
    pub(crate) fn tty(&self) -> bool {
        match self {
            Target::Exec(t) => t.tty,
            Target::Attach(t) => t.tty,
        }
    }

    /// (stdin, stdout, stderr) as requested; stderr never with a tty (kubelet drops it).
    pub(crate) fn streams(&self) -> (bool, bool, bool) {
        let (tty, i, o, e) = match self {
            Target::Exec(t) => (t.tty, t.stdin, t.stdout, t.stderr),
            Target::Attach(t) => (t.tty, t.stdin, t.stdout, t.stderr),
        };
        (i, o, e && !tty)
    }
}

/// Starts the exec or attach and runs it to its end. Dropping the returned future at any point
/// drops the process (the backend kills the exec or detaches).
pub(crate) async fn run(backend: &dyn Backend, target: Target, client: ClientStreams) -> Outcome {
    let (started, cmd) = match target {
        Target::Exec(t) => {
            let cmd = t.cmd.clone();
            (backend.exec(t).await, Some(cmd))
        }
        Target::Attach(t) => (backend.attach(t).await, None),
    };
    let process = match started {
        Ok(p) => p,
        Err(e) => return failure(cmd.is_some(), &e),
    };
    let Process {
        stdin,
        stdout,
        stderr,
        resize,
        exit,
    } = process;

    let finished = async {
        let (exit, (), ()) = tokio::join!(
            exit,
            output(stdout, client.stdout),
            output(stderr, client.stderr)
        );
        exit
    };
    let side = async {
        tokio::join!(input(client.stdin, stdin), resizes(client.resize, resize));
        std::future::pending::<std::convert::Infallible>().await
    };
    let exit = tokio::select! {
        exit = finished => exit,
        never = side => match never {},
    };
    match (exit, cmd) {
        (Ok(0), _) | (Ok(_), None) => Outcome::Success,
        (Ok(code), Some(cmd)) => Outcome::ExitCode { code, cmd },
        (Err(e), cmd) => failure(cmd.is_some(), &e),
    }
}

fn failure(exec: bool, e: &str) -> Outcome {
    if exec {
        Outcome::Internal(format!("error executing command in container: {e}"))
    } else {
        Outcome::Internal(format!("error attaching to container: {e}"))
    }
}

/// Process output to the client until EOF, then end the client's stream. Without a client
/// stream, or once the client stopped taking data, the output is drained so the process never
/// blocks on a full pipe.
async fn output(from: Option<BoxRead>, to: Option<BoxWrite>) {
    match (from, to) {
        (Some(from), Some(mut to)) => {
            let mut from = BufReader::with_capacity(CHUNK, from);
            match tokio::io::copy_buf(&mut from, &mut to).await {
                Ok(_) => {
                    let _ = to.shutdown().await;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "streaming output to the client stopped");
                    let _ = tokio::io::copy_buf(&mut from, &mut tokio::io::sink()).await;
                }
            }
        }
        (Some(mut from), None) => {
            let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
        }
        (None, Some(mut to)) => {
            let _ = to.shutdown().await;
        }
        (None, None) => {}
    }
}

/// Client stdin to the process until the client closes it; then close the process's stdin.
async fn input(from: Option<BoxRead>, to: Option<Pin<Box<dyn AsyncWrite + Send>>>) {
    match (from, to) {
        (Some(mut from), Some(mut to)) => {
            match tokio::io::copy(&mut from, &mut to).await {
                Ok(bytes) => tracing::debug!(bytes, "client stdin ended"),
                Err(e) => tracing::debug!(error = %e, "streaming stdin stopped"),
            }
            let _ = to.shutdown().await;
        }
        (Some(mut from), None) => {
            let _ = tokio::io::copy(&mut from, &mut tokio::io::sink()).await;
        }
        (None, Some(mut to)) => {
            tracing::debug!("no client stdin stream: closing the process's stdin");
            let _ = to.shutdown().await;
        }
        (None, None) => {}
    }
}

/// Resize events to the process's terminal.
async fn resizes(from: Option<BoxRead>, resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>) {
    let Some(mut from) = from else { return };
    let mut decoder = ResizeDecoder::default();
    let mut buf = vec![0u8; 4096];
    let mut broken = false;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if broken {
            continue;
        }
        match decoder.push(&buf[..n]) {
            Ok(sizes) => {
                if let Some(resize) = &resize {
                    for (width, height) in sizes {
                        resize(width, height);
                    }
                }
            }
            Err(e) => {
                // kubelet stops handling resizes at the first bad event; so do we, but keep
                // reading so the client is never blocked on this stream.
                tracing::debug!(error = %e, "bad terminal resize event, ignoring further resizes");
                broken = true;
            }
        }
    }
}

#[derive(Deserialize)]
struct TerminalSize {
    #[serde(rename = "Width", alias = "width", default)]
    width: u16,
    #[serde(rename = "Height", alias = "height", default)]
    height: u16,
}

/// Splits a byte stream into JSON terminal sizes, across chunk boundaries.
#[derive(Default)]
pub(crate) struct ResizeDecoder {
    pending: Vec<u8>,
}

/// An incomplete event larger than this is refused (a real one is ~30 bytes).
const MAX_RESIZE_EVENT: usize = 4096;

impl ResizeDecoder {
    pub(crate) fn push(&mut self, data: &[u8]) -> Result<Vec<(u16, u16)>, String> {
        self.pending.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut stream =
            serde_json::Deserializer::from_slice(&self.pending).into_iter::<TerminalSize>();
        let consumed = loop {
            match stream.next() {
                Some(Ok(size)) => sizes.push((size.width, size.height)),
                None => break stream.byte_offset(),
                Some(Err(e)) if e.is_eof() => break stream.byte_offset(),
                Some(Err(e)) => return Err(e.to_string()),
            }
        };
        self.pending.drain(..consumed);
        if self.pending.len() > MAX_RESIZE_EVENT {
            return Err("terminal resize event too large".to_string());
        }
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_events_across_chunks() {
        let mut d = ResizeDecoder::default();
        assert_eq!(d.push(br#"{"Width":80,"Hei"#).unwrap(), vec![]);
        assert_eq!(
            d.push(br#"ght":24}{"Width":100,"Height":50}"#).unwrap(),
            vec![(80, 24), (100, 50)]
        );
        assert_eq!(
            d.push(b"\n{\"width\":1,\"height\":2}\n").unwrap(),
            vec![(1, 2)]
        );
        assert!(d.push(b"]").is_err());
    }

    #[test]
    fn oversized_or_out_of_range_events_fail() {
        let mut d = ResizeDecoder::default();
        assert!(d.push(br#"{"Width":70000,"Height":1}"#).is_err());
        let mut d = ResizeDecoder::default();
        let mut big = b"{\"Width\":\"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 5000));
        assert!(d.push(&big).is_err());
    }
}
