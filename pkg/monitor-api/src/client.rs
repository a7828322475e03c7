//! berthd's handle on one pod's monitor: starting it, finding it again, and one blocking
//! request/response exchange per call (each on a fresh connection, so a `Monitor` is a plain value
//! that can be cloned into any blocking task).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::proto::{self, request, response};
use crate::sys::{connect, log_tail, pipe, wait_ready};
use crate::{Exit, MonitorError, PID_FILE, SOCKET, check_container_id, read_frame, write_frame};

/// How long a request other than Create and Wait may take; responses are immediate, so this only
/// bounds a wedged monitor.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long spawn waits for the monitor's readiness byte.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of a timeout the monitor enforces itself (Create's runtime timeout, Wait's timeout),
/// so the monitor's own answer normally arrives first.
const ANSWER_SLACK: Duration = Duration::from_secs(5);
/// The monitor's default runtime timeout when the request gives none.
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything the monitor needs to create and start one container.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub container_id: String,
    pub runtime_path: PathBuf,
    /// Global runtime options (before the subcommand), e.g. `--root /run/berth/runtime/runc`.
    pub runtime_args: Vec<String>,
    pub bundle: PathBuf,
    /// The CRI log file; `None` discards the output.
    pub log_path: Option<PathBuf>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// `memory.events` (v2) / `memory.oom_control` (v1) files of the container's cgroup.
    pub oom_files: Vec<PathBuf>,
    /// How long the runtime may take; zero means the monitor's default (60 s).
    pub timeout: Duration,
}

/// One container the monitor knows.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub container_id: String,
    pub pid: i32,
    /// Set once the container has exited.
    pub exit: Option<Exit>,
    /// CRI log bytes written for it so far.
    pub log_bytes: u64,
    /// Its create is still in flight (pid 0, no exit yet). Never set by monitors older than this
    /// field: they leave such containers out of the list.
    pub creating: bool,
}

/// Handle on one pod's monitor, identified by its directory.
#[derive(Debug, Clone)]
pub struct Monitor {
    dir: PathBuf,
    pid: i32,
}

impl Monitor {
    /// Starts a monitor for `dir` (created if missing) and returns once it serves its socket. The
    /// monitor runs in a session of its own with stdio on /dev/null and stderr appended to
    /// `<dir>/monitor.log`, so nothing ties it to the caller's lifetime; the caller is its parent and
    /// reaps it through the returned `Child`.
    pub fn spawn(
        binary: &Path,
        dir: &Path,
        cgroup_procs: &[PathBuf],
    ) -> Result<(Monitor, Child), MonitorError> {
        // The monitor runs in /, and open() matches its command line: always an absolute path.
        let dir = &absolute(dir)?;
        fs::create_dir_all(dir)
            .map_err(|e| MonitorError::io(format!("creating {}", dir.display()), e))?;
        let log_path = dir.join("monitor.log");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| MonitorError::io(format!("opening {}", log_path.display()), e))?;
        let (ready_r, ready_w) = pipe().map_err(|e| MonitorError::io("creating a pipe", e))?;
        let ready_fd = ready_w.as_raw_fd();

