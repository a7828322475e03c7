//! Resident memory of a runtime's processes, read from /proc.
//!
//! The process set is: every `--pid`, every process whose `/proc/PID/comm`
//! matches a `--process-name`, and (with `--with-children`) every descendant
//! of those, found by walking the PPid links of all of /proc. Totals are sums
//! of `VmRSS` (and of `VmHWM`, the per-process peak) in KiB.
//!
//! Note: daemons that double-fork helpers (containerd's shims are reparented
//! to init or the nearest subreaper) do not show up as descendants: select
//! those with `--process-name` instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How to select the processes whose memory is measured.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub pids: Vec<u32>,
    pub names: Vec<String>,
    /// Only count `names` matches whose command line contains this string
    /// (e.g. the daemon's socket path), so that the same helper binary of
    /// another daemon on the machine is not counted.
    pub cmdline_filter: Option<String>,
    pub with_children: bool,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.pids.is_empty() && self.names.is_empty()
    }
}

/// One measured process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcRss {
    pub pid: u32,
    pub comm: String,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// A measurement of a process set at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RssSample {
    /// Sum of VmRSS over the process set, KiB.
    pub total_rss_kib: u64,
    /// Sum of VmHWM (peak RSS of each process over its lifetime), KiB.
    pub total_hwm_kib: u64,
    pub processes: Vec<ProcRss>,
}

/// Fields of /proc/PID/status we care about.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct StatusInfo {
    pub name: String,
    pub ppid: u32,
    pub rss_kib: u64,
    pub hwm_kib: u64,
}

/// Parse the text of /proc/PID/status. Kernel threads have no VmRSS: 0.
pub(crate) fn parse_status(text: &str) -> StatusInfo {
    let mut info = StatusInfo::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let kib = || {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        match key {
            "Name" => info.name = value.to_string(),
            "PPid" => info.ppid = value.parse().unwrap_or(0),
            "VmRSS" => info.rss_kib = kib(),
            "VmHWM" => info.hwm_kib = kib(),
            _ => {}
        }
    }
    info
}

/// `/proc/PID/comm` holds at most 15 bytes (TASK_COMM_LEN - 1), so a longer
/// name such as `containerd-shim-runc-v2` shows up as `containerd-shim`.
pub(crate) fn comm_matches(comm: &str, wanted: &str) -> bool {
    const TASK_COMM_LEN: usize = 15;
    if comm == wanted {
        return true;
    }
    if wanted.len() > TASK_COMM_LEN && comm.len() == TASK_COMM_LEN {
        return wanted.as_bytes().starts_with(comm.as_bytes());
    }
    false
}

fn all_pids(proc_root: &Path) -> Vec<u32> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .collect()
}

fn read_comm(proc_root: &Path, pid: u32) -> Option<String> {
    fs::read_to_string(proc_root.join(pid.to_string()).join("comm"))
        .ok()
        .map(|s| s.trim_end_matches('\n').to_string())
}

/// Command line with NUL separators turned into spaces.
fn read_cmdline(proc_root: &Path, pid: u32) -> Option<String> {
    fs::read(proc_root.join(pid.to_string()).join("cmdline"))
        .ok()
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
}

fn read_status(proc_root: &Path, pid: u32) -> Option<StatusInfo> {
    fs::read_to_string(proc_root.join(pid.to_string()).join("status"))
        .ok()
        .map(|t| parse_status(&t))
}

/// Resolve the selector to the set of live pids under `proc_root`.
fn resolve_in(proc_root: &Path, sel: &Selector) -> BTreeSet<u32> {
    let pids = all_pids(proc_root);
    let mut set: BTreeSet<u32> = sel
        .pids
        .iter()
        .copied()
        .filter(|p| proc_root.join(p.to_string()).exists())
        .collect();
    if !sel.names.is_empty() {
        for &pid in &pids {
            let matched = read_comm(proc_root, pid)
                .is_some_and(|comm| sel.names.iter().any(|n| comm_matches(&comm, n)))
                && sel
                    .cmdline_filter
                    .as_deref()
                    .is_none_or(|f| read_cmdline(proc_root, pid).is_some_and(|c| c.contains(f)));
            if matched {
                set.insert(pid);
            }
        }
    }
    if sel.with_children {
        let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &pid in &pids {
            if let Some(st) = read_status(proc_root, pid) {
                children.entry(st.ppid).or_default().push(pid);
            }
        }
        set = descendants(&set, &children);
    }
    set
}

/// `roots` plus all their descendants, given a parent -> children map.
pub(crate) fn descendants(
    roots: &BTreeSet<u32>,
    children: &BTreeMap<u32, Vec<u32>>,
) -> BTreeSet<u32> {
    let mut out = roots.clone();
    let mut stack: Vec<u32> = roots.iter().copied().collect();
    while let Some(pid) = stack.pop() {
        if let Some(kids) = children.get(&pid) {
            for &k in kids {
                if out.insert(k) {
                    stack.push(k);
                }
            }
        }
    }
    out
}

/// Measure the selected processes now.
pub fn sample(sel: &Selector) -> RssSample {
    let proc_root = Path::new("/proc");
    let mut out = RssSample::default();
    for pid in resolve_in(proc_root, sel) {
        // A process may exit between resolution and reading: skip it.
        if let Some(st) = read_status(proc_root, pid) {
            out.total_rss_kib += st.rss_kib;
            out.total_hwm_kib += st.hwm_kib;
            out.processes.push(ProcRss {
                pid,
                comm: st.name,
                rss_kib: st.rss_kib,
                hwm_kib: st.hwm_kib,
            });
        }
    }
    out
}

