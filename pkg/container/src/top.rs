//! `berth top`: a running container's processes, read on the host from its cgroup and /proc, so
//! the image needs no `ps` (docker runs `ps` on the host for the same reason).
//!
//! The processes are those in the container's cgroup (in every hierarchy, child cgroups
//! included); a pod without a cgroup falls back to the container's main process and its
//! descendants. Users are named from the container's own /etc/passwd, read beneath its rootfs.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::ContainerService;
use crate::copy::IdMap;
use crate::error::ContainerError;
use crate::record::Phase;
use crate::resolve::Root;

/// Bounds the cgroup tree walk (nested cgroups a container made for itself).
const MAX_CGROUPS: usize = 1024;
/// Bounds /etc/passwd as read for user names.
const MAX_PASSWD: u64 = 1 << 20;

/// One process of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: i32,
    /// Its PID in the container's PID namespace; 0 if that is the host's.
    pub container_pid: i32,
    pub ppid: i32,
    /// Effective ids as the container sees them.
    pub uid: u32,
    pub gid: u32,
    /// `uid`'s name in the container's /etc/passwd, or empty.
    pub user: String,
    pub host_uid: u32,
    pub host_gid: u32,
    pub start_time_ns: i64,
    pub cpu_time_ns: u64,
    pub tty: String,
    pub args: Vec<String>,
    pub comm: String,
    pub state: String,
}

/// The fields of /proc/PID/stat after the command name, from `state` (field 3) on.
fn stat_fields(pid: i32) -> Option<(String, Vec<String>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest = stat.get(close + 1..)?;
    Some((comm, rest.split_whitespace().map(str::to_string).collect()))
}

/// The effective id of a `Uid:`/`Gid:` line, and the innermost `NSpid:`.
fn status_ids(pid: i32) -> Option<(u32, u32, i32, bool)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mut uid = None;
    let mut gid = None;
    let mut nspid = (pid, false);
    for line in status.lines() {
        let (key, value) = line.split_once(':')?;
        let second = || value.split_whitespace().nth(1)?.parse::<u32>().ok();
        match key {
            "Uid" => uid = second(),
            "Gid" => gid = second(),
            "NSpid" => {
                let pids: Vec<i32> = value
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect();
                if let Some(last) = pids.last() {
                    nspid = (*last, pids.len() > 1);
                }
            }
            _ => {}
        }
    }
    Some((uid?, gid?, nspid.0, nspid.1))
}

fn cmdline(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// A controlling terminal's name from `tty_nr`, as ps names it.
pub(crate) fn tty_name(tty_nr: u64) -> String {
    if tty_nr == 0 {
        return String::new();
    }
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    match major {
        136..=143 => format!("pts/{}", (major - 136) * 256 + minor),
        4 if minor < 64 => format!("tty{minor}"),
        4 => format!("ttyS{}", minor - 64),
        _ => format!("{major}:{minor}"),
    }
}

/// Clock ticks per second and the boot time (seconds since the epoch).
fn clock() -> (u64, i64) {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    let btime = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<i64>().ok())
        })
        .unwrap_or(0);
    (ticks, btime)
}

/// One process as `ps` would show it; `None` if it is gone.
fn process(pid: i32, ids: &IdMap, ticks: u64, btime: i64) -> Option<ProcessInfo> {
    let (comm, f) = stat_fields(pid)?;
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (host_uid, host_gid, inner_pid, namespaced) = status_ids(pid)?;
    let started = field(22).unwrap_or(0);
    let cpu = field(14).unwrap_or(0) + field(15).unwrap_or(0);
    Some(ProcessInfo {
        pid,
        container_pid: if namespaced { inner_pid } else { 0 },
        ppid: field(4).and_then(|p| i32::try_from(p).ok()).unwrap_or(0),
        uid: ids.container_uid(host_uid),
        gid: ids.container_gid(host_gid),
        user: String::new(),
        host_uid,
        host_gid,
        start_time_ns: (btime * 1_000_000_000)
            .saturating_add((started * 1_000_000_000 / ticks) as i64),
        cpu_time_ns: cpu.saturating_mul(1_000_000_000) / ticks,
        tty: tty_name(field(7).unwrap_or(0)),
        args: cmdline(pid),
        comm,
        state: f.first().cloned().unwrap_or_default(),
    })
}

