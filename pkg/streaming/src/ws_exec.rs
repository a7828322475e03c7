//! Exec and attach over WebSocket (kubelet's `remotecommand/websocket.go`).
//!
//! Channels 0 stdin, 1 stdout, 2 stderr, 3 error (the final status), 4 resize. Like kubelet, the
//! server first sends an empty message on the lowest channel it writes, so the client knows the
//! session is up; the status is JSON with `v4.*` and `v5.*`, text before. Only `v5` lets the
//! client close stdin (`[255, 0]`); with older protocols stdin ends with the connection.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;

use crate::backend::Backend;
use crate::negotiate::Version;
use crate::remotecommand::{self, ClientStreams, Target};
use crate::status::StatusFormat;
use crate::ws::{ChannelSet, Codec};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// Runs one exec/attach session on an accepted WebSocket connection.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    protocol: Option<&'static str>,
    backend: Arc<dyn Backend>,
    target: Target,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let version = protocol.map_or(Version::V1, Version::from_protocol);
    let codec = if protocol.is_some_and(|p| p.contains("base64")) {
        Codec::Base64
    } else {
        Codec::Binary
    };
    let format = if version >= Version::V4 {
        StatusFormat::Json
    } else {
        StatusFormat::Text
    };
    let (stdin, stdout, stderr) = target.streams();

    let mut channels = ChannelSet::new(codec, version == Version::V5);
    let mut first = channels.writer(if stdout {
        STDOUT
    } else if stderr {
        STDERR
    } else {
        ERROR
    });
    let client = ClientStreams {
        stdin: stdin.then(|| Box::pin(channels.reader(STDIN)) as _),
        stdout: stdout.then(|| Box::pin(channels.writer(STDOUT)) as _),
        stderr: stderr.then(|| Box::pin(channels.writer(STDERR)) as _),
        resize: Some(Box::pin(channels.reader(RESIZE))),
    };
    let mut error = channels.writer(ERROR);
    let pump = channels.pump(ws).run();
    tokio::pin!(pump);

    let session = async move {
        // "Connection established"; the pump is already running, so this cannot block long.
        let _ = first.send(Bytes::new()).await;
        drop(first);
        let outcome = remotecommand::run(&*backend, target, client).await;
        let status = outcome.encode(format);
        if !status.is_empty() {
            let _ = error.write_all(&status).await;
        }
        // Dropping the last writer makes the pump send the close frame.
    };
    tokio::select! {
        _ = &mut pump => {
            // The client went away (the pump cannot finish a close while `session` holds the
            // error writer): dropping `session` drops the process.
            return;
        }
        () = session => {}
    }
    pump.await;
}
