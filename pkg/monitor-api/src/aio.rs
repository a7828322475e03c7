//! berthd's async client for the long-lived requests (feature `async`): exec, attach and
//! close_stdin, each on a connection of its own. Answers are read with recvmsg on the tokio socket
//! (`readable` + `try_io`), so descriptors arrive together with their frame and no tokio worker
//! ever blocks.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::UnixStream;

use crate::proto::{self, request, response};
use crate::stream::{AttachEvent, ExecRequest, ExecStarted, FrameReader};
use crate::{Exit, MonitorError, SOCKET, check_container_id, encode_frame};

/// How long connecting, and an answer that needs no runtime, may take: only a wedged monitor is
/// slower.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of the runtime timeout the monitor enforces itself, so its answer comes first.
const ANSWER_SLACK: Duration = Duration::from_secs(5);
/// The monitor's runtime timeout when the request gives none.
const DEFAULT_EXEC_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection to a monitor.
struct Channel {
    stream: UnixStream,
    reader: FrameReader,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Channel {
    async fn connect(dir: &Path) -> Result<Channel, MonitorError> {
        let socket = dir.join(SOCKET);
        let connecting = async {
            loop {
                match UnixStream::connect(&socket).await {
                    // A full listen backlog: the monitor is busy for a moment, not gone.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    other => return other,
                }
            }
        };
        let stream = match tokio::time::timeout(REQUEST_TIMEOUT, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e))
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(MonitorError::NotRunning(dir.to_path_buf()));
            }
            Ok(Err(e)) => {
                return Err(MonitorError::io(
                    format!("connecting to {}", socket.display()),
                    e,
                ));
            }
            Err(_) => {
                return Err(MonitorError::Timeout(format!(
                    "connecting to {}",
                    socket.display()
                )));
            }
        };
        Ok(Channel {
            stream,
            reader: FrameReader::default(),
        })
    }

    async fn request(&mut self, kind: request::Kind, what: &str) -> Result<(), MonitorError> {
        let frame = encode_frame(&proto::Request { kind: Some(kind) })
            .map_err(|e| MonitorError::io(what, e))?;
        match tokio::time::timeout(REQUEST_TIMEOUT, self.stream.write_all(&frame)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(MonitorError::io(what, e)),
            Err(_) => Err(MonitorError::Timeout(what.to_string())),
        }
    }

    /// The next answer and the descriptors that came with it; `limit` bounds the wait.
    async fn answer(
        &mut self,
        limit: Option<Duration>,
        what: &str,
    ) -> Result<(response::Kind, Vec<OwnedFd>), MonitorError> {
        let reading = self.read_frame(what);
        let (response, fds) = match limit {
            Some(limit) => tokio::time::timeout(limit, reading)
                .await
                .map_err(|_| MonitorError::Timeout(what.to_string()))??,
            None => reading.await?,
        };
        match response.kind {
            Some(kind) => Ok((kind, fds)),
            None => Err(MonitorError::Protocol(format!("{what}: empty response"))),
        }
    }

    async fn read_frame(
        &mut self,
        what: &str,
    ) -> Result<(proto::Response, Vec<OwnedFd>), MonitorError> {
        loop {
            if let Some(frame) = self.reader.next_frame()? {
                return Ok(frame);
            }
            self.stream
                .readable()
                .await
                .map_err(|e| MonitorError::io(what, e))?;
            let fd = self.stream.as_raw_fd();
            let reader = &mut self.reader;
            match self.stream.try_io(Interest::READABLE, || reader.recv(fd)) {
                Ok(0) => {
                    let how = if self.reader.has_partial() {
                        " in the middle of a frame"
                    } else {
                        ""
                    };
                    return Err(MonitorError::io(
                        format!("{what}: the monitor closed the connection{how}"),
                        io::Error::from(io::ErrorKind::UnexpectedEof),
                    ));
                }
                Ok(_) => {}
                // A spurious readiness: wait again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(MonitorError::io(what, e)),
            }
        }
    }
}

/// The running exec's connection. Dropping it closes the connection, and the monitor kills the
/// exec process.
#[derive(Debug)]
pub struct ExecWait {
    channel: Channel,
    container_id: String,
    pid: i32,
}

impl ExecWait {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for the exec process to exit.
    pub async fn wait(mut self) -> Result<Exit, MonitorError> {
        let what = format!("waiting for exec {} in {}", self.pid, self.container_id);
        match self.channel.answer(None, &what).await? {
            (response::Kind::Exit(e), _) => Ok(Exit::from(&e)),
            (other, _) => Err(reply_error(&self.container_id, &what, other)),
        }
    }
}

