//! ExecSync, Exec, Attach and PortForward: request checks and translation, and the streaming
//! server's [`Backend`] on top of the container and sandbox services.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use berth_container::{ContainerError, ContainerService, ContainerState, ExecOptions, Pty};
use berth_cri_api::v1 as cri;
use berth_monitor_api::{AttachEvent, MonitorError};
use berth_sandbox::{SandboxError, SandboxService, SandboxState};
use berth_streaming::{AttachTarget, Backend, BoxFuture, ExecTarget, Process, StreamingServer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::error::CriError;

/// What the streaming server runs sessions with.
pub struct StreamingBackend {
    containers: ContainerService,
    sandboxes: SandboxService,
}

impl StreamingBackend {
    pub fn new(containers: ContainerService, sandboxes: SandboxService) -> StreamingBackend {
        StreamingBackend {
            containers,
            sandboxes,
        }
    }
}

pub(crate) async fn exec_sync(
    containers: &ContainerService,
    req: cri::ExecSyncRequest,
    limit: usize,
) -> Result<cri::ExecSyncResponse, CriError> {
    require_container_id(&req.container_id)?;
    require_command(&req.cmd)?;
    let timeout = (req.timeout > 0).then(|| Duration::from_secs(req.timeout as u64));
    let output = containers
        .exec_sync(&req.container_id, req.cmd, timeout, limit)
        .await?;
    Ok(cri::ExecSyncResponse {
        stdout: output.stdout,
        stderr: output.stderr,
        exit_code: output.exit_code,
    })
}

pub(crate) fn exec_url(
    containers: &ContainerService,
    server: &StreamingServer,
    req: cri::ExecRequest,
) -> Result<cri::ExecResponse, CriError> {
    require_container_id(&req.container_id)?;
    require_command(&req.cmd)?;
    require_streams(req.stdin, req.stdout, req.stderr)?;
    if req.tty && req.stderr {
        return Err(CriError::InvalidArgument(
            "tty and stderr cannot both be true: a terminal has one output".into(),
        ));
    }
    let record = containers.get(&req.container_id)?;
    require_running(&record.id, record.state())?;
    let url = server.exec_url(ExecTarget {
        container_id: record.id,
        cmd: req.cmd,
        tty: req.tty,
        stdin: req.stdin,
        stdout: req.stdout,
        stderr: req.stderr,
    })?;
    Ok(cri::ExecResponse { url })
}

pub(crate) fn attach_url(
    containers: &ContainerService,
    server: &StreamingServer,
    req: cri::AttachRequest,
) -> Result<cri::AttachResponse, CriError> {
    require_container_id(&req.container_id)?;
    require_streams(req.stdin, req.stdout, req.stderr)?;
    let record = containers.get(&req.container_id)?;
    require_running(&record.id, record.state())?;
    // The container's terminal setting decides, whatever the request says: a tty container
    // has one output stream.
    let tty = record.config.tty;
    let url = server.attach_url(AttachTarget {
        container_id: record.id,
        tty,
        stdin: req.stdin && record.config.stdin,
        stdout: req.stdout,
        stderr: req.stderr && !tty,
    })?;
    Ok(cri::AttachResponse { url })
}

pub(crate) fn port_forward_url(
    sandboxes: &SandboxService,
    server: &StreamingServer,
    req: cri::PortForwardRequest,
) -> Result<cri::PortForwardResponse, CriError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(CriError::InvalidArgument(
            "pod_sandbox_id is required".into(),
        ));
    }
    if let Some(port) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
        return Err(CriError::InvalidArgument(format!(
            "port {port} is not a TCP port (1-65535)"
        )));
    }
    let record = sandboxes.get(&req.pod_sandbox_id)?;
    if record.state() != SandboxState::Ready {
        return Err(CriError::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            record.id
        )));
    }
    let url = server.port_forward_url(record.id)?;
    Ok(cri::PortForwardResponse { url })
}

fn require_container_id(id: &str) -> Result<(), CriError> {
    if id.is_empty() {
        return Err(CriError::InvalidArgument("container_id is required".into()));
    }
    Ok(())
}

fn require_command(cmd: &[String]) -> Result<(), CriError> {
    if cmd.first().is_none_or(|c| c.is_empty()) {
        return Err(CriError::InvalidArgument("cmd is required".into()));
    }
    Ok(())
}

fn require_streams(stdin: bool, stdout: bool, stderr: bool) -> Result<(), CriError> {
    if !(stdin || stdout || stderr) {
        return Err(CriError::InvalidArgument(
            "one of stdin, stdout or stderr must be requested".into(),
        ));
    }
    Ok(())
}

fn require_running(id: &str, state: ContainerState) -> Result<(), CriError> {
    if state != ContainerState::Running {
        return Err(CriError::FailedPrecondition(format!(
            "container {id} is {state:?}, not running"
        )));
    }
    Ok(())
}

type Reader = Pin<Box<dyn AsyncRead + Send>>;
type Writer = Pin<Box<dyn AsyncWrite + Send>>;

