//! A container's life in the monitor: the create in flight (runtime running), then the container
//! with its output streams, its log and, once reaped, its exit.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_monitor_api::proto::CreateContainer;
use berth_monitor_api::{Exit, write_exit_file};

use crate::console::Console;
use crate::exits::{OomBaseline, exit_from_status};
use crate::logs::{LineSplitter, Log, Timestamp};
use crate::runtime::{self, RuntimeFiles, Stdio3};
use crate::sys;

/// Without a timeout in the request, the runtime gets this long.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Reads per readiness event and stream: bounds how long one chatty container holds the loop.
const READS_PER_EVENT: usize = 8;
/// Reads when draining at exit: what is buffered in a pipe (64 KiB by default) and a little more.
const READS_AT_EXIT: usize = 16;

/// Receives what a container wrote besides the log: (stream number: 1 stdout, 2 stderr; bytes).
pub type Sink<'a> = dyn FnMut(i32, &[u8]) + 'a;
/// Receives output for the attach connections: (their ids, stream number, bytes).
pub type AttachSink<'a> = dyn FnMut(&[u64], i32, &[u8]) + 'a;

/// One output stream: a pipe's read end, or the pty master of a tty container.
pub struct Stream {
    fd: OwnedFd,
    name: &'static str,
    /// The number attach clients see: 1 stdout (also a terminal's output), 2 stderr.
    no: i32,
    lines: LineSplitter,
}

