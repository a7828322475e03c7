//! What the server asks of the runtime, and what it gets back.
//!
//! The streaming server never touches containers: a [`Backend`] starts the exec, attaches, or
//! dials the pod's port, and returns plain async streams. This keeps the protocol code testable
//! with local processes and keeps container knowledge in `pkg/cri`.

use std::future::Future;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future (what [`Backend`] methods return; no `futures` crate needed).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An exec the CRI `Exec` call asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecTarget {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// An attach the CRI `Attach` call asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AttachTarget {
    pub container_id: String,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A running exec, or an attachment to a running container.
///
/// Dropping a `Process` ends it: an exec is killed, an attach detaches. The server drops it when
/// the session ends for any reason (exit, client gone, idle timeout, server shutdown).
///
/// - `stdin`: written with the client's stdin; shut down and dropped when the client closes it
///   (SPDY FIN, WebSocket v5 CLOSE of channel 0) or its copy fails. The shutdown is the backend's
///   only news of the client's EOF, so it must act there: an exec's stdin closes; an attach
///   either closes the container's stdin (`stdin_once`, the session then lasts until the output
///   ends) or detaches, resolving `exit` (without `stdin_once`, as containerd does).
/// - `stdout` (with a tty: the terminal's output) and `stderr`: copied to the client until EOF.
/// - `resize`: called with (width, height) for every resize event the client sends.
/// - `exit`: the exit code (exec) or the end of the attachment; `Err` is reported to the client
///   as an internal error. After it resolves the server still drains `stdout`/`stderr` to EOF.
pub struct Process {
    pub stdin: Option<Pin<Box<dyn AsyncWrite + Send>>>,
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
    pub exit: Pin<Box<dyn Future<Output = Result<i32, String>> + Send>>,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish_non_exhaustive()
    }
}

/// The runtime side of the streaming server (implemented in `pkg/cri`).
///
/// Errors are plain messages: they are shown to the user (in the session's status, or on the
/// port-forward error stream).
pub trait Backend: Send + Sync + 'static {
    fn exec(&self, t: ExecTarget) -> BoxFuture<'_, Result<Process, String>>;
    fn attach(&self, t: AttachTarget) -> BoxFuture<'_, Result<Process, String>>;
    fn port_forward(
        &self,
        pod_sandbox_id: &str,
        port: u16,
    ) -> BoxFuture<'_, Result<tokio::net::TcpStream, String>>;
}
