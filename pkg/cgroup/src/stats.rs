//! Resource usage of pod and container cgroups, as CRI's `ContainerStats`,
//! `ListContainerStats`, `PodSandboxStats` and `ListPodSandboxStats` report it.
//!
//! The values come straight from the kernel's cgroup files, parsed the way youki's libcgroups
//! does (its `stats::parse_value`, and its convention of reading `max` as `u64::MAX`), but not
//! through its `StatsProvider`s or managers' `stats()`. ListContainerStats calls this once per
//! container, so the number of files opened is what the RPC costs (each is an open/read/close,
//! 20-60 µs on a loaded 2-core VM), and libcgroups reads far more than CRI needs. Measured on
//! a live v1 cgroup (`tests/stats.rs`, `bench_against_libcgroups_manager`, release build on a
//! loaded 2-core VM): `container_stats` 0.3-0.6 ms, libcgroups' v1 `Manager::stats()` 0.7-1.1 ms,
//! `Manager::new()` + `stats()` 4.4-7 ms. Why:
//! - its v1 manager's `new()` re-parses `/proc/self/mountinfo` and `/proc/self/cgroup` once for
//!   each of its 12 controllers, and `stats()` then reads every controller: blkio (a dozen
//!   files), hugetlb, per-CPU usage, and for memory four `usage/max_usage/limit/failcnt`
//!   quadruples (memory, memsw, kmem, kmem.tcp) plus `use_hierarchy`;
//! - its v1 memory stats fail outright on a host without swap accounting (no `memory.memsw.*`),
//!   and index `memory.stat` with `stats["cache"]`, a panic on a file without that key;
//! - the v1 manager finds mounts by itself (fixed controller list, never our hierarchy list), so
//!   it can neither follow [`Cgroups::with_root`] nor be tested on a fixture tree;
//! - its file helpers (`common::read_cgroup_file`, `stats::parse_single_value`) use
//!   `fs::read_to_string`, which fstat()s first and, since cgroup files report size 0, reads in
//!   growing chunks from 32 bytes (7-8 reads for a `memory.stat`): 15-25% slower per cgroup than
//!   the single read into a page-sized buffer done here (`read_file`);
//! - `parse_flat_keyed_data` is private to libcgroups, so keyed files are scanned here (only the
//!   keys CRI needs are converted).
//!
//! Per cgroup this reads 12 files on v1 (`cpuacct.usage`, `cpuacct.stat`, `cpu.stat`, seven
//! memory files, `pids.current`, `pids.max`) and 9 on v2; see `stats/v1.rs` and `stats/v2.rs`.
//!
//! A controller that this cgroup does not have (no such v1 hierarchy, a v2 controller not
//! enabled for it) leaves its part `None`. A cgroup directory that is missing in a hierarchy
//! that should hold it is [`CgroupError::NotFound`], also when it disappears between two reads
//! (the container was just deleted).

mod psi;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use libcgroups::stats::parse_value;

use crate::hierarchy::Kind;
use crate::{CgroupError, Cgroups, PodCgroup};

pub use psi::{Pressure, PsiData, PsiStats};

/// One cgroup's usage, read at one moment. Each part is `None` when the host has no such
/// controller for this cgroup (e.g. no pids hierarchy) — never an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupStats {
    pub cpu: Option<CpuStats>,
    pub memory: Option<MemoryStats>,
    pub pids: Option<PidsStats>,
    /// Pressure stall information, from the cgroup2 hierarchy (also on hybrid hosts); `None`
    /// without PSI or when the cgroup has no cgroup2 directory.
    pub pressure: Option<Pressure>,
}

/// CPU time, cumulative since the cgroup was created. All times in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Total CPU time (v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`).
    pub usage_ns: u64,
    /// User-mode CPU time (v1 `cpuacct.stat` `user`, at USER_HZ resolution; v2 `user_usec`).
    pub user_ns: u64,
    /// Kernel-mode CPU time (v1 `cpuacct.stat` `system`; v2 `system_usec`).
    pub system_ns: u64,
    /// CFS periods elapsed with a quota set (`nr_periods`); 0 without the v2 cpu controller.
    pub periods: u64,
    /// Periods in which the cgroup was throttled (`nr_throttled`).
    pub throttled_periods: u64,
    /// Time spent throttled (v1 `throttled_time`, v2 `throttled_usec`).
    pub throttled_ns: u64,
}