        let mut cmd = Command::new(binary);
        cmd.arg("--dir")
            .arg(dir)
            .arg("--ready-fd")
            .arg(ready_fd.to_string());
        for procs in cgroup_procs {
            cmd.arg("--cgroup-procs").arg(procs);
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .current_dir("/");
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls.
        unsafe {
            cmd.pre_exec(move || {
                // A session (and so a process group) of its own: a terminal's or berthd's
                // process-group signals never reach the monitor.
                if libc::setsid() < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The pipe is close-on-exec so no other child inherits it; this one must.
                if libc::fcntl(ready_fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| MonitorError::io(format!("starting {}", binary.display()), e))?;
        drop(cmd);
        // Only the monitor holds the write end now: EOF means it exited before it was ready.
        drop(ready_w);

        match wait_ready(&ready_r, READY_TIMEOUT) {
            Ok(true) => {}
            Ok(false) => {
                let status = reap_within(&mut child, Duration::from_secs(2));
                let tail = log_tail(&log_path);
                return Err(MonitorError::io(
                    format!(
                        "berth-monitor for {} exited before it was ready ({status}): {tail}",
                        dir.display()
                    ),
                    io::Error::from(io::ErrorKind::UnexpectedEof),
                ));
            }
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err);
            }
        }
        let pid = child.id() as i32;
        Ok((
            Monitor {
                dir: dir.to_path_buf(),
                pid,
            },
            child,
        ))
    }

    /// Finds the running monitor of `dir` (after a berthd restart): its pid file names a live
    /// berth-monitor serving this directory, and its socket accepts.
    pub fn open(dir: &Path) -> Result<Monitor, MonitorError> {
        let dir = &absolute(dir)?;
        let not_running = || MonitorError::NotRunning(dir.to_path_buf());
        let raw = fs::read_to_string(dir.join(PID_FILE)).map_err(|_| not_running())?;
        let pid: i32 = raw.trim().parse().map_err(|_| not_running())?;
        if pid <= 0 {
            return Err(not_running());
        }
        let monitor = Monitor {
            dir: dir.to_path_buf(),
            pid,
        };
        if !monitor.alive() {
            return Err(not_running());
        }
        connect(&monitor.dir.join(SOCKET), REQUEST_TIMEOUT).map_err(|_| not_running())?;
        Ok(monitor)
    }

    /// The monitor process of `dir` by its pid file alone, without talking to it: for retiring a
    /// monitor that no longer answers (stopped, wedged). `None` when no live berth-monitor for this
    /// directory is named there.
    pub fn find(dir: &Path) -> Option<Monitor> {
        let dir = absolute(dir).ok()?;
        let raw = fs::read_to_string(dir.join(PID_FILE)).ok()?;
        let pid: i32 = raw.trim().parse().ok().filter(|&pid| pid > 0)?;
        let monitor = Monitor { dir, pid };
        monitor.alive().then_some(monitor)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the process is still a berth-monitor for this directory (a zombie has no command
    /// line, and a reused pid has another one).
    pub fn alive(&self) -> bool {
        fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|cmdline| is_monitor_cmdline(&cmdline, &self.dir))
            .unwrap_or(false)
    }

    /// Creates and starts a container; returns its pid once the runtime has exited.
    pub fn create(&self, req: &CreateRequest) -> Result<i32, MonitorError> {
        check_container_id(&req.container_id).map_err(MonitorError::Protocol)?;
        let timeout = if req.timeout.is_zero() {
            DEFAULT_CREATE_TIMEOUT
        } else {
            req.timeout
        };
        let msg = request::Kind::Create(proto::CreateContainer {
            container_id: req.container_id.clone(),
            runtime_path: path_string(&req.runtime_path),
            runtime_args: req.runtime_args.clone(),
            bundle: path_string(&req.bundle),
            log_path: req.log_path.as_deref().map(path_string).unwrap_or_default(),
            tty: req.tty,
            stdin: req.stdin,
            stdin_once: req.stdin_once,
            oom_files: req.oom_files.iter().map(|p| path_string(p)).collect(),
            timeout_ms: millis(timeout),
        });
        let what = format!("creating container {}", req.container_id);
        match self.call(msg, Some(timeout + ANSWER_SLACK), &what)? {
            response::Kind::Created(c) => Ok(c.pid),
            response::Kind::Error(e) if e.not_found => {
                Err(MonitorError::UnknownContainer(req.container_id.clone()))
            }
            response::Kind::Error(e) => Err(MonitorError::Runtime(e.message.trim().to_string())),
            other => Err(unexpected(&what, &other)),
        }
    }

    /// Waits for the container's exit: `None` if `timeout` passed first (`None` waits forever).
    pub fn wait(
        &self,
        container_id: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<Exit>, MonitorError> {
        // timeout_ms 0 means "no timeout" on the wire, so a zero timeout becomes 1 ms.
        let timeout_ms = timeout.map(|t| millis(t).max(1)).unwrap_or(0);
        let msg = request::Kind::Wait(proto::Wait {
            container_id: container_id.to_string(),
            timeout_ms,
        });
        let what = format!("waiting for container {container_id}");
        match self.call(msg, timeout.map(|t| t + ANSWER_SLACK), &what)? {
            response::Kind::Exit(e) => Ok(Some(Exit::from(&e))),
            response::Kind::Pending(_) => Ok(None),
            other => Err(self.error_reply(container_id, &what, other)),
        }
    }

    /// kubelet rotated the log: the monitor closes it and opens the log path anew.
    pub fn reopen_log(&self, container_id: &str) -> Result<(), MonitorError> {
        let msg = request::Kind::ReopenLog(proto::ReopenLog {
            container_id: container_id.to_string(),
        });
        let what = format!("reopening the log of container {container_id}");
        self.done(container_id, msg, &what)
    }

    /// Forgets a removed container (its exit file and runtime files go too); one still being created
    /// is killed once the runtime has made it. After the last one the monitor removes its socket
    /// and pid file, answers, and exits.
    /// The container was removed. The monitor exits once it knows no container, unless `stay`.
    pub fn forget(&self, container_id: &str, stay: bool) -> Result<(), MonitorError> {
        let msg = request::Kind::Forget(proto::Forget {
            container_id: container_id.to_string(),
            stay,
        });
        let what = format!("forgetting container {container_id}");
        self.done(container_id, msg, &what)
    }

    pub fn list(&self) -> Result<Vec<ContainerInfo>, MonitorError> {
        let what = "listing containers";
        match self.call(
            request::Kind::List(proto::List {}),
            Some(REQUEST_TIMEOUT),
            what,
        )? {
            response::Kind::Containers(list) => Ok(list
                .containers
                .into_iter()
                .map(|c| ContainerInfo {
                    exit: c.exit.as_ref().map(Exit::from),
                    container_id: c.container_id,
                    pid: c.pid,
                    log_bytes: c.log_bytes,
                    creating: c.creating,
                })
                .collect()),
            other => Err(self.error_reply("", what, other)),
        }
    }

    fn done(&self, container_id: &str, msg: request::Kind, what: &str) -> Result<(), MonitorError> {
        match self.call(msg, Some(REQUEST_TIMEOUT), what)? {
            response::Kind::Done(_) => Ok(()),
            other => Err(self.error_reply(container_id, what, other)),
        }
    }

    fn error_reply(&self, container_id: &str, what: &str, reply: response::Kind) -> MonitorError {
        match reply {
            response::Kind::Error(e) if e.not_found => {
                MonitorError::UnknownContainer(container_id.to_string())
            }
            response::Kind::Error(e) => {
                MonitorError::Protocol(format!("{what}: the monitor answered: {}", e.message))
            }
            other => unexpected(what, &other),
        }
    }

    /// One request and its response on a fresh connection; `timeout` bounds the wait for the
    /// response (`None`: forever).
    fn call(
        &self,
        kind: request::Kind,
        timeout: Option<Duration>,
        what: &str,
    ) -> Result<response::Kind, MonitorError> {
        let socket = self.dir.join(SOCKET);
        let mut stream = connect(&socket, REQUEST_TIMEOUT).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                MonitorError::NotRunning(self.dir.clone())
            }
            io::ErrorKind::TimedOut => {
                MonitorError::Timeout(format!("connecting to {}", socket.display()))
            }
            _ => MonitorError::io(format!("connecting to {}", socket.display()), e),
        })?;
        let setup = |s: &UnixStream| -> io::Result<()> {
            s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
            s.set_read_timeout(timeout)
        };
        setup(&stream).map_err(|e| MonitorError::io("setting socket timeouts", e))?;
        let request = proto::Request { kind: Some(kind) };
        write_frame(&mut stream, &request).map_err(|e| timeout_or_io(e, what))?;
        let response: proto::Response = read_frame(&mut stream).map_err(|e| match e {
            MonitorError::Io { source, .. } => timeout_or_io(source, what),
            other => other,
        })?;
        response
            .kind
            .ok_or_else(|| MonitorError::Protocol(format!("{what}: empty response")))
    }
}

