//! cgroup v1 readers, one per hierarchy's controller (also used on hybrid hosts).

use super::{Dir, MemoryStats};
use crate::CgroupError;
use crate::stats::CpuStats;

/// `cpuacct.stat` counts in USER_HZ ticks. That unit is fixed by the kernel ABI, not the
/// scheduler's HZ: 100 on every architecture Berth runs on (runc's GetClockTicks hard-codes it
/// too).
const USER_HZ: u64 = 100;
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// Limits at or above this mean "no limit": the kernel shows an unset limit as
/// `PAGE_COUNTER_MAX` pages, i.e. i64::MAX rounded down to the page size
/// (9223372036854771712 with 4 KiB pages), and no real limit comes near 2^62 bytes.
const UNLIMITED: u64 = 1 << 62;

fn limit(v: u64) -> Option<u64> {
    (v < UNLIMITED).then_some(v)
}

/// The cpuacct hierarchy's totals. `false` if this cgroup has none (a missing `cpuacct.usage`).
pub(super) fn cpuacct(dir: &Dir, cpu: &mut CpuStats) -> Result<bool, CgroupError> {
    let Some(usage) = dir.value_opt("cpuacct.usage")? else {
        return Ok(false);
    };
    cpu.usage_ns = usage;
    // One file for both, rather than cpuacct.usage_user/usage_sys (ns, but two more reads and
    // missing before 4.7); tick resolution is what cadvisor and containerd report too.
    let stat = dir.keyed("cpuacct.stat")?;
    stat.each(|key, value| {
        match key {
            "user" => cpu.user_ns = stat.num(value)?.saturating_mul(NS_PER_TICK),
            "system" => cpu.system_ns = stat.num(value)?.saturating_mul(NS_PER_TICK),
            _ => {}
        }
        Ok(())
    })?;
    Ok(true)
}

/// CFS throttling from the cpu hierarchy's `cpu.stat` (`throttled_time` is already in ns).
pub(super) fn throttling(dir: &Dir, cpu: &mut CpuStats) -> Result<bool, CgroupError> {
    let Some(stat) = dir.keyed_opt("cpu.stat")? else {
        return Ok(false);
    };
    stat.each(|key, value| {
        match key {
            "nr_periods" => cpu.periods = stat.num(value)?,
            "nr_throttled" => cpu.throttled_periods = stat.num(value)?,
            "throttled_time" => cpu.throttled_ns = stat.num(value)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(true)
}

/// The memory hierarchy: usage, limit, failcnt, `memory.stat`, `memory.oom_control`, and the
/// memsw pair when the kernel accounts swap. `None` if this cgroup has no memory counters.
pub(super) fn memory(dir: &Dir) -> Result<Option<MemoryStats>, CgroupError> {
    let Some(usage) = dir.value_opt("memory.usage_in_bytes")? else {
        return Ok(None);
    };
    let mut m = MemoryStats {
        usage_bytes: usage,
        limit_bytes: limit(dir.value("memory.limit_in_bytes")?),
        failcnt: dir.value("memory.failcnt")?,
        ..MemoryStats::default()
    };
    // The total_* keys are hierarchical (this cgroup and its descendants), like usage itself;
    // the unprefixed ones count this cgroup's own pages only.
    let stat = dir.keyed("memory.stat")?;
    let mut inactive_file = 0;
    stat.each(|key, value| {
        match key {
            "total_rss" => m.rss_bytes = stat.num(value)?,
            "total_cache" => m.cache_bytes = stat.num(value)?,
            "total_mapped_file" => m.mapped_file_bytes = stat.num(value)?,
            "total_pgfault" => m.page_faults = stat.num(value)?,
            "total_pgmajfault" => m.major_page_faults = stat.num(value)?,
            "total_inactive_file" => inactive_file = stat.num(value)?,
            _ => {}
        }
        Ok(())
    })?;
    m.working_set_bytes = usage.saturating_sub(inactive_file);

    let oom = dir.keyed("memory.oom_control")?;
    oom.each(|key, value| {
        if key == "oom_kill" {
            m.oom_kills = oom.num(value)?;
        }
        Ok(())
    })?;

    // memory.memsw.* exist only with swap accounting (CONFIG_MEMCG_SWAP and not
    // swapaccount=0); without it there is nothing to report, which is not an error.
    if let Some(memsw) = dir.value_opt("memory.memsw.usage_in_bytes")? {
        // Read a moment after usage, so memsw may briefly look smaller than it.
        m.swap_usage_bytes = Some(memsw.saturating_sub(usage));
        let memsw_limit = limit(dir.value("memory.memsw.limit_in_bytes")?);
        m.swap_limit_bytes = match (memsw_limit, m.limit_bytes) {
            (Some(both), Some(mem)) => Some(both.saturating_sub(mem)),
            // The kernel keeps memsw ≥ memory limit, so this is not expected; the swap
            // allowance is then at most the memsw limit.
            (Some(both), None) => Some(both),
            (None, _) => None,
        };
    }
    Ok(Some(m))
}
