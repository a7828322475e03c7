//! Emptying a pod's own cgroups before their removal.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{CgroupError, Cgroups, INIT_CGROUP, MONITOR_CGROUP, PodCgroup, parent};

/// How long [`Cgroups::kill_leftovers`] waits for killed processes to leave. SIGKILL cannot be
/// blocked, but a PID namespace's init only finishes exiting once everything else in it has.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Cgroups {
    /// Kills every process still in the pod's own cgroups (its `berth-init` and `berth-monitor`
    /// children, and the pod cgroup itself where Berth created it) and waits until they have
    /// left, so that [`Cgroups::remove`] can delete them. Returns the pids it killed: none in the
    /// normal case. Meant for RemovePodSandbox once the pod's containers are gone, when anything
    /// left is a leftover (an init whose start a crash kept from being recorded). A pod cgroup
    /// kubelet made is not Berth's to empty and is only looked into for Berth's children.
    pub fn kill_leftovers(&self, cg: &PodCgroup) -> Result<Vec<i32>, CgroupError> {
        parent::validate_cgroupfs_path(&cg.path)?;
        let mut dirs = Vec::new();
        for dir in cg.fs_paths() {
            dirs.extend([MONITOR_CGROUP, INIT_CGROUP].map(|helper| dir.join(helper)));
            if cg.created_dirs().contains(&dir) {
                dirs.push(dir);
            }
        }
        let deadline = Instant::now() + KILL_WAIT;
        let mut killed = Vec::new();
        loop {
            let mut left = Vec::new();
            for dir in &dirs {
                let pids = procs(dir)?;
                if !pids.is_empty() {
                    left.push((dir, pids));
                }
            }
            let Some((first, pids)) = left.first() else {
                return Ok(killed);
            };
            if Instant::now() >= deadline {
                return Err(CgroupError::Busy {
                    path: first.to_path_buf(),
                    detail: format!(
                        "processes {pids:?} are still there {KILL_WAIT:?} after SIGKILL"
                    ),
                });
            }
            for (dir, pids) in left {
                for pid in &pids {
                    if !killed.contains(pid) {
                        killed.push(*pid);
                    }
                }
                // cgroup v2 (5.14+) kills the whole cgroup at once, so nothing forks past the
                // kill; v1 and older kernels pid by pid, repeated until the cgroup is empty.
                if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
                    for pid in pids {
                        // A pid that exited meanwhile is what we wanted anyway.
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The pids in `dir`'s `cgroup.procs`; none if the cgroup does not exist.
fn procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let file: PathBuf = dir.join("cgroup.procs");
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(CgroupError::Io {
            op: "read",
            path: file,
            source: e,
        }),
    }
}
