//! ExecSync, Exec and Attach. The pod's monitor runs `runc exec --detach` and parents the exec
//! process (it is the pod's child subreaper), so exec processes stay in the pod's scope and are
//! reaped whatever berthd does; berthd receives the process's stdio and does the I/O itself.
//! Dropping an [`ExecProcess`] closes its monitor connection, and the monitor kills the process.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_monitor_api::{ExecRequest, ExecWait, Exit};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::Inner;
use crate::error::ContainerError;
use crate::record::{ContainerRecord, Phase};
use crate::stdio::{self, PipeReader, PipeWriter, Pty};

/// How long the runtime may take to start an exec process.
const RUNTIME_EXEC_TIMEOUT: Duration = Duration::from_secs(30);
/// After an ExecSync process exits, how long its output may keep coming: a background child that
/// inherited the pipes must not hold the call open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(1);

/// What an exec runs and which stdio it gets.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A running exec process. Dropping it kills the process.
pub struct ExecProcess {
    pub pid: i32,
    pub stdin: Option<PipeWriter>,
    pub stdout: Option<PipeReader>,
    pub stderr: Option<PipeReader>,
    /// For tty execs: the terminal (input, output and window size).
    pub pty: Option<Pty>,
    pub wait: ExecWait,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecSyncOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// A live attachment to a container's stdio. Dropping it detaches.
pub struct Attached {
    pub tty: bool,
    pub stdin_once: bool,
    /// The container's stdin (non-tty containers created with stdin, when asked for).
    pub stdin: Option<PipeWriter>,
    /// The container's terminal, for input and resizing (tty containers).
    pub pty: Option<Pty>,
    /// The container's output from now on, then its exit.
    pub output: berth_monitor_api::Attachment,
}

pub(crate) async fn exec(
    inner: &Arc<Inner>,
    id: &str,
    options: &ExecOptions,
) -> Result<ExecProcess, ContainerError> {
    if options.cmd.is_empty() || options.cmd[0].is_empty() {
        return Err(ContainerError::EmptyCommand);
    }
    let record = inner.record(id)?;
    require_running(
        &record,
        "not running: only a running container can be exec'd in",
    )?;
    let process_json = exec_process(&record, options)?;
    let runtime = inner.runtime_for(&record);
    let request = ExecRequest {
        container_id: id.to_string(),
        runtime_path: runtime.path.display().to_string(),
        runtime_args: runtime.global_args(),
        process_json,
        tty: options.tty,
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr && !options.tty,
        timeout_ms: u64::try_from(RUNTIME_EXEC_TIMEOUT.as_millis()).unwrap_or(u64::MAX),
    };
    let (started, wait) = berth_monitor_api::exec(&record.monitor_dir, &request)
        .await
        .map_err(|e| monitor_error(&record, e))?;
    let io = |source| ContainerError::Stdio {
        what: "exec",
        source,
    };
    Ok(ExecProcess {
        pid: started.pid,
        stdin: started
            .stdin
            .map(stdio::pipe_writer)
            .transpose()
            .map_err(io)?,
        stdout: started
            .stdout
            .map(stdio::pipe_reader)
            .transpose()
            .map_err(io)?,
        stderr: started
            .stderr
            .map(stdio::pipe_reader)
            .transpose()
            .map_err(io)?,
        pty: started.pty.map(Pty::new).transpose().map_err(io)?,
        wait,
    })
}

/// Runs `cmd` to completion (or until `timeout`) and returns its output, each stream capped at
/// `limit` bytes (the rest is read and dropped, so the process never blocks on a full pipe).
pub(crate) async fn exec_sync(
    inner: &Arc<Inner>,
    id: &str,
    cmd: Vec<String>,
    timeout: Option<Duration>,
    limit: usize,
) -> Result<ExecSyncOutput, ContainerError> {
    let options = ExecOptions {
        cmd,
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let process = exec(inner, id, &options).await?;
    let stdout = Capture::start(process.stdout, limit);
    let stderr = Capture::start(process.stderr, limit);
    let wait = process.wait.wait();
    let exit: Exit = match deadline {
        Some(deadline) => match tokio::time::timeout_at(deadline, wait).await {
            Ok(exit) => exit?,
            Err(_) => {
                // The ExecWait is dropped with the timed-out future: the monitor kills the
                // process. kubelet tells probe timeouts apart by DEADLINE_EXCEEDED.
                stdout.abort();
                stderr.abort();
                return Err(ContainerError::ExecTimedOut {
                    cmd: options.cmd,
                    after: timeout.unwrap_or_default(),
                });
            }
        },
        None => wait.await?,
    };
    let drain_until = Instant::now() + DRAIN_AFTER_EXIT;
    let drain_until = deadline.map_or(drain_until, |d| d.min(drain_until).max(Instant::now()));
    Ok(ExecSyncOutput {
        stdout: stdout.finish(drain_until).await,
        stderr: stderr.finish(drain_until).await,
        exit_code: exit.exit_code,
    })
}

pub(crate) async fn attach(
    inner: &Arc<Inner>,
    id: &str,
    want_stdin: bool,
) -> Result<Attached, ContainerError> {
    let record = inner.record(id)?;
    require_running(
        &record,
        "not running: only a running container can be attached to",
    )?;
    let stdin = want_stdin && record.config.stdin;
    let mut attachment = berth_monitor_api::attach(&record.monitor_dir, id, stdin)
        .await
        .map_err(|e| monitor_error(&record, e))?;
    let io = |source| ContainerError::Stdio {
        what: "attach",
        source,
    };
    let tty = record.config.tty;
    let (stdin_fd, pty_fd) = (attachment.stdin.take(), attachment.pty.take());
    Ok(Attached {
        tty,
        stdin_once: record.config.stdin_once,
        stdin: stdin_fd.map(stdio::pipe_writer).transpose().map_err(io)?,
        pty: pty_fd.map(Pty::new).transpose().map_err(io)?,
        output: attachment,
    })
}

pub(crate) async fn close_stdin(inner: &Arc<Inner>, id: &str) -> Result<(), ContainerError> {
    let record = inner.record(id)?;
    if record.phase != Phase::Running {
        return Ok(());
    }
    berth_monitor_api::close_stdin(&record.monitor_dir, id)
        .await
        .map_err(|e| monitor_error(&record, e))
}

fn require_running(record: &ContainerRecord, needs: &'static str) -> Result<(), ContainerError> {
    if record.phase == Phase::Running {
        return Ok(());
    }
    Err(ContainerError::WrongState {
        id: record.id.clone(),
        state: format!("{:?}", record.state()),
        needs,
    })
}

/// The monitor says the container is not running (or is gone with its monitor): that is the
/// caller's precondition failing, not a monitor fault.
fn monitor_error(record: &ContainerRecord, e: berth_monitor_api::MonitorError) -> ContainerError {
    use berth_monitor_api::MonitorError;
    match e {
        MonitorError::NotRunning(_) | MonitorError::UnknownContainer(_) => {
            ContainerError::NotRunning {
                id: record.id.clone(),
            }
        }
        e => ContainerError::from(e),
    }
}

/// The exec's OCI process: the container's own (user, env, cwd, capabilities, rlimits,
/// no_new_privileges) with the exec's command and terminal.
fn exec_process(
    record: &ContainerRecord,
    options: &ExecOptions,
) -> Result<Vec<u8>, ContainerError> {
    let path = record.bundle.join("config.json");
    let bytes = std::fs::read(&path).map_err(ContainerError::io("read", &path))?;
    process_from_spec(&path, &bytes, options)
}

fn process_from_spec(
    path: &Path,
    spec: &[u8],
    options: &ExecOptions,
) -> Result<Vec<u8>, ContainerError> {
    let malformed = |reason| ContainerError::MalformedBundleConfig {
        path: path.to_path_buf(),
        reason,
    };
    let spec: serde_json::Value =
        serde_json::from_slice(spec).map_err(ContainerError::json(path.display().to_string()))?;
    let mut process = spec
        .get("process")
        .cloned()
        .ok_or_else(|| malformed("the spec has no process"))?;
    let object = process
        .as_object_mut()
        .ok_or_else(|| malformed("the spec's process is not an object"))?;
    object.insert("args".to_string(), serde_json::json!(options.cmd));
    object.insert("terminal".to_string(), serde_json::json!(options.tty));
    object.remove("consoleSize");
    serde_json::to_vec(&process).map_err(ContainerError::json("encoding the exec's process"))
}

/// One output stream of an ExecSync, read into a shared buffer so that what was read survives a
/// bounded drain.
struct Capture {
    buffer: Arc<Mutex<Vec<u8>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Capture {
    fn start(reader: Option<PipeReader>, limit: usize) -> Capture {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let task = reader.map(|mut reader| {
            let buffer = buffer.clone();
            tokio::spawn(async move {
                let mut chunk = vec![0u8; 32 * 1024];
                loop {
                    match reader.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let Ok(mut buffer) = buffer.lock() else {
                                return;
                            };
                            let room = limit.saturating_sub(buffer.len());
                            buffer.extend_from_slice(&chunk[..n.min(room)]);
                        }
                    }
                }
            })
        });
        Capture { buffer, task }
    }

    fn abort(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }

    async fn finish(mut self, until: Instant) -> Vec<u8> {
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(until, task).await.is_err() {
                abort.abort();
            }
        }
        self.buffer
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_process_keeps_the_container_process_but_the_command() {
        let spec = br#"{"ociVersion":"1.0.2","process":{"terminal":true,"consoleSize":{"height":1,"width":2},
            "user":{"uid":1000,"gid":1000},"args":["sleep","1000"],"env":["PATH=/bin","A=b"],"cwd":"/work",
            "capabilities":{"bounding":["CAP_KILL"]},"noNewPrivileges":true}}"#;
        let options = ExecOptions {
            cmd: vec!["sh".into(), "-c".into(), "id".into()],
            tty: false,
            stdin: false,
            stdout: true,
            stderr: true,
        };
        let process: serde_json::Value = serde_json::from_slice(
            &process_from_spec(Path::new("config.json"), spec, &options).unwrap(),
        )
        .unwrap();
        assert_eq!(process["args"], serde_json::json!(["sh", "-c", "id"]));
        assert_eq!(process["terminal"], false);
        assert!(process.get("consoleSize").is_none());
        assert_eq!(process["user"]["uid"], 1000);
        assert_eq!(process["env"], serde_json::json!(["PATH=/bin", "A=b"]));
        assert_eq!(process["cwd"], "/work");
        assert_eq!(process["noNewPrivileges"], true);
    }

    #[test]
    fn exec_process_needs_a_spec_with_a_process() {
        let options = ExecOptions {
            cmd: vec!["true".into()],
            tty: true,
            stdin: false,
            stdout: true,
            stderr: false,
        };
        assert!(process_from_spec(Path::new("config.json"), b"{}", &options).is_err());
        assert!(process_from_spec(Path::new("config.json"), b"not json", &options).is_err());
    }
}