/// Memory usage, in bytes unless named otherwise. The `memory.stat` values are hierarchical
/// (v1 `total_*`, v2 always), so a pod's include its containers'.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub usage_bytes: u64,
    /// What kubelet evicts on, computed like cadvisor: usage minus inactive file pages
    /// (v1 `total_inactive_file`, v2 `inactive_file`), floored at 0.
    pub working_set_bytes: u64,
    /// Anonymous memory: v1 `total_rss`, v2 `anon`.
    pub rss_bytes: u64,
    /// Page cache: v1 `total_cache`, v2 `file`.
    pub cache_bytes: u64,
    /// Mapped files: v1 `total_mapped_file`, v2 `file_mapped`.
    pub mapped_file_bytes: u64,
    /// Page faults: v1 `total_pgfault`, v2 `pgfault` (a count).
    pub page_faults: u64,
    /// Major page faults: v1 `total_pgmajfault`, v2 `pgmajfault` (a count).
    pub major_page_faults: u64,
    /// The memory limit; `None` when unlimited (v1's "no limit" value, v2 `max`).
    pub limit_bytes: Option<u64>,
    /// Swap in use: v1 `memory.memsw.usage_in_bytes` − usage, v2 `memory.swap.current`;
    /// `None` when the kernel does no swap accounting (the files are missing).
    pub swap_usage_bytes: Option<u64>,
    /// How much swap the cgroup may use on top of its memory: v2 `memory.swap.max`, v1
    /// `memory.memsw.limit_in_bytes` − `memory.limit_in_bytes` (v1 limits memory+swap
    /// together). `None` when unlimited or without swap accounting.
    pub swap_limit_bytes: Option<u64>,
    /// How often the limit was hit: v1 `memory.failcnt`, v2 `memory.events` `max`.
    pub failcnt: u64,
    /// Processes killed by the OOM killer in this cgroup: v1 `memory.oom_control` `oom_kill`
    /// (0 on kernels before 4.13, which lack it), v2 `memory.events` `oom_kill`.
    pub oom_kills: u64,
}

impl MemoryStats {
    /// Memory left before the limit (limit − working set, saturating at 0), as CRI's
    /// `available_bytes`; `None` when unlimited.
    pub fn available_bytes(&self) -> Option<u64> {
        self.limit_bytes
            .map(|limit| limit.saturating_sub(self.working_set_bytes))
    }
}

/// Process (task) count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidsStats {
    /// `pids.current`.
    pub current: u64,
    /// `pids.max`; `None` for `max` (no limit).
    pub limit: Option<u64>,
}

impl Cgroups {
    /// The pod cgroup's stats (`PodCgroup.path` in every hierarchy in use). Hierarchical: the
    /// pod's containers and its monitor are included.
    pub fn pod_stats(&self, pod: &PodCgroup) -> Result<CgroupStats, CgroupError> {
        self.stats_at(&pod.path)
    }

    /// A container's cgroup stats (the cgroup at [`PodCgroup::container_fs_path`]).
    pub fn container_stats(
        &self,
        pod: &PodCgroup,
        container_id: &str,
    ) -> Result<CgroupStats, CgroupError> {
        self.stats_at(&pod.container_fs_path(container_id))
    }

