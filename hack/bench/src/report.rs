//! Report types (serialised with `--json`) and their text rendering,
//! including the side-by-side comparison of two runtimes.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::rss::RssSample;
use crate::stats::{Summary, fmt_kib, fmt_kib_delta, fmt_us};

/// Outcome of one operation of a workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpResult {
    pub op: String,
    /// "ok", "unsupported" (only UNIMPLEMENTED answers), "error" (no
    /// successful call) or "partial" (some calls failed).
    pub status: String,
    #[serde(flatten)]
    pub summary: Summary,
    pub unsupported: u64,
    pub errors: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl OpResult {
    pub fn new(
        op: &str,
        summary: Summary,
        unsupported: u64,
        errors: u64,
        first_error: Option<String>,
    ) -> OpResult {
        let status = if errors > 0 && summary.count == 0 {
            "error"
        } else if errors > 0 {
            "partial"
        } else if summary.count == 0 && unsupported > 0 {
            "unsupported"
        } else if summary.count == 0 {
            "no-samples"
        } else {
            "ok"
        };
        OpResult {
            op: op.to_string(),
            status: status.to_string(),
            summary,
            unsupported,
            errors,
            first_error,
        }
    }

    pub fn has_samples(&self) -> bool {
        self.summary.count > 0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadResult {
    pub name: String,
    pub iterations: u64,
    pub warmup: u64,
    pub concurrency: usize,
    /// Stages the workload was measured in (`iterations` and `warmup` are per stage).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub stages: usize,
    /// Time of the measured iterations (all stages).
    pub wall_secs: f64,
    pub iterations_per_sec: f64,
    pub ops: Vec<OpResult>,
    /// RSS of the selected processes right after this workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_after: Option<RssSample>,
    /// Memory figures the workload measured itself (`pod-memory`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory: Vec<MemoryRow>,
    /// Throughput of the operations that move a known number of bytes (`port-forward-throughput`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throughput: Vec<ThroughputRow>,
    /// Cost per item of the operations measured with N items present (`stats`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scaling: Vec<ScalingRow>,
    /// Units completed per second of the measured phase (`cycles-par4`, `cycles-par16`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateRow>,
    /// Why a stage could not be prepared (the later stages were not measured), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_error: Option<String>,
    /// What the untimed teardown (removing the workload's objects) failed with, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown_error: Option<String>,
}

fn one() -> usize {
    1
}

fn is_one(v: &usize) -> bool {
    *v == 1
}

/// One memory figure of a workload, for the memory table (matched by `name` across runtimes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryRow {
    pub name: String,
    /// KiB; `None` when it could not be measured (see `note`).
    pub kib: Option<i64>,
    /// A change (shown with a sign) rather than a size.
    #[serde(default)]
    pub delta: bool,
    /// Why there is no value ("unsupported", "failed"), or what the value is made of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl MemoryRow {
    pub fn cell(&self) -> String {
        match self.kib {
            Some(v) if self.delta => fmt_kib_delta(v),
            Some(v) => fmt_kib(v.max(0) as u64),
            None => self.note.clone().unwrap_or_else(|| "n/a".into()),
        }
    }
}

/// Throughput of one operation that moves `bytes` per sample, for the throughput table (matched
/// by `name` across runtimes). MB are 10^6 bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThroughputRow {
    /// `workload/op (size)`.
    pub name: String,
    pub bytes: u64,
    /// Samples (successful transfers).
    pub count: usize,
    /// MB/s at the median (nearest-rank p50), the fastest and the slowest transfer time.
    pub median_mb_s: f64,
    pub best_mb_s: f64,
    pub worst_mb_s: f64,
}

impl ThroughputRow {
    /// The row of `op` of `workload` from its latency summary; `None` without samples.
    pub fn from_summary(
        workload: &str,
        op: &str,
        bytes: u64,
        s: &Summary,
    ) -> Option<ThroughputRow> {
        if s.count == 0 || s.min_us <= 0.0 {
            return None;
        }
        let mb_s = |us: f64| bytes as f64 / us; // bytes per µs = MB/s
        Some(ThroughputRow {
            name: format!("{workload}/{op} ({})", fmt_bytes(bytes)),
            bytes,
            count: s.count,
            median_mb_s: mb_s(s.p50_us),
            best_mb_s: mb_s(s.min_us),
            worst_mb_s: mb_s(s.max_us),
        })
    }
}