/// The PIDs in a cgroup directory and the cgroups below it.
fn cgroup_pids(dir: &Path, pids: &mut BTreeSet<i32>) {
    let mut todo = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(dir) = todo.pop() {
        seen += 1;
        if seen > MAX_CGROUPS {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            todo.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
}

/// `root` and its descendants, by the parent PIDs in /proc.
fn descendants(root: i32) -> BTreeSet<i32> {
    let mut parent_of: Vec<(i32, i32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Some((_, f)) = stat_fields(pid)
                && let Some(ppid) = f.get(1).and_then(|p| p.parse::<i32>().ok())
            {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found: BTreeSet<i32> = BTreeSet::from([root]);
    loop {
        let before = found.len();
        for (pid, ppid) in &parent_of {
            if found.contains(ppid) {
                found.insert(*pid);
            }
        }
        if found.len() == before {
            return found;
        }
    }
}

/// uid → name from the container's /etc/passwd (resolved in its rootfs).
fn passwd_names(rootfs: &Path) -> HashMap<u32, String> {
    let mut names = HashMap::new();
    let Ok(root) = Root::open(rootfs) else {
        return names;
    };
    let Ok(fd) = root.resolve(
        Path::new("/etc/passwd"),
        libc::O_RDONLY | libc::O_NONBLOCK,
        true,
    ) else {
        return names;
    };
    let mut text = String::new();
    let file = std::fs::File::from(fd);
    if file.take(MAX_PASSWD).read_to_string(&mut text).is_err() {
        return names;
    }
    for line in text.lines() {
        let mut parts = line.split(':');
        if let (Some(name), _, Some(uid)) = (parts.next(), parts.next(), parts.next())
            && let Ok(uid) = uid.parse::<u32>()
        {
            names.entry(uid).or_insert_with(|| name.to_string());
        }
    }
    names
}

impl ContainerService {
    /// The running container's processes, by host PID. Returns its full ID too.
    pub async fn top(
        &self,
        id_or_prefix: &str,
    ) -> Result<(String, Vec<ProcessInfo>), ContainerError> {
        let id = self.resolve(id_or_prefix)?;
        let record = self.inner.record(&id)?;
        if record.phase != Phase::Running {
            return Err(ContainerError::WrongState {
                id: id.clone(),
                state: format!("{:?}", record.state()),
                needs: "not running: it has no processes",
            });
        }
        let sandbox = self.inner.deps.sandboxes.get(&record.sandbox_id);
        let ids = IdMap::from_maps(sandbox.as_ref().and_then(|s| s.userns.clone()));
        let cgroups = &self.inner.deps.cgroups;
        let dirs: Vec<PathBuf> = match sandbox.as_ref().and_then(|s| s.cgroup.as_ref()) {
            Some(cg) if cgroups.exists(cg) => cgroups.container_dirs(cg, &id),
            _ => Vec::new(),
        };
        let (main_pid, main_start) = (record.pid, record.pid_start_time);
        let rootfs = record.rootfs();
        let processes = tokio::task::spawn_blocking(move || {
            let mut pids = BTreeSet::new();
            for dir in &dirs {
                cgroup_pids(dir, &mut pids);
            }
            // No cgroup to read (or an empty one, as a runtime that put the container
            // elsewhere leaves it): the main process and what it started.
            if pids.is_empty() && crate::signal::start_time(main_pid) == Some(main_start) {
                pids = descendants(main_pid);
            }
            let (ticks, btime) = clock();
            let names = passwd_names(&rootfs);
            pids.into_iter()
                .filter_map(|pid| process(pid, &ids, ticks, btime))
                .map(|mut p| {
                    p.user = names.get(&p.uid).cloned().unwrap_or_default();
                    p
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(ContainerError::task("listing the container processes"))?;
        Ok((id, processes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_reads_back() {
        let (ticks, btime) = clock();
        assert!(ticks > 0 && btime > 0);
        let me = std::process::id() as i32;
        let p = process(me, &IdMap::default(), ticks, btime).unwrap();
        assert_eq!(p.pid, me);
        // SAFETY: getppid and geteuid have no preconditions.
        let (ppid, euid) = unsafe { (libc::getppid(), libc::geteuid()) };
        assert_eq!((p.ppid, p.host_uid, p.uid), (ppid, euid, euid));
        assert!(!p.args.is_empty() && !p.comm.is_empty());
        let now = berth_clock::now_ns();
        assert!(
            p.start_time_ns <= now + 1_000_000_000 && p.start_time_ns > now - 3_600_000_000_000
        );
        assert!(descendants(me).contains(&me));
    }

    #[test]
    fn terminals_are_named_as_ps_names_them() {
        assert_eq!(tty_name(0), "");
        assert_eq!(tty_name(136 << 8 | 3), "pts/3");
        assert_eq!(tty_name(137 << 8 | 1), "pts/257");
        assert_eq!(tty_name(4 << 8 | 1), "tty1");
        assert_eq!(tty_name(4 << 8 | 65), "ttyS1");
    }
}
