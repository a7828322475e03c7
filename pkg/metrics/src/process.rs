//! Process metrics of berthd itself, read from /proc/self at scrape time.
//!
//! The prometheus crate's own process collector drags in `procfs` and its dependency tree for five numbers;
//! reading them directly is a few lines and keeps berthd's build and binary lean.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge, Opts};

pub(crate) struct ProcessCollector {
    rss: Gauge,
    fds: Gauge,
    threads: Gauge,
    start_time: Gauge,
    cpu: Counter,
    descs: Vec<Desc>,
}

impl ProcessCollector {
    /// Fails only on an invalid metric name, and these are constants.
    pub(crate) fn new() -> Result<ProcessCollector, prometheus::Error> {
        let gauge = |name: &str, help: &str| Gauge::with_opts(Opts::new(name, help));
        let rss = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        )?;
        let fds = gauge("process_open_fds", "Number of open file descriptors.")?;
        let threads = gauge("process_threads", "Number of OS threads in the process.")?;
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )?;
        let cpu = Counter::with_opts(Opts::new(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        ))?;
        let mut descs = Vec::new();
        for c in [&rss, &fds, &threads, &start_time] {
            descs.extend(c.desc().into_iter().cloned());
        }
        descs.extend(cpu.desc().into_iter().cloned());
        let collector = ProcessCollector {
            rss,
            fds,
            threads,
            start_time,
            cpu,
            descs,
        };
        if let Some(start) = start_time_seconds() {
            collector.start_time.set(start);
        }
        Ok(collector)
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        if let Some(status) = read("/proc/self/status") {
            if let Some(kb) = status_field(&status, "VmRSS:") {
                self.rss.set(kb * 1024.0);
            }
            if let Some(n) = status_field(&status, "Threads:") {
                self.threads.set(n);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself holds one descriptor while we count.
            self.fds.set(dir.count().saturating_sub(1) as f64);
        }
        if let Some(cpu) = cpu_seconds() {
            let delta = cpu - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        let mut out = Vec::new();
        for c in [&self.rss, &self.fds, &self.threads, &self.start_time] {
            out.extend(c.collect());
        }
        out.extend(self.cpu.collect());
        out
    }
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn status_field(status: &str, key: &str) -> Option<f64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Fields after the command name in /proc/self/stat (the name may contain spaces, so split after ')').
fn stat_fields() -> Option<Vec<String>> {
    let stat = read("/proc/self/stat")?;
    let after = stat.rsplit_once(')')?.1;
    Some(after.split_whitespace().map(str::to_string).collect())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn cpu_seconds() -> Option<f64> {
    let f = stat_fields()?;
    // utime and stime are fields 14 and 15 of stat; index 0 here is field 3 (state).
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn start_time_seconds() -> Option<f64> {
    let f = stat_fields()?;
    // starttime is field 22: clock ticks after boot.
    let start_ticks: f64 = f.get(19)?.parse().ok()?;
    let stat = read("/proc/stat")?;
    let btime: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(btime + start_ticks / clock_ticks())
}