    /// Stats of any cgroup given in cgroupfs form (`/berth/abc/def`; `/` is the root cgroup,
    /// where the kernel keeps no pids or v2 memory counters, so those parts are `None`).
    /// A path with `.`/`..` components or not starting with `/` is refused with an
    /// [`CgroupError::InvalidParent`] error, so nothing outside the hierarchies is read.
    pub fn stats_at(&self, path: &str) -> Result<CgroupStats, CgroupError> {
        let rel = relative_path(path)?;
        let mut stats = CgroupStats::default();
        let mut cpu = CpuStats::default();
        let mut has_cpu = false;
        let mut consulted = false;
        for h in &self.hierarchies {
            let controllers = match &h.kind {
                Kind::V1 { controllers } => controllers,
                Kind::V2 { managed: true } => {
                    consulted = true;
                    let dir = Dir::new(h.mount.join(&rel));
                    v2::read(&dir, &mut stats)?;
                    stats.pressure = psi::read(&dir)?;
                    continue;
                }
                // The unified hierarchy of a hybrid host (hierarchy.rs): cpu, memory and pids
                // are bound to their v1 hierarchies there, and its core cpu.stat would only
                // repeat cpuacct, so everything but pressure comes from the v1 ones. A cgroup
                // the runtime did not place there has no pressure, which is not an error.
                Kind::V2 { managed: false } => {
                    let dir = Dir::new(h.mount.join(&rel));
                    if dir.path.is_dir() {
                        stats.pressure = psi::read(&dir)?;
                    }
                    continue;
                }
            };
            let has = |c: &str| controllers.iter().any(|x| x == c);
            if !["cpu", "cpuacct", "memory", "pids"].iter().any(|c| has(c)) {
                continue;
            }
            consulted = true;
            let dir = Dir::new(h.mount.join(&rel));
            if has("cpuacct") {
                has_cpu |= v1::cpuacct(&dir, &mut cpu)?;
            }
            if has("cpu") {
                has_cpu |= v1::throttling(&dir, &mut cpu)?;
            }
            if has("memory") {
                stats.memory = v1::memory(&dir)?;
            }
            if has("pids") {
                stats.pids = pids(&dir)?;
            }
        }
        if has_cpu {
            stats.cpu = Some(cpu);
        }
        if !consulted {
            // No hierarchy with a controller we read: still tell a missing cgroup from one
            // that merely has nothing to report.
            if let Some(h) = self.hierarchies.first() {
                Dir::new(h.mount.join(&rel)).check_exists()?;
            }
        }
        Ok(stats)
    }
}

/// The cgroupfs path relative to a hierarchy's mount, validated so that joining it cannot
/// leave the hierarchy.
fn relative_path(path: &str) -> Result<String, CgroupError> {
    if path == "/" {
        return Ok(String::new());
    }
    let valid = crate::parent::validate_cgroupfs_path(path)?;
    Ok(valid.trim_start_matches('/').to_owned())
}

/// `pids.current` and `pids.max`, the same files on v1 and v2. `None` when the cgroup has no
/// pids counter (the root cgroup, or the v2 pids controller not enabled for it).
fn pids(dir: &Dir) -> Result<Option<PidsStats>, CgroupError> {
    let Some(current) = dir.value_opt("pids.current")? else {
        return Ok(None);
    };
    let max = dir.value("pids.max")?;
    Ok(Some(PidsStats {
        current,
        limit: (max != u64::MAX).then_some(max),
    }))
}

/// One cgroup's directory in one hierarchy.
struct Dir {
    path: PathBuf,
}

impl Dir {
    fn new(path: PathBuf) -> Dir {
        Dir { path }
    }

    /// Called when a file is missing: if the directory itself is gone, the cgroup does not
    /// exist (or was removed since the previous read). Only costs a stat on that path.
    fn check_exists(&self) -> Result<(), CgroupError> {
        if self.path.is_dir() {
            Ok(())
        } else {
            Err(CgroupError::NotFound {
                path: self.path.clone(),
            })
        }
    }