/// Decimal sizes: `100 MB`, `1.5 GB`, `512 kB`, `42 B`.
pub fn fmt_bytes(b: u64) -> String {
    let v = b as f64;
    let (div, unit) = if b >= 1_000_000_000 {
        (1e9, "GB")
    } else if b >= 1_000_000 {
        (1e6, "MB")
    } else if b >= 1_000 {
        (1e3, "kB")
    } else {
        return format!("{b} B");
    };
    let x = v / div;
    if (x - x.round()).abs() < 1e-9 {
        format!("{x:.0} {unit}")
    } else {
        format!("{x:.1} {unit}")
    }
}

pub fn fmt_mb_s(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} MB/s")
    } else {
        format!("{v:.1} MB/s")
    }
}

/// What the runtime said about itself (VersionResponse).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub runtime_name: String,
    pub runtime_version: String,
    pub runtime_api_version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RssSelection {
    pub pids: Vec<u32>,
    pub process_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_cmdline: Option<String>,
    pub with_children: bool,
}

/// Result of `berth-bench [run]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchReport {
    pub kind: String,
    pub label: String,
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeInfo>,
    pub unix_time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_selection: Option<RssSelection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_before: Option<RssSample>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_after: Option<RssSample>,
    pub workloads: Vec<WorkloadResult>,
}

impl BenchReport {
    pub fn has_errors(&self) -> bool {
        self.workloads
            .iter()
            .any(|w| w.teardown_error.is_some() || w.stage_error.is_some())
            || self
                .workloads
                .iter()
                .flat_map(|w| &w.ops)
                .any(|o| o.errors > 0)
    }
}

/// One start of a daemon in `berth-bench startup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartupRun {
    /// From spawn to the first successful Version RPC.
    pub startup_ms: f64,
    /// Readiness probes sent (one per poll).
    pub probes: u64,
    /// RSS of the daemon (and its selection) after `settle_ms` of idling.
    pub idle_rss_kib: u64,
    pub idle_hwm_kib: u64,
    /// From SIGTERM to exit.
    pub stop_ms: f64,
}

/// Result of `berth-bench startup`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartupReport {
    pub kind: String,
    pub label: String,
    pub endpoint: String,
    pub command: Vec<String>,
    pub settle_ms: u64,
    pub runs: Vec<StartupRun>,
    pub median_startup_ms: f64,
    pub min_startup_ms: f64,
    pub max_startup_ms: f64,
    pub median_idle_rss_kib: u64,
}

/// Merge reports of consecutive runs against the same runtime: identity
/// from the first, RSS before from the first, RSS after from the last,
/// workloads concatenated in order.
pub fn merge(reports: Vec<BenchReport>) -> Option<BenchReport> {
    let mut it = reports.into_iter();
    let mut out = it.next()?;
    for r in it {
        if r.rss_after.is_some() {
            out.rss_after = r.rss_after;
        }
        if out.rss_before.is_none() {
            out.rss_before = r.rss_before;
        }
        out.workloads.extend(r.workloads);
    }
    Some(out)
}

// ---------------------------------------------------------------- rendering