/// Runs a process in a running container (see [`ExecRequest`]); returns once it runs, with its
/// stdio, and the handle to wait for its exit (dropping that kills it).
pub async fn exec(dir: &Path, req: &ExecRequest) -> Result<(ExecStarted, ExecWait), MonitorError> {
    check_container_id(&req.container_id).map_err(MonitorError::Protocol)?;
    let what = format!("exec in container {}", req.container_id);
    let runtime_timeout = match req.timeout_ms {
        0 => DEFAULT_EXEC_TIMEOUT,
        ms => Duration::from_millis(ms),
    };
    let mut channel = Channel::connect(dir).await?;
    let msg = request::Kind::Exec(proto::Exec {
        container_id: req.container_id.clone(),
        runtime_path: req.runtime_path.clone(),
        runtime_args: req.runtime_args.clone(),
        process_json: req.process_json.clone(),
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
        timeout_ms: req.timeout_ms,
    });
    channel.request(msg, &what).await?;
    let limit = runtime_timeout.saturating_add(ANSWER_SLACK);
    match channel.answer(Some(limit), &what).await? {
        (response::Kind::ExecStarted(answer), fds) => {
            let started = ExecStarted::from_answer(&answer, fds)?;
            let wait = ExecWait {
                channel,
                container_id: req.container_id.clone(),
                pid: started.pid,
            };
            Ok((started, wait))
        }
        (response::Kind::Error(e), _) if !e.not_found && !e.not_running => {
            Err(MonitorError::Runtime(e.message.trim().to_string()))
        }
        (other, _) => Err(reply_error(&req.container_id, &what, other)),
    }
}

/// An attach connection: the container's output until it exits. Dropping it detaches.
#[derive(Debug)]
pub struct Attachment {
    /// A non-tty container's stdin (write end), if asked for and still open.
    pub stdin: Option<OwnedFd>,
    /// A tty container's pty master (non-blocking): write input to it and resize it with
    /// TIOCSWINSZ, but never read it (the output comes from [`Attachment::next`]).
    pub pty: Option<OwnedFd>,
    channel: Channel,
    container_id: String,
    exit: Option<Exit>,
}

impl Attachment {
    /// The next chunk of output, or the exit (repeated on later calls).
    pub async fn next(&mut self) -> Result<AttachEvent, MonitorError> {
        if let Some(exit) = &self.exit {
            return Ok(AttachEvent::Exit(exit.clone()));
        }
        let what = format!("attached to container {}", self.container_id);
        match self.channel.answer(None, &what).await? {
            (response::Kind::Output(output), _) => AttachEvent::from_output(output),
            (response::Kind::Exit(e), _) => {
                let exit = Exit::from(&e);
                self.exit = Some(exit.clone());
                Ok(AttachEvent::Exit(exit))
            }
            (other, _) => Err(reply_error(&self.container_id, &what, other)),
        }
    }
}

/// Attaches to a running container's output (and, with `stdin`, its stdin); see [`Attachment`].
pub async fn attach(
    dir: &Path,
    container_id: &str,
    stdin: bool,
) -> Result<Attachment, MonitorError> {
    let what = format!("attaching to container {container_id}");
    let mut channel = Channel::connect(dir).await?;
    let msg = request::Kind::Attach(proto::Attach {
        container_id: container_id.to_string(),
        stdin,
    });
    channel.request(msg, &what).await?;
    match channel.answer(Some(REQUEST_TIMEOUT), &what).await? {
        (response::Kind::Attached(answer), fds) => {
            let expected = usize::from(answer.pty || answer.stdin);
            if fds.len() != expected || (answer.pty && answer.stdin) {
                return Err(MonitorError::Protocol(format!(
                    "{what}: {} descriptors came with {answer:?}",
                    fds.len()
                )));
            }
            let fd = fds.into_iter().next();
            let (pty, stdin) = if answer.pty { (fd, None) } else { (None, fd) };
            Ok(Attachment {
                stdin,
                pty,
                channel,
                container_id: container_id.to_string(),
                exit: None,
            })
        }
        (other, _) => Err(reply_error(container_id, &what, other)),
    }
}

/// Closes the monitor's own stdin write end of the container (stdin_once). The container sees EOF
/// once no other write end (an attach's) is open. Nothing happens for a tty container.
pub async fn close_stdin(dir: &Path, container_id: &str) -> Result<(), MonitorError> {
    let what = format!("closing the stdin of container {container_id}");
    let mut channel = Channel::connect(dir).await?;
    let msg = request::Kind::CloseStdin(proto::CloseStdin {
        container_id: container_id.to_string(),
    });
    channel.request(msg, &what).await?;
    match channel.answer(Some(REQUEST_TIMEOUT), &what).await? {
        (response::Kind::Done(_), _) => Ok(()),
        (other, _) => Err(reply_error(container_id, &what, other)),
    }
}

/// The error for an answer other than the one expected.
fn reply_error(container_id: &str, what: &str, reply: response::Kind) -> MonitorError {
    match reply {
        response::Kind::Error(e) if e.not_found => {
            MonitorError::UnknownContainer(container_id.to_string())
        }
        response::Kind::Error(e) if e.not_running => MonitorError::FailedPrecondition(e.message),
        response::Kind::Error(e) => {
            MonitorError::Protocol(format!("{what}: the monitor answered: {}", e.message))
        }
        other => MonitorError::Protocol(format!("{what}: unexpected response {other:?}")),
    }
}