impl Stream {
    fn new(fd: OwnedFd, name: &'static str, no: i32) -> std::io::Result<Stream> {
        sys::set_nonblocking(fd.as_fd())?;
        Ok(Stream {
            fd,
            name,
            no,
            lines: LineSplitter::default(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Copies what is readable (at most `reads` reads) to the log; `true` at EOF, after the last
    /// unterminated line went out. A pty master reports EIO once the last slave is closed: that
    /// is its EOF too.
    fn pump(
        &mut self,
        log: &mut Log,
        scratch: &mut [u8],
        reads: usize,
        out: &mut Sink<'_>,
    ) -> bool {
        let name = self.name;
        for _ in 0..reads {
            match sys::read(self.fd.as_fd(), scratch) {
                Ok(n) if n > 0 => {
                    let ts = Timestamp::now();
                    self.lines.feed(&scratch[..n], &mut |p, a, b| {
                        log.write_line(&ts, name, p, a, b)
                    });
                    // After the log: the log is never held up by attach clients.
                    out(self.no, &scratch[..n]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Ok(_) | Err(_) => {
                    let ts = Timestamp::now();
                    self.lines
                        .finish(&mut |p, a, b| log.write_line(&ts, name, p, a, b));
                    return true;
                }
            }
        }
        // Budget used up: the rest on the next round.
        false
    }
}

/// A create whose runtime is still running.
pub struct Create {
    pub id: String,
    /// The connection waiting for the answer (`None` once it hung up).
    pub conn: Option<u64>,
    pub runtime_pid: i32,
    pub deadline: Instant,
    timeout: Duration,
    pub killed: bool,
    /// berthd removed the container while its runtime ran: once created, it is killed and dropped.
    pub forgotten: bool,
    runtime_path: String,
    files: RuntimeFiles,
    log: Log,
    oom: OomBaseline,
    /// Not polled until the runtime exits: on failure they hold the runtime's stderr instead.
    streams: Vec<Stream>,
    stdin: Option<OwnedFd>,
    pub console: Option<Console>,
    /// tty only: the runtime's own stdout/stderr (the container uses the pty).
    runtime_out: Option<OwnedFd>,
}

impl Create {
    /// Opens the log, sets up the stdio and starts the runtime.
    pub fn start(dir: &Path, req: &CreateContainer, conn: u64) -> Result<Create, String> {
        let id = req.container_id.clone();
        let files = RuntimeFiles::new(dir, &id);
        // Left over from an earlier failed attempt, it would hand us a stale pid.
        let _ = std::fs::remove_file(&files.pid_file);
        let log_path = (!req.log_path.is_empty()).then(|| PathBuf::from(&req.log_path));
        let log = Log::open(log_path).map_err(|e| e.to_string())?;
        let oom = OomBaseline::read(&req.oom_files);
        let err = |what: &str, e: std::io::Error| format!("{what}: {e}");

        let (mut streams, mut stdin, mut console, mut runtime_out) = (Vec::new(), None, None, None);
        let stdio = if req.tty {
            console = Some(Console::listen(files.console.clone()).map_err(|e| e.to_string())?);
            let (out_r, out_w) = sys::pipe().map_err(|e| err("creating a pipe", e))?;
            sys::set_nonblocking(out_r.as_fd()).map_err(|e| err("pipe", e))?;
            runtime_out = Some(out_r);
            let err_w = out_w
                .try_clone()
                .map_err(|e| err("duplicating a pipe", e))?;
            Stdio3 {
                stdin: None,
                stdout: out_w,
                stderr: err_w,
            }
        } else {
            let (out_r, out_w) = sys::pipe().map_err(|e| err("creating a pipe", e))?;
            let (err_r, err_w) = sys::pipe().map_err(|e| err("creating a pipe", e))?;
            streams.push(Stream::new(out_r, "stdout", 1).map_err(|e| err("pipe", e))?);
            streams.push(Stream::new(err_r, "stderr", 2).map_err(|e| err("pipe", e))?);
            let child_stdin = if req.stdin {
                // The write end stays with the monitor, for an attach later.
                let (in_r, in_w) = sys::pipe().map_err(|e| err("creating a pipe", e))?;
                stdin = Some(in_w);
                Some(in_r)
            } else {
                None
            };
            Stdio3 {
                stdin: child_stdin,
                stdout: out_w,
                stderr: err_w,
            }
        };
        let runtime_pid = runtime::spawn(req, &files, stdio).map_err(|e| e.to_string())?;
        let timeout = if req.timeout_ms == 0 {
            DEFAULT_TIMEOUT
        } else {
            Duration::from_millis(req.timeout_ms)
        };
        Ok(Create {
            id,
            conn: Some(conn),
            runtime_pid,
            deadline: Instant::now() + timeout,
            timeout,
            killed: false,
            forgotten: false,
            runtime_path: req.runtime_path.clone(),
            files,
            log,
            oom,
            streams,
            stdin,
            console,
            runtime_out,
        })
    }

    /// The runtime exited with `status`: the container, or the runtime's error message.
    pub fn finish(mut self, status: libc::c_int) -> Result<Container, String> {
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        if !ok || self.killed {
            let stderr = self.runtime_stderr();
            let fallback = if self.killed {
                format!(
                    "{} did not finish within {:?}",
                    self.runtime_path, self.timeout
                )
            } else {
                format!("{} failed ({})", self.runtime_path, describe(status))
            };
            let mut msg = runtime::error_message(&self.files.log, &stderr, fallback.clone());
            if self.killed && msg != fallback {
                msg = format!("{fallback}: {msg}");
            }
            self.files.remove();
            return Err(msg);
        }
        let pid = std::fs::read_to_string(&self.files.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|&pid| pid > 0);
        let Some(pid) = pid else {
            self.files.remove();
            return Err(format!(
                "{} succeeded but left no pid in {}",
                self.runtime_path,
                self.files.pid_file.display()
            ));
        };
        let tty = self.console.is_some();
        if let Some(console) = self.console.take() {
            let master = console
                .finish()
                .and_then(|m| Stream::new(m, "stdout", 1).ok());
            let Some(master) = master else {
                // Without its terminal nobody can talk to the container: do not leave it running.
                sys::kill(pid, libc::SIGKILL);
                self.files.remove();
                return Err(format!(
                    "{} did not pass a console to {}",
                    self.runtime_path,
                    self.files.console.display()
                ));
            };
            self.streams.push(master);
        }
        Ok(Container {
            id: self.id,
            pid,
            tty,
            exit: None,
            log: self.log,
            streams: self.streams,
            stdin: self.stdin,
            attachers: Vec::new(),
            attach_deadline: None,
            oom: self.oom,
            files: self.files,
        })
    }

    /// What the runtime wrote to its stderr (the container's stderr pipe when not a tty).
    fn runtime_stderr(&mut self) -> Vec<u8> {
        let fd = match (&self.runtime_out, self.streams.get(1)) {
            (Some(fd), _) => fd.as_fd(),
            (None, Some(stream)) => stream.fd.as_fd(),
            (None, None) => return Vec::new(),
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while out.len() < 64 * 1024 {
            match sys::read(fd, &mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        out
    }
}

pub fn describe(status: libc::c_int) -> String {
    if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("exit status {}", libc::WEXITSTATUS(status))
    }
}

/// A created container.
pub struct Container {
    pub id: String,
    pub pid: i32,
    /// Its output is a terminal: `streams` holds the pty master (until it reports EOF).
    pub tty: bool,
    pub exit: Option<Exit>,
    pub log: Log,
    /// Polled until EOF, also after the exit (grandchildren may still hold them).
    pub streams: Vec<Stream>,
    /// Held for a later attach; closed when the container exits, or on CloseStdin.
    pub stdin: Option<OwnedFd>,
    /// The attach connections receiving its output.
    pub attachers: Vec<u64>,
    /// After the exit: when the attach connections get their Exit even if output streams are
    /// still open (a pty hands over the last output shortly after the exit; a grandchild may keep
    /// a pipe open for ever).
    pub attach_deadline: Option<Instant>,
    oom: OomBaseline,
    files: RuntimeFiles,
}

impl Container {
    /// Copies readable output of the stream on `fd` to the log and, when attach connections
    /// exist, to `out(attachers, stream, bytes)`; a stream at EOF is closed. By descriptor, not
    /// index: an earlier event of the same round may have closed a stream.
    pub fn pump(&mut self, fd: RawFd, scratch: &mut [u8], out: &mut AttachSink<'_>) {
        let Some(i) = self.streams.iter().position(|s| s.fd() == fd) else {
            return;
        };
        let attachers = &self.attachers;
        let mut sink = |no: i32, data: &[u8]| {
            if !attachers.is_empty() {
                out(attachers, no, data);
            }
        };
        if self.streams[i].pump(&mut self.log, scratch, READS_PER_EVENT, &mut sink) {
            self.streams.remove(i);
        }
    }

    /// CRI log bytes written for this container so far.
    pub fn log_bytes(&self) -> u64 {
        self.log.written()
    }

    /// The pty master of a tty container, or `None`.
    pub fn pty(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        if !self.tty {
            return None;
        }
        self.streams.first().map(|s| s.fd.as_fd())
    }

    /// The container process was reaped: log what it left in the pipes, then record the exit
    /// durably before anyone is told.
    pub fn exited(
        &mut self,
        dir: &Path,
        status: libc::c_int,
        at_ns: i64,
        scratch: &mut [u8],
        out: &mut AttachSink<'_>,
    ) -> Exit {
        let log = &mut self.log;
        let attachers = &self.attachers;
        let mut sink = |no: i32, data: &[u8]| {
            if !attachers.is_empty() {
                out(attachers, no, data);
            }
        };
        self.streams
            .retain_mut(|stream| !stream.pump(log, scratch, READS_AT_EXIT, &mut sink));
        self.stdin = None;
        let mut exit = exit_from_status(status, at_ns, self.oom.grew());
        exit.log_bytes = self.log.written();
        if let Err(e) = write_exit_file(dir, &self.id, &exit) {
            crate::note(format_args!("writing the exit file of {}: {e}", self.id));
        }
        self.exit = Some(exit.clone());
        exit
    }

    /// Forgotten: remove every file the monitor and the runtime kept for it.
    pub fn remove_files(&self, dir: &Path) {
        self.files.remove();
        let _ = std::fs::remove_file(berth_monitor_api::exit_file(dir, &self.id));
    }
}
