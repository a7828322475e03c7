//! The pod's init process, for pods whose containers share one PID namespace.
//!
//! Only such pods have a process of their own: `berth-init`, started as PID 1 of a fresh PID
//! namespace that the containers then join through `/proc/<pid>/ns/pid`. It is started from a
//! dedicated thread that first unshares its PID namespace for children, so berthd itself never
//! changes namespace and nothing is forked but the init.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::SandboxError;

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

/// Starts `binary` as PID 1 of a new PID namespace.
pub fn start(binary: &Path) -> Result<InitProcess, SandboxError> {
    let binary = binary.to_path_buf();
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|e| SandboxError::Internal(format!("no async runtime for the pod init: {e}")))?;
    let spawned = std::thread::Builder::new()
        .name("berth-pidns".into())
        .spawn(move || -> Result<i32, SandboxError> {
            // This thread's children get a new PID namespace; the thread exits right after.
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|e| SandboxError::Internal(format!("unshare(CLONE_NEWPID): {e}")))?;
            // Spawned through tokio so that its exit is reaped without a waiting thread.
            let _runtime = handle.enter();
            let child = tokio::process::Command::new(&binary)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(false)
                .spawn()
                .map_err(|source| SandboxError::Io {
                    op: "start",
                    path: binary.clone(),
                    source,
                })?;
            child
                .id()
                .map(|pid| pid as i32)
                .ok_or_else(|| SandboxError::Internal("the pod init exited at once".into()))
        })
        .map_err(|e| SandboxError::Internal(format!("starting the PID namespace thread: {e}")))?;
    let pid = spawned
        .join()
        .map_err(|_| SandboxError::Internal("the PID namespace thread panicked".into()))??;
    set_oom_score_adj(pid);
    let start_time = start_time(pid).ok_or_else(|| {
        SandboxError::Internal(format!("the pod init (pid {pid}) exited at once"))
    })?;
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
}