/// `Pss:` of the text of /proc/PID/smaps_rollup, KiB.
pub(crate) fn parse_pss(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix("Pss:")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// VmRSS of `pid`, KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    read_status(Path::new("/proc"), pid).map(|s| s.rss_kib)
}

/// One of a runtime's helper processes, with its PSS.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcMem {
    pub pid: u32,
    pub comm: String,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// A runtime's helper processes (shims, monitors, pause, init): those whose comm matches one of
/// `names` and that are, or descend from, one of `daemon_pids` or a `names` match whose command
/// line contains `filter` (with no filter: any `names` match). The daemons themselves and any
/// process of another name (the containers' own) are not included.
pub fn helper_processes(
    names: &[String],
    daemon_pids: &[u32],
    filter: Option<&str>,
) -> Vec<ProcMem> {
    helper_processes_in(Path::new("/proc"), names, daemon_pids, filter)
}

fn helper_processes_in(
    proc_root: &Path,
    names: &[String],
    daemon_pids: &[u32],
    filter: Option<&str>,
) -> Vec<ProcMem> {
    let sel = Selector {
        pids: daemon_pids.to_vec(),
        names: names.to_vec(),
        cmdline_filter: filter.map(str::to_string),
        with_children: true,
    };
    let mut out = Vec::new();
    for pid in resolve_in(proc_root, &sel) {
        let Some(st) = read_status(proc_root, pid) else {
            continue;
        };
        if !names.iter().any(|n| comm_matches(&st.name, n)) {
            continue;
        }
        let pss = fs::read_to_string(proc_root.join(pid.to_string()).join("smaps_rollup"))
            .ok()
            .and_then(|t| parse_pss(&t))
            .unwrap_or(0);
        out.push(ProcMem {
            pid,
            comm: st.name,
            rss_kib: st.rss_kib,
            pss_kib: pss,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status() {
        let text = "Name:\tcontainerd\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nPid:\t42\nPPid:\t1\nVmHWM:\t   51234 kB\nVmRSS:\t   40960 kB\nThreads:\t12\n";
        let st = parse_status(text);
        assert_eq!(
            st,
            StatusInfo {
                name: "containerd".into(),
                ppid: 1,
                rss_kib: 40960,
                hwm_kib: 51234
            }
        );
        // Kernel threads: no Vm* lines.
        let st = parse_status("Name:\tkthreadd\nPPid:\t0\n");
        assert_eq!(st.rss_kib, 0);
    }

    #[test]
    fn comm_truncation() {
        assert!(comm_matches("containerd", "containerd"));
        assert!(!comm_matches("containerd", "containerd-shim"));
        assert!(comm_matches("containerd-shim", "containerd-shim-runc-v2"));
        assert!(!comm_matches("containerd-sh", "containerd-shim-runc-v2"));
        assert!(!comm_matches("berthd", "berth"));
    }

    #[test]
    fn descendant_walk() {
        let mut children = BTreeMap::new();
        children.insert(1, vec![10, 20]);
        children.insert(10, vec![11]);
        children.insert(11, vec![12]);
        children.insert(20, vec![21]);
        let roots: BTreeSet<u32> = [10].into_iter().collect();
        let d = descendants(&roots, &children);
        assert_eq!(d.into_iter().collect::<Vec<_>>(), vec![10, 11, 12]);
    }

    #[test]
    fn name_match_with_cmdline_filter() {
        let me = std::process::id();
        let comm = read_comm(Path::new("/proc"), me).unwrap();
        let cmdline = read_cmdline(Path::new("/proc"), me).unwrap();
        let argv0 = cmdline.split(' ').next().unwrap().to_string();
        let sel = |filter: Option<String>| Selector {
            pids: vec![],
            names: vec![comm.clone()],
            cmdline_filter: filter,
            with_children: false,
        };
        assert!(resolve_in(Path::new("/proc"), &sel(None)).contains(&me));
        assert!(resolve_in(Path::new("/proc"), &sel(Some(argv0))).contains(&me));
        let none = sel(Some("no-such-arg-berth-bench-xyz".into()));
        assert!(!resolve_in(Path::new("/proc"), &none).contains(&me));
    }

    #[test]
    fn samples_own_process() {
        let sel = Selector {
            pids: vec![std::process::id()],
            names: vec![],
            cmdline_filter: None,
            with_children: true,
        };
        let s = sample(&sel);
        assert!(s.total_rss_kib > 0);
        assert!(s.processes.iter().any(|p| p.pid == std::process::id()));
    }

    #[test]
    fn parses_pss() {
        let text = "55d0c0a00000-7ffd1e5fe000 ---p 00000000 00:00 0 [rollup]\nRss:                1876 kB\nPss:                 612 kB\nPss_Anon:            300 kB\n";
        assert_eq!(parse_pss(text), Some(612));
        assert_eq!(parse_pss("Rss: 1 kB\n"), None);
    }

    #[test]
    fn helper_processes_keep_only_named_descendants() {
        // Our own process as the "daemon", with a child named `sleep` as its helper.
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let me = std::process::id();
        // spawn returns once the child is forked: until it has exec'd, its name is ours.
        let comm = format!("/proc/{}/comm", child.id());
        for _ in 0..200 {
            if fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let names = vec!["sleep".to_string()];
        let found = helper_processes(&names, &[me], None);
        let ours: Vec<_> = found.iter().filter(|p| p.pid == child.id()).collect();
        let other = helper_processes(&names, &[me], Some("no-such-arg-berth-bench-xyz"));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(ours.len(), 1, "{found:?}");
        assert!(ours[0].rss_kib > 0);
        // The daemon itself is not a helper.
        assert!(!found.iter().any(|p| p.pid == me));
        // Descendants of the daemon count even when the filter does not match them.
        assert!(other.iter().any(|p| p.pid == child.id()), "{other:?}");
    }
}