fn reader(r: impl AsyncRead + Send + 'static) -> Reader {
    Box::pin(r)
}

fn writer(w: impl AsyncWrite + Send + 'static) -> Writer {
    Box::pin(w)
}

fn resizer(pty: Pty) -> Box<dyn Fn(u16, u16) + Send + Sync> {
    Box::new(move |width, height| {
        if let Err(e) = pty.resize(width, height) {
            tracing::debug!(error = %e, "resizing a terminal");
        }
    })
}

/// Why a session could not start or ended badly. The streaming server hands it to the client as
/// text (its [`Backend`] contract), so it is rendered once, where it leaves for the server.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    /// Another descriptor for the container's terminal (for output or resizing).
    #[error("cloning the terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// The task copying the container's output panicked or was cancelled.
    #[error("attach: {0}")]
    Pump(#[source] tokio::task::JoinError),
}

fn text(e: impl Into<SessionError>) -> String {
    e.into().to_string()
}

impl Backend for StreamingBackend {
    fn exec(&self, target: ExecTarget) -> BoxFuture<'_, Result<Process, String>> {
        Box::pin(async move { self.exec_session(target).await.map_err(text) })
    }

    fn attach(&self, target: AttachTarget) -> BoxFuture<'_, Result<Process, String>> {
        Box::pin(async move { self.attach_session(target).await.map_err(text) })
    }

    fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<tokio::net::TcpStream, String>> {
        let pod = pod_sandbox_id.to_string();
        Box::pin(async move { self.sandboxes.connect_port(&pod, port).await.map_err(text) })
    }
}

impl StreamingBackend {
    async fn exec_session(&self, target: ExecTarget) -> Result<Process, SessionError> {
        let options = ExecOptions {
            cmd: target.cmd,
            tty: target.tty,
            stdin: target.stdin,
            stdout: target.stdout,
            stderr: target.stderr,
        };
        let process = self.containers.exec(&target.container_id, &options).await?;
        let (stdin, stdout, resize) = match process.pty {
            Some(pty) => {
                let output = pty.try_clone().map_err(SessionError::Terminal)?;
                let size = pty.try_clone().map_err(SessionError::Terminal)?;
                (
                    target.stdin.then(|| writer(pty)),
                    Some(reader(output)),
                    Some(resizer(size)),
                )
            }
            None => (process.stdin.map(writer), process.stdout.map(reader), None),
        };
        let wait = process.wait;
        Ok(Process {
            stdin,
            stdout,
            stderr: process.stderr.map(reader),
            resize,
            // Holds the monitor connection: dropping the Process kills the exec.
            exit: Box::pin(
                async move { wait.wait().await.map(|exit| exit.exit_code).map_err(text) },
            ),
        })
    }

    async fn attach_session(&self, target: AttachTarget) -> Result<Process, SessionError> {
        let attached = self
            .containers
            .attach(&target.container_id, target.stdin)
            .await?;
        let (stdin, resize) = match attached.pty {
            Some(pty) => {
                let size = pty.try_clone().map_err(SessionError::Terminal)?;
                (target.stdin.then(|| writer(pty)), Some(resizer(size)))
            }
            None => (attached.stdin.map(writer), None),
        };
        // stdin_once applies to the first attachment with stdin; one without (stdin already
        // closed, or not asked for) leaves the container's stdin alone.
        let close_stdin = (attached.stdin_once && stdin.is_some()).then(|| {
            Arc::new(CloseStdinOnce {
                target: Mutex::new(Some((self.containers.clone(), target.container_id.clone()))),
            })
        });
        // containerd's rule for what the client's stdin EOF means: with stdin_once (and no
        // terminal) the container's stdin is closed and the session goes on until the
        // container's output ends; otherwise the attachment ends and the container's stdin
        // stays open for others.
        let (on_eof, detached) = match &close_stdin {
            Some(once) if !attached.tty => (StdinEof::CloseContainerStdin(once.clone()), None),
            _ => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (StdinEof::Detach(tx), Some(rx))
            }
        };
        let stdin = stdin.map(|inner| {
            writer(AttachStdin {
                inner: Some(inner),
                on_eof: Some(on_eof),
                closing: None,
            })
        });
        let (stdout_tx, stdout_rx) = target.stdout.then(|| tokio::io::duplex(64 * 1024)).unzip();
        let (stderr_tx, stderr_rx) = target.stderr.then(|| tokio::io::duplex(64 * 1024)).unzip();
        let pump = tokio::spawn(pump_output(attached.output, stdout_tx, stderr_tx));
        let detach = Detach {
            pump: pump.abort_handle(),
            close_stdin,
        };
        Ok(Process {
            stdin,
            stdout: stdout_rx.map(reader),
            stderr: stderr_rx.map(reader),
            resize,
            exit: Box::pin(async move {
                // Dropped on the way out: the pump stops, so the session's output ends.
                let _detach = detach;
                let detached = async {
                    // A dropped sender (no stdin EOF ever) is no detach.
                    if let Some(rx) = detached
                        && rx.await.is_ok()
                    {
                        return;
                    }
                    std::future::pending::<()>().await
                };
                tokio::select! {
                    joined = pump => match joined {
                        Ok(result) => result.map_err(text),
                        Err(e) => Err(text(SessionError::Pump(e))),
                    },
                    () = detached => Ok(0),
                }
            }),
        })
    }
}