    /// A file's bytes; `None` when it does not exist in an existing cgroup.
    fn read_opt(
        &self,
        name: &str,
        capacity: usize,
    ) -> Result<Option<(PathBuf, Vec<u8>)>, CgroupError> {
        let file = self.path.join(name);
        match read_file(&file, capacity) {
            Ok(bytes) => Ok(Some((file, bytes))),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.check_exists()?;
                Ok(None)
            }
            Err(e) => Err(CgroupError::io("read", file, e)),
        }
    }

    /// A one-number file, `max` read as `u64::MAX` (as libcgroups' `parse_single_value`
    /// does); `None` when the file does not exist in an existing cgroup.
    fn value_opt(&self, name: &str) -> Result<Option<u64>, CgroupError> {
        let Some((file, bytes)) = self.read_opt(name, VALUE_CAPACITY)? else {
            return Ok(None);
        };
        let text = utf8(&file, bytes)?;
        let text = text.trim();
        if text == "max" {
            return Ok(Some(u64::MAX));
        }
        parse_value(text)
            .map(Some)
            .map_err(|e| CgroupError::StatsFile {
                file,
                reason: format!("expected a number, found {text:?}: {e}"),
            })
    }

    /// Like [`Dir::value_opt`], for a file every cgroup with this controller has.
    fn value(&self, name: &str) -> Result<u64, CgroupError> {
        self.value_opt(name)?
            .ok_or_else(|| missing(&self.path, name))
    }

    /// A keyed file; `None` when it does not exist in an existing cgroup.
    fn keyed_opt(&self, name: &str) -> Result<Option<Keyed>, CgroupError> {
        let Some((file, bytes)) = self.read_opt(name, KEYED_CAPACITY)? else {
            return Ok(None);
        };
        let text = utf8(&file, bytes)?;
        Ok(Some(Keyed { file, text }))
    }

    /// Like [`Dir::keyed_opt`], for a file every cgroup with this controller has.
    fn keyed(&self, name: &str) -> Result<Keyed, CgroupError> {
        self.keyed_opt(name)?
            .ok_or_else(|| missing(&self.path, name))
    }
}

/// Enough for any one-number file (20 digits and a newline), so they take a single read.
const VALUE_CAPACITY: usize = 64;
/// A page: `memory.stat` is 1-2 KiB, the other keyed files far less.
const KEYED_CAPACITY: usize = 4096;

/// Reads a whole file with open, one read, close. A read that returns less than asked for is
/// the end: cgroup files are kernfs seq_files, whose read() fills the buffer as far as the
/// file's text goes (the text of a cgroup file is generated whole), and regular files (the
/// test fixtures) behave the same. Only a full buffer needs another read, into a larger one.
fn read_file(path: &Path, capacity: usize) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0; capacity];
    let mut len = 0;
    loop {
        match file.read(&mut buf[len..]) {
            Ok(n) => len += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        if len < buf.len() {
            break;
        }
        buf.resize(buf.len() * 2, 0);
    }
    buf.truncate(len);
    Ok(buf)
}

fn utf8(file: &Path, bytes: Vec<u8>) -> Result<String, CgroupError> {
    String::from_utf8(bytes).map_err(|_| CgroupError::StatsFile {
        file: file.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })
}

fn missing(dir: &Path, name: &str) -> CgroupError {
    CgroupError::StatsFile {
        file: dir.join(name),
        reason: "missing".into(),
    }
}

/// A file in the kernel's flat keyed format (`key value` per line: `memory.stat`, `cpu.stat`,
/// `cpuacct.stat`, `memory.events`, `memory.oom_control`).
struct Keyed {
    file: PathBuf,
    text: String,
}

impl Keyed {
    /// Calls `f` with every key and its value; `f` converts the values it wants with
    /// [`Keyed::num`]. A line that is not `key value` is an error, like in libcgroups'
    /// (private) `parse_flat_keyed_data`; values of keys nobody asks for are not parsed.
    fn each(
        &self,
        mut f: impl FnMut(&str, &str) -> Result<(), CgroupError>,
    ) -> Result<(), CgroupError> {
        for line in self.text.lines() {
            let mut fields = line.split_ascii_whitespace();
            match (fields.next(), fields.next(), fields.next()) {
                (Some(key), Some(value), None) => f(key, value)?,
                (None, _, _) => {}
                _ => {
                    return Err(CgroupError::StatsFile {
                        file: self.file.clone(),
                        reason: format!("line {line:?} is not `key value`"),
                    });
                }
            }
        }
        Ok(())
    }

    fn num(&self, value: &str) -> Result<u64, CgroupError> {
        parse_value(value).map_err(|e| CgroupError::StatsFile {
            file: self.file.clone(),
            reason: format!("value {value:?} is not a number: {e}"),
        })
    }
}