/// Render rows as a left-aligned first column and right-aligned others.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let cols = header.len();
    let mut width = vec![0usize; cols];
    for row in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        for (i, cell) in row.iter().enumerate().take(cols) {
            width[i] = width[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String]| {
        let mut s = String::new();
        for (i, cell) in row.iter().enumerate().take(cols) {
            let pad = width[i].saturating_sub(cell.chars().count());
            if i == 0 {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(&mut out, header);
    let total: usize = width.iter().sum::<usize>() + 2 * cols.saturating_sub(1);
    out.push_str(&"-".repeat(total));
    out.push('\n');
    for r in rows {
        line(&mut out, r);
    }
    out
}

fn rss_line(label: &str, s: &RssSample) -> String {
    format!(
        "{label}: {} in {} process(es) (peak/HWM sum {})",
        fmt_kib(s.total_rss_kib),
        s.processes.len(),
        fmt_kib(s.total_hwm_kib)
    )
}

pub fn render_bench(r: &BenchReport) -> String {
    let mut out = String::new();
    let _ = write!(out, "== {} ({})", r.label, r.endpoint);
    if let Some(rt) = &r.runtime {
        let _ = write!(
            out,
            " runtime={} {} api={}",
            rt.runtime_name, rt.runtime_version, rt.runtime_api_version
        );
    }
    out.push('\n');
    for w in &r.workloads {
        let stages = if w.stages > 1 {
            format!(" in each of {} stages", w.stages)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "\nworkload {}: {} iterations (+{} warm-up){stages}, concurrency {}, {:.2}s wall, {:.0} it/s",
            w.name, w.iterations, w.warmup, w.concurrency, w.wall_secs, w.iterations_per_sec
        );
        let header: Vec<String> = [
            "op", "count", "p50", "p90", "p99", "mean", "min", "max", "unsup", "errors",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rows: Vec<Vec<String>> = w
            .ops
            .iter()
            .map(|o| {
                let lat = |v: f64| {
                    if o.has_samples() {
                        fmt_us(v)
                    } else {
                        "-".into()
                    }
                };
                vec![
                    o.op.clone(),
                    o.summary.count.to_string(),
                    lat(o.summary.p50_us),
                    lat(o.summary.p90_us),
                    lat(o.summary.p99_us),
                    lat(o.summary.mean_us),
                    lat(o.summary.min_us),
                    lat(o.summary.max_us),
                    o.unsupported.to_string(),
                    o.errors.to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&header, &rows));
        for o in &w.ops {
            if o.status == "unsupported" {
                let _ = writeln!(out, "  {}: unsupported (UNIMPLEMENTED)", o.op);
            }
            if let Some(e) = &o.first_error {
                let _ = writeln!(out, "  {}: {} error(s), first: {e}", o.op, o.errors);
            }
        }
        if let Some(e) = &w.stage_error {
            let _ = writeln!(out, "  not measured further: {e}");
        }
        if let Some(e) = &w.teardown_error {
            let _ = writeln!(out, "  teardown failed: {e}");
        }
        if !w.scaling.is_empty() {
            out.push('\n');
            out.push_str(&scaling::render_one(&w.scaling));
        }
        if let Some(rate) = &w.rate {
            out.push('\n');
            out.push_str(&rate::render_one(std::slice::from_ref(rate)));
        }
        if !w.memory.is_empty() {
            let rows: Vec<Vec<String>> = w
                .memory
                .iter()
                .map(|m| {
                    let note = match (&m.kib, &m.note) {
                        (Some(_), Some(n)) => n.clone(),
                        _ => String::new(),
                    };
                    vec![m.name.clone(), m.cell(), note]
                })
                .collect();
            out.push('\n');
            out.push_str(&table(
                &["memory".into(), "value".into(), "made of".into()],
                &rows,
            ));
        }
        if !w.throughput.is_empty() {
            let rows: Vec<Vec<String>> = w
                .throughput
                .iter()
                .map(|t| {
                    vec![
                        t.name.clone(),
                        t.count.to_string(),
                        fmt_mb_s(t.median_mb_s),
                        fmt_mb_s(t.best_mb_s),
                        fmt_mb_s(t.worst_mb_s),
                    ]
                })
                .collect();
            out.push('\n');
            out.push_str(&table(
                &[
                    "throughput".into(),
                    "count".into(),
                    "median".into(),
                    "best".into(),
                    "worst".into(),
                ],
                &rows,
            ));
        }
    }
    if let Some(sel) = &r.rss_selection {
        let _ = writeln!(
            out,
            "\nRSS selection: pids {:?}, names {:?} (cmdline filter {:?}), with children: {}",
            sel.pids, sel.process_names, sel.match_cmdline, sel.with_children
        );
    }
    if let Some(b) = &r.rss_before {
        let _ = writeln!(out, "{}", rss_line("RSS before", b));
    }
    if let Some(a) = &r.rss_after {
        let _ = writeln!(out, "{}", rss_line("RSS after ", a));
        if let Some(b) = &r.rss_before {
            let _ = writeln!(
                out,
                "RSS delta : {}",
                fmt_kib_delta(a.total_rss_kib as i64 - b.total_rss_kib as i64)
            );
        }
    }
    out
}

pub fn render_startup(r: &StartupReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== {} startup ({} runs, exec -> first successful Version): median {:.1}ms, min {:.1}ms, max {:.1}ms",
        r.label,
        r.runs.len(),
        r.median_startup_ms,
        r.min_startup_ms,
        r.max_startup_ms
    );
    for (i, run) in r.runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "  run {}: startup {:.1}ms ({} probes), idle RSS after {}ms {} (HWM {}), stop {:.1}ms",
            i + 1,
            run.startup_ms,
            run.probes,
            r.settle_ms,
            fmt_kib(run.idle_rss_kib),
            fmt_kib(run.idle_hwm_kib),
            run.stop_ms
        );
    }
    let _ = writeln!(out, "  median idle RSS: {}", fmt_kib(r.median_idle_rss_kib));
    out
}

mod compare;
mod rate;
mod scaling;
pub use compare::render_compare;
pub use rate::RateRow;
pub use scaling::ScalingRow;

#[cfg(test)]
mod tests;
