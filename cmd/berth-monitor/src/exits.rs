//! Turning a wait status into an exit record, and the OOM-kill counters of cgroup files.

use std::path::{Path, PathBuf};

use berth_monitor_api::Exit;

/// The `oom_kill N` counter of a `memory.events` (v2) or `memory.oom_control` (v1) file; a missing
/// or unreadable file counts 0 (the cgroup does not exist yet at create time, or is gone).
pub fn oom_count(path: &Path) -> u64 {
    let Ok(text) = std::fs::read_to_string(path) else {
        return 0;
    };
    text.lines()
        .find_map(|line| {
            let (key, value) = line.split_once(' ')?;
            (key == "oom_kill").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0)
}

/// Counters at create time, to tell later whether any grew.
pub struct OomBaseline {
    files: Vec<(PathBuf, u64)>,
}

impl OomBaseline {
    pub fn read(files: &[String]) -> OomBaseline {
        let files = files
            .iter()
            .filter(|f| !f.is_empty())
            .map(|f| {
                let path = PathBuf::from(f);
                let count = oom_count(&path);
                (path, count)
            })
            .collect();
        OomBaseline { files }
    }

    pub fn grew(&self) -> bool {
        self.files
            .iter()
            .any(|(path, base)| oom_count(path) > *base)
    }
}

/// The exit record for a wait status: the exit status, or 128 + signal.
pub fn exit_from_status(status: libc::c_int, finished_at_ns: i64, oom_killed: bool) -> Exit {
    let (exit_code, signal) = if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, sig)
    } else {
        (libc::WEXITSTATUS(status), 0)
    };
    Exit {
        exit_code,
        signal,
        finished_at_ns,
        oom_killed,
        log_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counters() {
        let dir = std::env::temp_dir().join(format!("berth-monitor-oom-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v2 = dir.join("memory.events");
        let v1 = dir.join("memory.oom_control");
        std::fs::write(
            &v2,
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 2\noom_group_kill 0\n",
        )
        .unwrap();
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n").unwrap();
        assert_eq!(oom_count(&v2), 2);
        assert_eq!(oom_count(&v1), 0);
        assert_eq!(oom_count(&dir.join("missing")), 0);

        let files = [
            v1.to_string_lossy().into_owned(),
            dir.join("later").to_string_lossy().into_owned(),
        ];
        let base = OomBaseline::read(&files);
        assert!(!base.grew());
        // A file that appears after create (the runtime made the cgroup) counts from 0.
        std::fs::write(dir.join("later"), "oom_kill 1\n").unwrap();
        assert!(base.grew());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exit_codes() {
        // Wait statuses as the kernel encodes them: exit code << 8, or the signal number.
        assert_eq!(
            exit_from_status(3 << 8, 5, false),
            Exit {
                exit_code: 3,
                signal: 0,
                finished_at_ns: 5,
                oom_killed: false,
                log_bytes: 0,
            }
        );
        assert_eq!(
            exit_from_status(9, 5, true),
            Exit {
                exit_code: 137,
                signal: 9,
                finished_at_ns: 5,
                oom_killed: true,
                log_bytes: 0,
            }
        );
    }
}
