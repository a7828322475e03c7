//! Cost per item of operations measured with N items present (`stats`: ListContainerStats with
//! N running containers): p50 / N, and the slope between consecutive sizes, Δp50 / ΔN, which for
//! a cost that grows linearly with N is the same at every step.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::table;
use crate::stats::Summary;
use crate::workloads::ScalingOp;

/// One point of a series: an operation's latency with `n` items present.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScalingRow {
    /// `workload/op`, as in the latency table.
    pub name: String,
    /// `workload/series`: rows of one series are the same call at growing `n`.
    pub series: String,
    pub n: u64,
    /// What `n` counts, singular (`container`).
    pub item: String,
    /// Samples.
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
}

impl ScalingRow {
    /// The row of `s` of `workload` from its latency summary; `None` without samples.
    pub fn from_summary(workload: &str, s: &ScalingOp, summary: &Summary) -> Option<ScalingRow> {
        (summary.count > 0).then(|| ScalingRow {
            name: format!("{workload}/{}", s.op),
            series: format!("{workload}/{}", s.series),
            n: s.n,
            item: s.item.to_string(),
            count: summary.count,
            p50_us: summary.p50_us,
            p99_us: summary.p99_us,
        })
    }

    /// p50 / n (none for n = 0).
    pub fn per_item_us(&self) -> Option<f64> {
        (self.n > 0).then(|| self.p50_us / self.n as f64)
    }
}

/// Δp50 / Δn between `row` and the previous row (smaller n) of its series in `rows`.
pub fn slope_us(rows: &[ScalingRow], row: &ScalingRow) -> Option<f64> {
    let prev = rows
        .iter()
        .filter(|r| r.series == row.series && r.n < row.n)
        .max_by_key(|r| r.n)?;
    Some((row.p50_us - prev.p50_us) / (row.n - prev.n) as f64)
}

/// A per-item cost in µs, finer than `fmt_us` for small values; negative slopes (noise) keep
/// their sign.
pub fn fmt_cost(us: f64) -> String {
    let a = us.abs();
    let sign = if us < 0.0 { "-" } else { "" };
    if a < 10.0 {
        format!("{sign}{a:.2}µs")
    } else if a < 1000.0 {
        format!("{sign}{a:.1}µs")
    } else {
        format!("{sign}{:.2}ms", a / 1000.0)
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(fmt_cost).unwrap_or_else(|| "-".into())
}

fn item_of(rows: &[&ScalingRow]) -> String {
    let first = rows.first().map(|r| r.item.as_str()).unwrap_or("item");
    if rows.iter().all(|r| r.item == first) {
        first.to_string()
    } else {
        "item".into()
    }
}

const NOTE: &str = "(p50/N: p50 over the N present; slope: p50 growth per added one since the \
                    previous N, constant when the cost is linear in N)";

/// One runtime's table (text report of `berth-bench run`).
pub(super) fn render_one(rows: &[ScalingRow]) -> String {
    let item = item_of(&rows.iter().collect::<Vec<_>>());
    let header: Vec<String> = vec![
        format!("cost per {item}"),
        "N".into(),
        "p50".into(),
        "p99".into(),
        "p50/N".into(),
        "slope".into(),
    ];
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.n.to_string(),
                crate::stats::fmt_us(r.p50_us),
                crate::stats::fmt_us(r.p99_us),
                opt(r.per_item_us()),
                opt(slope_us(rows, r)),
            ]
        })
        .collect();
    let mut out = table(&header, &body);
    let _ = writeln!(out, "{NOTE}");
    out
}

fn rows_of(rep: &super::BenchReport) -> Vec<ScalingRow> {
    rep.workloads
        .iter()
        .flat_map(|w| w.scaling.iter().cloned())
        .collect()
}

/// The side-by-side table (empty when neither side has scaling rows). Ratios are left / right.
pub(super) fn render_compare(left: &super::BenchReport, right: &super::BenchReport) -> String {
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
    let item = item_of(&lr.iter().chain(&rr).collect::<Vec<_>>());
    let header: Vec<String> = vec![
        format!("cost per {item}"),
        format!("{l} p50/N"),
        format!("{l} slope"),
        format!("{r} p50/N"),
        format!("{r} slope"),
        "ratio p50/N".into(),
        "ratio slope".into(),
    ];
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a >= 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let mut body = Vec::new();
    for name in &names {
        let a = lr.iter().find(|x| &x.name == name);
        let b = rr.iter().find(|x| &x.name == name);
        let per = |x: Option<&ScalingRow>| x.and_then(ScalingRow::per_item_us);
        let (sa, sb) = (
            a.and_then(|x| slope_us(&lr, x)),
            b.and_then(|x| slope_us(&rr, x)),
        );
        body.push(vec![
            name.clone(),
            opt(per(a)),
            opt(sa),
            opt(per(b)),
            opt(sb),
            ratio(per(a), per(b)),
            ratio(sa, sb),
        ]);
    }
    let mut out = table(&header, &body);
    let _ = writeln!(out, "{NOTE}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u64, p50: f64) -> ScalingRow {
        ScalingRow {
            name: format!("stats/List n={n}"),
            series: "stats/List".into(),
            n,
            item: "container".into(),
            count: 10,
            p50_us: p50,
            p99_us: p50 * 2.0,
        }
    }

    #[test]
    fn per_item_and_slope() {
        let rows = vec![row(10, 200.0), row(100, 1100.0), row(300, 3100.0)];
        assert_eq!(rows[0].per_item_us(), Some(20.0));
        assert_eq!(rows[1].per_item_us(), Some(11.0));
        assert_eq!(slope_us(&rows, &rows[0]), None);
        assert_eq!(slope_us(&rows, &rows[1]), Some(10.0));
        assert_eq!(slope_us(&rows, &rows[2]), Some(10.0));
        assert_eq!(row(0, 50.0).per_item_us(), None);
        assert_eq!(fmt_cost(3.456), "3.46µs");
        assert_eq!(fmt_cost(-1.5), "-1.50µs");
        assert_eq!(fmt_cost(123.45), "123.5µs");
        assert_eq!(fmt_cost(2500.0), "2.50ms");
        let one = render_one(&rows);
        assert!(one.starts_with("cost per container"), "{one}");
        assert!(one.contains("11.0µs") && one.contains("10.0µs"), "{one}");
    }

    #[test]
    fn from_summary_needs_samples() {
        let op = ScalingOp {
            op: "List n=10",
            series: "List",
            n: 10,
            item: "container",
        };
        assert!(ScalingRow::from_summary("stats", &op, &Summary::default()).is_none());
        let s = Summary {
            count: 3,
            p50_us: 100.0,
            p99_us: 300.0,
            ..Default::default()
        };
        let r = ScalingRow::from_summary("stats", &op, &s).unwrap();
        assert_eq!(
            (r.name.as_str(), r.series.as_str()),
            ("stats/List n=10", "stats/List")
        );
        assert_eq!(r.per_item_us(), Some(10.0));
    }
}