/// The exit status of a child that should be exiting; killed if it does not within `limit` (it
/// closed the readiness pipe without exiting: not a berth-monitor).
fn reap_within(child: &mut Child, limit: Duration) -> String {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.to_string(),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                return child
                    .wait()
                    .map(|s| format!("killed, {s}"))
                    .unwrap_or_default();
            }
        }
    }
}

fn absolute(dir: &Path) -> Result<PathBuf, MonitorError> {
    std::path::absolute(dir)
        .map_err(|e| MonitorError::io(format!("resolving {}", dir.display()), e))
}

fn unexpected(what: &str, reply: &response::Kind) -> MonitorError {
    MonitorError::Protocol(format!("{what}: unexpected response {reply:?}"))
}

fn timeout_or_io(e: io::Error, what: &str) -> MonitorError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            MonitorError::Timeout(what.to_string())
        }
        _ => MonitorError::io(what, e),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn path_string(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `argv[0]` is a berth-monitor and `--dir` names `dir`.
fn is_monitor_cmdline(cmdline: &[u8], dir: &Path) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let Some(argv0) = args.first() else {
        return false;
    };
    let name = argv0.rsplit(|&b| b == b'/').next().unwrap_or(argv0);
    if !name.starts_with(b"berth-monitor") {
        return false;
    }
    args.windows(2)
        .any(|w| w[0] == b"--dir" && w[1] == dir.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_cmdline_check() {
        let dir = Path::new("/run/berth/monitors/abc");
        let ok = b"/usr/bin/berth-monitor\0--dir\0/run/berth/monitors/abc\0--ready-fd\x003\0";
        assert!(is_monitor_cmdline(ok, dir));
        assert!(!is_monitor_cmdline(ok, Path::new("/run/berth/monitors/ab")));
        assert!(!is_monitor_cmdline(
            b"/bin/sleep\0--dir\0/run/berth/monitors/abc\0",
            dir
        ));
        assert!(!is_monitor_cmdline(b"", dir));
    }

    #[test]
    fn open_without_a_monitor_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Monitor::open(dir.path()),
            Err(MonitorError::NotRunning(_))
        ));
        // A pid file naming a live process that is not a monitor (ourselves) is refused too.
        fs::write(dir.path().join(PID_FILE), std::process::id().to_string()).unwrap();
        assert!(matches!(
            Monitor::open(dir.path()),
            Err(MonitorError::NotRunning(_))
        ));
    }

    #[test]
    fn spawn_reports_a_monitor_that_dies_before_ready() {
        let dir = tempfile::tempdir().unwrap();
        // `false` exits at once without writing the readiness byte.
        let err = Monitor::spawn(Path::new("/bin/false"), dir.path(), &[]).unwrap_err();
        assert!(
            err.to_string().contains("exited before it was ready"),
            "{err}"
        );
        let err =
            Monitor::spawn(Path::new("/nonexistent/berth-monitor"), dir.path(), &[]).unwrap_err();
        assert!(matches!(err, MonitorError::Io { .. }), "{err}");
    }
}
