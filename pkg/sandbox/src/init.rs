//! The pod's init process, for pods whose containers share one PID namespace.
//!
//! Only such pods have a process of their own: `berth-init`, started as PID 1 of a fresh PID
//! namespace that the containers then join through `/proc/<pid>/ns/pid`. It is started from a
//! dedicated thread that first unshares its PID namespace for children, so berthd itself never
//! changes namespace and nothing is forked but the init.
//!
//! The init belongs to the pod: between fork and exec it moves itself into the pod's
//! `berth-init` child cgroup, so it never runs (nor allocates) in berthd's cgroup, is accounted
//! and limited with the pod, and survives a restart of berthd's service.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Why the pod's init could not be started or stopped. Berth's own failures, all of them: the
/// request only chose whether there is an init.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("cgroup path with a NUL byte: {0}")]
    CgroupPath(#[source] std::ffi::NulError),
    #[error("no async runtime for the pod init: {0}")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
    #[error("starting the PID namespace thread: {0}")]
    SpawnThread(#[source] std::io::Error),
    #[error("the PID namespace thread panicked")]
    ThreadPanicked,
    #[error("unshare(CLONE_NEWPID): {0}")]
    Unshare(#[source] nix::Error),
    /// The error may come from joining the cgroups or from exec: the message names both.
    #[error("starting {binary} in the pod cgroup ({cgroups}): {source}")]
    Spawn {
        binary: PathBuf,
        cgroups: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the pod init exited at once")]
    ExitedAtOnce,
    #[error("the pod init (pid {0}) exited at once")]
    ExitedAtOnceAs(i32),
    #[error("the pod init (pid {pid}) did not exit within {timeout:?} of SIGKILL")]
    StillRunning { pid: i32, timeout: Duration },
}

/// What kubelet asks for its infra containers (containerd's and CRI-O's pause get this too): the
/// OOM killer should take anything else first.
const INIT_OOM_SCORE_ADJ: i32 = -998;

/// A running init: the pid, and its start time to tell it from a later process with the same pid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitProcess {
    pub pid: i32,
    pub start_time: u64,
}

impl InitProcess {
    /// Whether this exact process still runs.
    pub fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }

    /// The PID namespace the pod's containers join.
    pub fn pid_namespace(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/pid", self.pid))
    }
}

/// Field 22 of /proc/<pid>/stat (clock ticks after boot), after the parenthesised command name.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    // after_comm starts with " <state> ..." = field 3; start time is field 22.
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// Sets the init's OOM score. Lowering a score needs CAP_SYS_RESOURCE, which some hosts' root
/// lacks: then the process keeps the score it inherited (clamped, not failed).
fn set_oom_score_adj(pid: i32) {
    let path = format!("/proc/{pid}/oom_score_adj");
    if let Err(e) = std::fs::write(&path, INIT_OOM_SCORE_ADJ.to_string()) {
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        tracing::debug!(pid, error = %e, kept = kept.trim(), "cannot lower the pod init's oom_score_adj; keeping the inherited one");
    }
}

/// Whether the process has exited: gone, reused by another process, or a zombie (whose cgroup
/// membership has already ended, so its cgroup can be removed).
fn exited(init: &InitProcess) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", init.pid)) else {
        return true;
    };
    let Some(after_comm) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return true;
    };
    let mut fields = after_comm.split_whitespace();
    let state = fields.next();
    let started = fields.nth(18).and_then(|t| t.parse::<u64>().ok());
    started != Some(init.start_time) || matches!(state, Some("Z" | "X"))
}

