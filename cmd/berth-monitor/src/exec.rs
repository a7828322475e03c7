//! An exec in a running container: the runtime's `exec --detach` in flight, with the stdio the
//! monitor made for the process, whose far ends go to berthd in the answer; then the process
//! itself, tracked until it is reaped.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_monitor_api::proto;

use crate::console::Console;
use crate::container::describe;
use crate::runtime::{self, ExecFiles};
use crate::sys;

/// Without a timeout in the request, the runtime gets this long (as for creates).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most of a failed runtime's stderr that is read for its message.
const STDERR_LIMIT: usize = 64 * 1024;

/// An exec process that runs (reparented to us): answered with `Exit` on `conn` once reaped.
pub struct RunningExec {
    pub pid: i32,
    /// The process group the runtime was started in (its pid): the exec and whatever it starts
    /// in the background belong to it, unless they leave it (a tty exec leads a session of its
    /// own). It stays reserved while the exec, a zombie at worst, is in it: the exec is only
    /// reaped after the last kill.
    pub group: i32,
    /// `None` once the requester hung up: the process was killed and only awaits its reaping.
    pub conn: Option<u64>,
    pub container_id: String,
}

impl RunningExec {
    /// SIGKILLs the exec with its process group (and its own group, for a session leader), so
    /// that a background child does not outlive a killed exec, holding its pipes.
    pub fn kill(&self) {
        sys::kill_group(self.group, libc::SIGKILL);
        sys::kill_group(self.pid, libc::SIGKILL);
        sys::kill(self.pid, libc::SIGKILL);
    }
}

/// An exec whose runtime is still running.
pub struct ExecStart {
    pub container_id: String,
    /// The connection waiting for the answer (`None` once it hung up).
    pub conn: Option<u64>,
    pub runtime_pid: i32,
    pub deadline: Instant,
    pub killed: bool,
    timeout: Duration,
    runtime_path: String,
    files: ExecFiles,
    answer: proto::ExecStarted,
    /// The far ends for berthd, in answer order: stdin's write end, stdout's and stderr's read ends
    /// (those requested). Held until the answer, so the process never sees a closed stream early.
    far: Vec<OwnedFd>,
    /// tty only: receives the pty master, which becomes the only far end.
    pub console: Option<Console>,
    /// tty only: the runtime's own stdout/stderr (the process uses the pty).
    runtime_out: Option<OwnedFd>,
}

/// The runtime succeeded: the answer and its descriptors.
pub struct Started {
    pub pid: i32,
    pub answer: proto::ExecStarted,
    pub fds: Vec<OwnedFd>,
}

/// The runtime failed.
pub struct Failed {
    pub message: String,
    /// A process the runtime started anyway (its pid file was written): the caller kills it and
    /// reaps it, so nothing of a failed exec is left behind.
    pub stray: Option<i32>,
}

impl ExecStart {
    /// Writes the process file, makes the stdio and starts the runtime. `n` names the files.
    pub fn start(dir: &Path, req: &proto::Exec, n: u64, conn: u64) -> Result<ExecStart, String> {
        let files = ExecFiles::new(dir, n);
        // Left over by a crashed monitor, a pid file would hand us a stale pid.
        files.remove();
        let started = Self::spawn(req, files, conn);
        if let Err((files, _)) = &started {
            files.remove();
        }
        started.map_err(|(_, message)| message)
    }

