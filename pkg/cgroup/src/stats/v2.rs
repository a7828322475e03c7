//! cgroup v2 readers (a pure v2 host's managed hierarchy).

use super::{CgroupStats, CpuStats, Dir, MemoryStats, pids};
use crate::CgroupError;

/// Reads the cgroup's `cpu.stat`, memory files and pids files. `cpu.stat` goes first: it exists
/// in every non-root v2 cgroup, so a missing one tells a missing cgroup apart cheaply.
pub(super) fn read(dir: &Dir, stats: &mut CgroupStats) -> Result<(), CgroupError> {
    stats.cpu = cpu(dir)?;
    stats.memory = memory(dir)?;
    stats.pids = pids(dir)?;
    Ok(())
}

/// `cpu.stat` is a core file (present without the cpu controller, then without the throttling
/// keys, which stay 0). Times are in µs.
fn cpu(dir: &Dir) -> Result<Option<CpuStats>, CgroupError> {
    let Some(stat) = dir.keyed_opt("cpu.stat")? else {
        return Ok(None);
    };
    let mut cpu = CpuStats::default();
    let us = |value: &str| stat.num(value).map(|v| v.saturating_mul(1_000));
    stat.each(|key, value| {
        match key {
            "usage_usec" => cpu.usage_ns = us(value)?,
            "user_usec" => cpu.user_ns = us(value)?,
            "system_usec" => cpu.system_ns = us(value)?,
            "nr_periods" => cpu.periods = stat.num(value)?,
            "nr_throttled" => cpu.throttled_periods = stat.num(value)?,
            "throttled_usec" => cpu.throttled_ns = us(value)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(Some(cpu))
}

/// `None` when the memory controller is not enabled for this cgroup (no `memory.current`).
fn memory(dir: &Dir) -> Result<Option<MemoryStats>, CgroupError> {
    let Some(usage) = dir.value_opt("memory.current")? else {
        return Ok(None);
    };
    let max = dir.value("memory.max")?;
    let mut m = MemoryStats {
        usage_bytes: usage,
        limit_bytes: (max != u64::MAX).then_some(max),
        ..MemoryStats::default()
    };
    let stat = dir.keyed("memory.stat")?;
    let mut inactive_file = 0;
    stat.each(|key, value| {
        match key {
            "anon" => m.rss_bytes = stat.num(value)?,
            "file" => m.cache_bytes = stat.num(value)?,
            "file_mapped" => m.mapped_file_bytes = stat.num(value)?,
            "pgfault" => m.page_faults = stat.num(value)?,
            "pgmajfault" => m.major_page_faults = stat.num(value)?,
            "inactive_file" => inactive_file = stat.num(value)?,
            _ => {}
        }
        Ok(())
    })?;
    m.working_set_bytes = usage.saturating_sub(inactive_file);

    // `max` counts how often usage hit memory.max, the v2 counterpart of v1's failcnt.
    let events = dir.keyed("memory.events")?;
    events.each(|key, value| {
        match key {
            "max" => m.failcnt = events.num(value)?,
            "oom_kill" => m.oom_kills = events.num(value)?,
            _ => {}
        }
        Ok(())
    })?;

    // Absent without swap accounting (CONFIG_MEMCG_SWAP off or swapaccount=0).
    if let Some(swap) = dir.value_opt("memory.swap.current")? {
        m.swap_usage_bytes = Some(swap);
        let swap_max = dir.value("memory.swap.max")?;
        m.swap_limit_bytes = (swap_max != u64::MAX).then_some(swap_max);
    }
    Ok(Some(m))
}