/// Moves the calling process into every cgroup whose `cgroup.procs` file is given. Runs in the
/// forked child before exec: only async-signal-safe calls (open, write, close) on memory prepared
/// before the fork, and the error is a plain errno.
fn join_cgroups(procs: &[CString]) -> std::io::Result<()> {
    for file in procs {
        // SAFETY: `file` is a valid NUL-terminated path that outlives the call.
        let fd = unsafe { libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // "0" means the writing process: its own pid would be 1, a pid of its new namespace.
        // SAFETY: writes one byte from a static buffer to the fd opened above.
        let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        let error = std::io::Error::last_os_error();
        // SAFETY: closes the fd opened above, exactly once.
        unsafe { libc::close(fd) };
        if written != 1 {
            return Err(error);
        }
    }
    Ok(())
}

/// Starts `binary` as PID 1 of a new PID namespace, inside the cgroups whose `cgroup.procs` files
/// are given (the pod's init cgroup in every hierarchy) from before it execs.
pub fn start(binary: &Path, cgroup_procs: &[PathBuf]) -> Result<InitProcess, InitError> {
    let binary = binary.to_path_buf();
    let procs = cgroup_procs
        .iter()
        .map(|p| CString::new(p.as_os_str().as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(InitError::CgroupPath)?;
    let cgroups = cgroup_procs
        .iter()
        .filter_map(|p| p.parent())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let handle = tokio::runtime::Handle::try_current().map_err(InitError::NoRuntime)?;
    let spawned = std::thread::Builder::new()
        .name("berth-pidns".into())
        .spawn(move || -> Result<i32, InitError> {
            // This thread's children get a new PID namespace; the thread exits right after.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(InitError::Unshare)?;
            // Spawned through tokio so that its exit is reaped without a waiting thread.
            let _runtime = handle.enter();
            let mut command = tokio::process::Command::new(&binary);
            command
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(false);
            // SAFETY: join_cgroups only makes async-signal-safe calls on memory allocated before
            // the fork (see there), as required between fork and exec.
            unsafe {
                command.pre_exec(move || join_cgroups(&procs));
            }
            let child = command.spawn().map_err(|source| InitError::Spawn {
                binary: binary.clone(),
                cgroups,
                source,
            })?;
            child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .ok_or(InitError::ExitedAtOnce)
        })
        .map_err(InitError::SpawnThread)?;
    let pid = spawned.join().map_err(|_| InitError::ThreadPanicked)??;
    set_oom_score_adj(pid);
    let start_time = start_time(pid).ok_or(InitError::ExitedAtOnceAs(pid))?;
    Ok(InitProcess { pid, start_time })
}

/// Stops the init (and with it every process left in the pod's PID namespace). Idempotent.
pub fn stop(init: &InitProcess) {
    if init.alive() {
        // SIGKILL from outside always reaches a namespace's PID 1; its death kills the rest.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(init.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// How long [`stop_and_wait`] waits for the init to die. SIGKILL is not blockable, but PID 1 of a
/// namespace only finishes exiting once the kernel has killed and reaped everything else in it.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Kills the init and waits until it has exited, so that its cgroup can be removed. Idempotent.
pub async fn stop_and_wait(init: &InitProcess) -> Result<(), InitError> {
    stop(init);
    let deadline = Instant::now() + EXIT_TIMEOUT;
    while !exited(init) {
        if Instant::now() > deadline {
            return Err(InitError::StillRunning {
                pid: init.pid,
                timeout: EXIT_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// `berth-init` beside the running berthd, as installed; else from PATH.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("berth-init")))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("berth-init"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_start_time() {
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        assert!(t > 0);
        assert!(
            InitProcess {
                pid: me,
                start_time: t
            }
            .alive()
        );
        assert!(
            !InitProcess {
                pid: me,
                start_time: t + 1
            }
            .alive()
        );
    }

    #[test]
    fn a_live_process_has_not_exited_a_changed_start_time_has() {
        let me = std::process::id() as i32;
        let start_time = start_time(me).unwrap();
        assert!(!exited(&InitProcess {
            pid: me,
            start_time
        }));
        assert!(exited(&InitProcess {
            pid: me,
            start_time: start_time + 1
        }));
        assert!(exited(&InitProcess {
            pid: i32::MAX,
            start_time
        }));
    }
}