    fn spawn(
        req: &proto::Exec,
        files: ExecFiles,
        conn: u64,
    ) -> Result<ExecStart, (ExecFiles, String)> {
        let fail = |files, what: &str, e: std::io::Error| (files, format!("{what}: {e}"));
        // The process object holds the environment, which may carry secrets: owner-only.
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&files.process)
            .and_then(|mut f| f.write_all(&req.process_json));
        if let Err(e) = written {
            let what = format!("writing {}", files.process.display());
            return Err(fail(files, &what, e));
        }
        let mut answer = proto::ExecStarted {
            pid: 0,
            pty: req.tty,
            ..Default::default()
        };
        let (mut far, mut console, mut runtime_out) = (Vec::new(), None, None);
        let stdio: [Stdio; 3] = if req.tty {
            match Console::listen(files.console.clone()) {
                Ok(c) => console = Some(c),
                Err(e) => return Err(fail(files, "console socket", e)),
            }
            let (out_r, out_w) = match sys::pipe() {
                Ok(p) => p,
                Err(e) => return Err(fail(files, "creating a pipe", e)),
            };
            let err_w = match out_w.try_clone() {
                Ok(w) => w,
                Err(e) => return Err(fail(files, "duplicating a pipe", e)),
            };
            runtime_out = Some(out_r);
            [Stdio::null(), Stdio::from(out_w), Stdio::from(err_w)]
        } else {
            let mut stdio = [Stdio::null(), Stdio::null(), Stdio::null()];
            for (slot, wanted) in [req.stdin, req.stdout, req.stderr].into_iter().enumerate() {
                if !wanted {
                    continue;
                }
                let (r, w) = match sys::pipe() {
                    Ok(p) => p,
                    Err(e) => return Err(fail(files, "creating a pipe", e)),
                };
                // stdin: the process reads, berthd writes; stdout and stderr the other way.
                let (near, far_end) = if slot == 0 { (r, w) } else { (w, r) };
                stdio[slot] = Stdio::from(near);
                far.push(far_end);
            }
            (answer.stdin, answer.stdout, answer.stderr) = (req.stdin, req.stdout, req.stderr);
            stdio
        };
        // The child's copies of the near ends are closed in the monitor as `stdio` is consumed.
        let runtime_pid = match runtime::spawn_exec(req, &files, stdio) {
            Ok(pid) => pid,
            Err(e) => return Err((files, e.to_string())),
        };
        let timeout = if req.timeout_ms == 0 {
            DEFAULT_TIMEOUT
        } else {
            Duration::from_millis(req.timeout_ms)
        };
        Ok(ExecStart {
            container_id: req.container_id.clone(),
            conn: Some(conn),
            runtime_pid,
            deadline: Instant::now() + timeout,
            killed: false,
            timeout,
            runtime_path: req.runtime_path.clone(),
            files,
            answer,
            far,
            console,
            runtime_out,
        })
    }

    /// The runtime exited with `status`: the exec's pid and what to answer, or the runtime's
    /// error. Every file of the exec is removed either way.
    pub fn finish(mut self, status: libc::c_int) -> Result<Started, Failed> {
        let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
        let pid = std::fs::read_to_string(&self.files.pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|&pid| pid > 0);
        if !ok || self.killed {
            let stderr = self.runtime_stderr();
            let fallback = if self.killed {
                format!(
                    "{} exec did not finish within {:?}",
                    self.runtime_path, self.timeout
                )
            } else {
                format!("{} exec failed ({})", self.runtime_path, describe(status))
            };
            let mut message = runtime::error_message(&self.files.log, &stderr, fallback.clone());
            if self.killed && message != fallback {
                message = format!("{fallback}: {message}");
            }
            self.files.remove();
            return Err(Failed {
                message,
                stray: pid,
            });
        }
        let Some(pid) = pid else {
            self.files.remove();
            return Err(Failed {
                message: format!(
                    "{} exec succeeded but left no pid in {}",
                    self.runtime_path,
                    self.files.pid_file.display()
                ),
                stray: None,
            });
        };
        if let Some(console) = self.console.take() {
            let Some(master) = console.finish() else {
                self.files.remove();
                return Err(Failed {
                    message: format!(
                        "{} did not pass a console to {}",
                        self.runtime_path,
                        self.files.console.display()
                    ),
                    // Without its terminal nobody can talk to the process.
                    stray: Some(pid),
                });
            };
            self.far = vec![master];
        }
        self.files.remove();
        self.answer.pid = pid;
        Ok(Started {
            pid,
            answer: self.answer,
            fds: self.far,
        })
    }

    /// What the failed runtime wrote to its stderr: the tty runtime's own pipe, else the exec's
    /// stderr pipe (a detached runtime without a terminal writes to the process's stdio).
    fn runtime_stderr(&self) -> Vec<u8> {
        let fd = match &self.runtime_out {
            Some(fd) => fd.as_fd(),
            None if self.answer.stderr => match self.far.last() {
                Some(fd) => fd.as_fd(),
                None => return Vec::new(),
            },
            None => return Vec::new(),
        };
        sys::read_available(fd, STDERR_LIMIT)
    }
}