/// Copies the container's output from the monitor to the session until the container exits.
/// A session that reads slowly slows this task, and past the monitor's backlog the monitor drops
/// the attachment: the container and its log never wait for a client. Attach reports success
/// when the container exits, as kubelet's does; the exit code is in the container's status.
async fn pump_output(
    mut output: berth_monitor_api::Attachment,
    mut stdout: Option<tokio::io::DuplexStream>,
    mut stderr: Option<tokio::io::DuplexStream>,
) -> Result<i32, MonitorError> {
    loop {
        let (sink, data) = match output.next().await? {
            AttachEvent::Stdout(data) => (&mut stdout, data),
            AttachEvent::Stderr(data) => (&mut stderr, data),
            AttachEvent::Exit(_) => {
                tracing::debug!("attached container exited");
                return Ok(0);
            }
        };
        if let Some(w) = sink
            && w.write_all(&data).await.is_err()
        {
            // The session no longer reads this stream.
            *sink = None;
        }
    }
}

/// Closes a stdin_once container's stdin, once: at the attachment's stdin EOF or when the
/// attachment ends, whichever comes first.
struct CloseStdinOnce {
    target: Mutex<Option<(ContainerService, String)>>,
}

impl CloseStdinOnce {
    /// The close to run, if it has not run yet.
    fn take(&self) -> Option<impl Future<Output = ()> + Send + use<>> {
        let (containers, id) = self.target.lock().ok()?.take()?;
        Some(async move {
            if let Err(e) = containers.close_stdin(&id).await {
                tracing::debug!(container_id = %id, error = %e, "closing a stdin_once container's stdin");
            }
        })
    }
}

/// What the client's stdin EOF does to an attachment.
enum StdinEof {
    CloseContainerStdin(Arc<CloseStdinOnce>),
    Detach(tokio::sync::oneshot::Sender<()>),
}

/// The attachment's stdin writer. The streaming server shuts it down when the client's stdin ends
/// (SPDY FIN, WebSocket v5 close of channel 0, or the session going away); our descriptor is
/// closed then, but the monitor holds the container's own write end, so closing ours alone never
/// gives the container EOF: the shutdown acts as [`StdinEof`] says.
struct AttachStdin {
    inner: Option<Writer>,
    on_eof: Option<StdinEof>,
    closing: Option<tokio::task::JoinHandle<()>>,
}

impl AsyncWrite for AttachStdin {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_write(cx, data),
            None => Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.as_mut() {
            Some(inner) => inner.as_mut().poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(inner) = self.inner.as_mut() {
            // Whatever it says, the descriptor goes: the client has no more input.
            let _ = ready!(inner.as_mut().poll_shutdown(cx));
            self.inner = None;
        }
        match self.on_eof.take() {
            Some(StdinEof::CloseContainerStdin(once)) => {
                // A task of its own: the session may be dropped while this waits (the client
                // went away), and the close must happen anyway; nobody else will do it now.
                if let Some(close) = once.take() {
                    self.closing = Some(tokio::spawn(close));
                }
            }
            Some(StdinEof::Detach(tx)) => {
                let _ = tx.send(());
            }
            None => {}
        }
        if let Some(closing) = self.closing.as_mut() {
            let _ = ready!(Pin::new(closing).poll(cx));
            self.closing = None;
        }
        Poll::Ready(Ok(()))
    }
}

/// Ends an attach session: stops copying output and, for stdin_once containers, closes the
/// container's stdin after this first attachment if its stdin EOF has not already.
struct Detach {
    pump: tokio::task::AbortHandle,
    close_stdin: Option<Arc<CloseStdinOnce>>,
}

impl Drop for Detach {
    fn drop(&mut self) {
        self.pump.abort();
        if let Some(close) = self.close_stdin.take().and_then(|once| once.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(close);
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn attach_stdin_passes_input_through_and_detaches_at_eof() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let mut stdin = AttachStdin {
            inner: Some(writer(near)),
            on_eof: Some(StdinEof::Detach(tx)),
            closing: None,
        };
        stdin.write_all(b"echo hello\n").await.unwrap();
        assert!(rx.try_recv().is_err(), "detached before the input ended");
        stdin.shutdown().await.unwrap();
        rx.await.expect("the client's EOF detaches");
        // Our end of the container's stdin is closed, after the input went through.
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"echo hello\n");
        let err = stdin.write_all(b"late").await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe);
        // A second shutdown (the server's, after a failed copy) is harmless.
        stdin.shutdown().await.unwrap();
    }
}
