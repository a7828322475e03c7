//! Exec and attach over SPDY/3.1 (kubelet's `remotecommand/httpstream.go`).
//!
//! The client opens one stream per channel, named by its `streamtype` header: `error`, `stdin`,
//! `stdout`, `stderr`, `resize`. Each is answered at once; the session starts when the expected
//! set is there (error, plus the requested stdio, plus resize for a tty from v3 on; stderr never
//! with a tty), or gives up after the stream creation timeout. At the end the status goes on the
//! error stream (JSON from v4, text before), every stream we write is finished, and GOAWAY is
//! sent last: spdystream stops reading when it sees GOAWAY, so it must follow the data.

use std::sync::Arc;
use std::time::Duration;

use berth_spdy::{Headers, RecvStream, RstStatus, SendStream, Session, SessionConfig, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::backend::Backend;
use crate::negotiate::Version;
use crate::remotecommand::{self, ClientStreams, Target};
use crate::status::StatusFormat;

/// How long to let the client read the end of the session before the connection is cut.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(10);

fn config() -> SessionConfig {
    SessionConfig {
        initial_window: 256 * 1024,
        // Five are needed; a few spare for clients that open extra ones.
        max_streams: 16,
        ..SessionConfig::default()
    }
}

const KINDS: [&str; 5] = ["error", "stdin", "stdout", "stderr", "resize"];

/// The streams of one session, by kind (index into `KINDS`).
#[derive(Default)]
struct Streams {
    slots: [Option<(RecvStream, SendStream)>; 5],
}

impl Streams {
    fn take(&mut self, kind: usize) -> Option<(RecvStream, SendStream)> {
        self.slots.get_mut(kind).and_then(Option::take)
    }
}

/// Runs one exec/attach session on an upgraded connection.
pub(crate) async fn serve<T>(
    io: T,
    protocol: &'static str,
    backend: Arc<dyn Backend>,
    target: Target,
    stream_creation_timeout: Duration,
) where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let version = Version::from_protocol(protocol);
    let (session, mut incoming) = Session::server(io, config());
    let (stdin, stdout, stderr) = target.streams();
    let resize = target.tty() && version >= Version::V3;
    let expected = [true, stdin, stdout, stderr, resize];

    let mut streams = Streams::default();
    let waited = tokio::time::timeout(
        stream_creation_timeout,
        receive(&mut incoming, &mut streams, &expected),
    )
    .await;
    match waited {
        Ok(true) => {}
        Ok(false) => return,
        Err(_) => {
            tracing::debug!(protocol, "timed out waiting for client to create streams");
            return;
        }
    }

    let Some((_, mut error)) = streams.take(0) else {
        return;
    };
    // What we never write, we still end only at the end (kubelet closes them with the
    // connection); what the client never writes, we do not read.
    let mut keep: Vec<SendStream> = Vec::new();
    let mut reader = |slot: Option<(RecvStream, SendStream)>| {
        slot.map(|(recv, send)| {
            keep.push(send);
            Box::pin(recv) as remotecommand::BoxRead
        })
    };
    let stdin_stream = reader(streams.take(1));
    let resize_stream = reader(streams.take(4));
    let writer = |slot: Option<(RecvStream, SendStream)>| {
        slot.map(|(_, send)| Box::pin(send) as remotecommand::BoxWrite)
    };
    let client = ClientStreams {
        stdin: stdin_stream.filter(|_| stdin),
        stdout: writer(streams.take(2)),
        stderr: writer(streams.take(3)),
        resize: resize_stream,
    };
    let format = if version >= Version::V4 {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };

    let work = async {
        let outcome = remotecommand::run(&*backend, target, client).await;
        let status = outcome.encode(format);
        if !status.is_empty() {
            let _ = error.send(&status).await;
        }
        let _ = error.finish().await;
        drop(keep);
        session.go_away();
        // Give the client the time to read what is queued; it closes the connection then.
        let _ = tokio::time::timeout(CLOSE_GRACE, session.closed()).await;
    };
    tokio::select! {
        () = work => {}
        // Client gone: dropping `work` drops the process.
        () = session.closed() => {}
        never = refuse_late(&mut incoming) => match never {},
    }
}

/// Answers streams until the expected ones are all there; false if the connection went away.
async fn receive(
    incoming: &mut mpsc::Receiver<Stream>,
    streams: &mut Streams,
    expected: &[bool; 5],
) -> bool {
    loop {
        let complete = expected
            .iter()
            .zip(streams.slots.iter())
            .all(|(want, got)| !want || got.is_some());
        if complete {
            return true;
        }
        let Some(stream) = incoming.recv().await else {
            return false;
        };
        let kind = stream.header("streamtype").unwrap_or("");
        let Some(index) = KINDS.iter().position(|k| *k == kind) else {
            tracing::debug!(kind, "unexpected stream type, ignoring it");
            // Accepted and dropped, as kubelet does: the client sees a reply, then FIN.
            drop(stream.split());
            continue;
        };
        if streams.slots[index].is_some() {
            tracing::debug!(kind, "duplicate stream, resetting it");
            stream.reset(RstStatus::ProtocolError);
            continue;
        }
        if stream.reply(Headers::new(), false).await.is_err() {
            continue;
        }
        streams.slots[index] = Some(stream.split());
    }
}

/// Refuses streams opened after the session started.
pub(crate) async fn refuse_late(incoming: &mut mpsc::Receiver<Stream>) -> std::convert::Infallible {
    loop {
        match incoming.recv().await {
            Some(stream) => stream.reset(RstStatus::RefusedStream),
            None => std::future::pending::<()>().await,
        }
    }
}
