//! Completion rate of workloads that run their iterations several at a time (`cycles-par4`,
//! `cycles-par16`): how many units (pod+container cycles) finished per second of the measured
//! phase's wall clock, next to the per-unit latency.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{BenchReport, table};
use crate::stats::{Summary, fmt_us};

/// One workload's rate: `count` successful units of `op` in `wall_secs` with `concurrency` of them
/// in flight at a time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RateRow {
    /// `workload/op`, as in the latency table.
    pub name: String,
    /// What a unit is, plural (`cycles`).
    pub unit: String,
    /// Units in flight at a time (the workload's concurrency).
    pub concurrency: usize,
    /// Successful units (samples of `op`).
    pub count: usize,
    /// Wall clock of the measured iterations (warm-up excluded).
    pub wall_secs: f64,
    /// `count / wall_secs`.
    pub per_sec: f64,
    /// Latency of one unit.
    pub p50_us: f64,
    pub p99_us: f64,
}

impl RateRow {
    /// The row of `op` of `workload` from its latency summary and the measured phase's wall time;
    /// `None` without samples or without a measured wall time.
    pub fn from_summary(
        workload: &str,
        op: &str,
        unit: &str,
        concurrency: usize,
        wall_secs: f64,
        s: &Summary,
    ) -> Option<RateRow> {
        (s.count > 0 && wall_secs > 0.0).then(|| RateRow {
            name: format!("{workload}/{op}"),
            unit: unit.to_string(),
            concurrency,
            count: s.count,
            wall_secs,
            per_sec: s.count as f64 / wall_secs,
            p50_us: s.p50_us,
            p99_us: s.p99_us,
        })
    }

    fn label(&self) -> String {
        format!("{} ({} at a time)", self.name, self.concurrency)
    }
}

/// Rates: `12.3/s`, `0.52/s`.
pub fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}/s")
    } else if v >= 1.0 {
        format!("{v:.1}/s")
    } else {
        format!("{v:.2}/s")
    }
}

fn unit_of<'a>(rows: impl Iterator<Item = &'a RateRow>) -> String {
    let units: Vec<&str> = rows.map(|r| r.unit.as_str()).collect();
    match units.first() {
        Some(u) if units.iter().all(|x| x == u) => u.to_string(),
        _ => "units".into(),
    }
}

/// One runtime's table (text report of `berth-bench run`).
pub(super) fn render_one(rows: &[RateRow]) -> String {
    let header: Vec<String> = vec![
        format!("rate ({}/s)", unit_of(rows.iter())),
        "count".into(),
        "wall".into(),
        "per second".into(),
        "p50".into(),
        "p99".into(),
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.label(),
                r.count.to_string(),
                format!("{:.2}s", r.wall_secs),
                fmt_rate(r.per_sec),
                fmt_us(r.p50_us),
                fmt_us(r.p99_us),
            ]
        })
        .collect();
    table(&header, &body)
}

fn rows_of(rep: &BenchReport) -> Vec<RateRow> {
    rep.workloads
        .iter()
        .filter_map(|w| w.rate.clone())
        .collect()
}

/// The side-by-side table (empty when neither side has a rate row): per second and the unit's
/// p50 / p99 of both runtimes. The rate ratio is left / right, so above 1.00x means the left
/// runtime completes more per second; the latency ratio is left / right as everywhere.
pub(super) fn render_compare(left: &BenchReport, right: &BenchReport) -> String {
    let (lr, rr) = (rows_of(left), rows_of(right));
    let mut names: Vec<String> = Vec::new();
    for r in lr.iter().chain(&rr) {
        if !names.contains(&r.name) {
            names.push(r.name.clone());
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let (l, r) = (&left.label, &right.label);
    let header: Vec<String> = vec![
        format!("rate ({}/s)", unit_of(lr.iter().chain(&rr))),
        format!("{l} /s"),
        format!("{r} /s"),
        "ratio /s".into(),
        format!("{l} p50 / p99"),
        format!("{r} p50 / p99"),
        "ratio p99".into(),
    ];
    let ratio = |a: f64, b: f64| {
        if b > 0.0 {
            format!("{:.2}x", a / b)
        } else {
            "-".into()
        }
    };
    let mut body = Vec::new();
    for name in &names {
        let a = lr.iter().rfind(|x| &x.name == name);
        let b = rr.iter().rfind(|x| &x.name == name);
        let label = a.or(b).map(RateRow::label).unwrap_or_else(|| name.clone());
        let per = |x: Option<&RateRow>| x.map(|x| fmt_rate(x.per_sec)).unwrap_or("n/a".into());
        let lat = |x: Option<&RateRow>| {
            x.map(|x| format!("{} / {}", fmt_us(x.p50_us), fmt_us(x.p99_us)))
                .unwrap_or("n/a".into())
        };
        let (rs, r99) = match (a, b) {
            (Some(a), Some(b)) => (ratio(a.per_sec, b.per_sec), ratio(a.p99_us, b.p99_us)),
            _ => ("-".into(), "-".into()),
        };
        body.push(vec![
            format!(
                "{label} x{}/{}",
                a.map_or(0, |x| x.count),
                b.map_or(0, |x| x.count)
            ),
            per(a),
            per(b),
            rs,
            lat(a),
            lat(b),
            r99,
        ]);
    }
    let mut out = table(&header, &body);
    let _ = writeln!(
        out,
        "(per second: successful units / wall clock of the measured iterations; ratio /s is \
         {l} / {r}: above 1.00x means {l} completes more per second)"
    );
    out
}
