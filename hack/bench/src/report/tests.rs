//! Tests of the report types and their rendering.

use super::compare::render_throughput;
use super::rate::fmt_rate;
use super::*;

fn op(name: &str, p50: f64, count: usize, unsup: u64) -> OpResult {
    OpResult::new(
        name,
        Summary {
            count,
            p50_us: p50,
            p99_us: p50 * 2.0,
            ..Default::default()
        },
        unsup,
        0,
        None,
    )
}

fn report(label: &str, ops: Vec<OpResult>) -> BenchReport {
    BenchReport {
        kind: "bench".into(),
        label: label.into(),
        endpoint: "unix:///x".into(),
        runtime: None,
        unix_time: 0,
        rss_selection: None,
        rss_before: None,
        rss_after: None,
        workloads: vec![WorkloadResult {
            name: "list".into(),
            iterations: 10,
            warmup: 0,
            concurrency: 1,
            stages: 1,
            wall_secs: 1.0,
            iterations_per_sec: 10.0,
            ops,
            rss_after: None,
            memory: vec![],
            throughput: vec![],
            scaling: vec![],
            rate: None,
            stage_error: None,
            teardown_error: None,
        }],
    }
}

#[test]
fn status_classification() {
    assert_eq!(op("a", 1.0, 3, 0).status, "ok");
    assert_eq!(op("a", 0.0, 0, 3).status, "unsupported");
    assert_eq!(
        OpResult::new("a", Summary::default(), 0, 2, None).status,
        "error"
    );
}

#[test]
fn compare_marks_unsupported_and_ratios() {
    let left = report(
        "berth",
        vec![
            op("ListImages", 0.0, 0, 10),
            op("ListPodSandbox", 50.0, 10, 0),
        ],
    );
    let right = report(
        "containerd",
        vec![
            op("ListImages", 200.0, 10, 0),
            op("ListPodSandbox", 100.0, 10, 0),
        ],
    );
    let s = render_compare(&left, &right, None, None);
    assert!(s.contains("unsupported"), "{s}");
    assert!(s.contains("0.50x"), "{s}");
    assert!(s.contains("berth p50"), "{s}");
}

#[test]
fn merge_keeps_first_before_and_last_after() {
    let rss = |kib| RssSample {
        total_rss_kib: kib,
        total_hwm_kib: kib,
        processes: vec![],
    };
    let mut a = report("berth", vec![op("Version", 10.0, 1, 0)]);
    a.rss_before = Some(rss(100));
    a.rss_after = Some(rss(110));
    let mut b = report("berth", vec![op("Status", 20.0, 1, 0)]);
    b.workloads[0].name = "status".into();
    b.rss_before = Some(rss(110));
    b.rss_after = Some(rss(120));
    let m = merge(vec![a, b]).unwrap();
    assert_eq!(m.workloads.len(), 2);
    assert_eq!(m.rss_before.unwrap().total_rss_kib, 100);
    assert_eq!(m.rss_after.unwrap().total_rss_kib, 120);
    assert!(merge(vec![]).is_none());
}

#[test]
fn compare_shows_memory_rows() {
    let row = |kib: Option<i64>, note: Option<&str>| MemoryRow {
        name: "pod-memory: helpers RSS / pod".into(),
        kib,
        delta: false,
        note: note.map(str::to_string),
    };
    let mut left = report("berth", vec![op("Version", 10.0, 1, 0)]);
    left.workloads[0].memory = vec![row(Some(512), Some("10x berth-monitor"))];
    let mut right = report("containerd", vec![op("Version", 20.0, 1, 0)]);
    right.workloads[0].memory = vec![row(Some(14 * 1024), None)];
    let s = render_compare(&left, &right, None, None);
    assert!(s.contains("pod-memory: helpers RSS / pod"), "{s}");
    assert!(s.contains("512 KiB") && s.contains("14.0 MiB"), "{s}");
    assert!(s.contains("0.04x"), "{s}");
    assert!(s.contains("10x berth-monitor"), "{s}");
    left.workloads[0].memory = vec![row(None, Some("unsupported"))];
    let s = render_compare(&left, &right, None, None);
    assert!(s.contains("unsupported"), "{s}");
    let delta = MemoryRow {
        name: "d".into(),
        kib: Some(-2048),
        delta: true,
        note: None,
    };
    assert_eq!(delta.cell(), "-2.0 MiB");
}

#[test]
fn throughput_rows_and_compare() {
    let s = Summary {
        count: 5,
        p50_us: 500_000.0,
        min_us: 400_000.0,
        max_us: 1_000_000.0,
        ..Default::default()
    };
    let t = ThroughputRow::from_summary("pf", "transfer", 100_000_000, &s).unwrap();
    assert_eq!(t.name, "pf/transfer (100 MB)");
    assert_eq!(
        (t.median_mb_s, t.best_mb_s, t.worst_mb_s),
        (200.0, 250.0, 100.0)
    );
    assert!(ThroughputRow::from_summary("pf", "t", 1, &Summary::default()).is_none());
    let mut left = report("berth", vec![op("transfer", 500_000.0, 5, 0)]);
    left.workloads[0].throughput = vec![t.clone()];
    let mut right = report("containerd", vec![op("transfer", 1_000_000.0, 5, 0)]);
    right.workloads[0].throughput = vec![ThroughputRow {
        median_mb_s: 100.0,
        ..t
    }];
    let out = render_compare(&left, &right, None, None);
    assert!(out.contains("pf/transfer (100 MB) x5/5"), "{out}");
    assert!(out.contains("200 MB/s") && out.contains("2.00x"), "{out}");
    assert!(render_throughput(&report("a", vec![]), &report("b", vec![])).is_empty());
    assert_eq!(fmt_bytes(100_000_000), "100 MB");
    assert_eq!(fmt_bytes(1_500_000_000), "1.5 GB");
    assert_eq!(fmt_bytes(42), "42 B");
    assert_eq!(fmt_mb_s(12.34), "12.3 MB/s");
}

#[test]
fn json_roundtrip() {
    let r = report("x", vec![op("Version", 12.5, 4, 0)]);
    let j = serde_json::to_string(&r).unwrap();
    assert!(j.contains("\"p50_us\":12.5"));
    let back: BenchReport = serde_json::from_str(&j).unwrap();
    assert_eq!(back.workloads[0].ops[0].summary.p50_us, 12.5);
}

#[test]
fn rate_rows_and_compare() {
    let s = Summary {
        count: 40,
        p50_us: 200_000.0,
        p99_us: 400_000.0,
        ..Default::default()
    };
    let r = RateRow::from_summary("cycles-par4", "cycle", "cycles", 4, 8.0, &s).unwrap();
    assert_eq!(r.name, "cycles-par4/cycle");
    assert_eq!((r.count, r.per_sec, r.concurrency), (40, 5.0, 4));
    // No samples or no measured wall time: no row.
    assert!(RateRow::from_summary("w", "c", "cycles", 4, 8.0, &Summary::default()).is_none());
    assert!(RateRow::from_summary("w", "c", "cycles", 4, 0.0, &s).is_none());
    assert_eq!(fmt_rate(123.4), "123/s");
    assert_eq!(fmt_rate(5.0), "5.0/s");
    assert_eq!(fmt_rate(0.5), "0.50/s");

    let mut left = report("berth", vec![op("cycle", 200_000.0, 40, 0)]);
    left.workloads[0].name = "cycles-par4".into();
    left.workloads[0].rate = Some(r.clone());
    // The per-runtime text report has the rate table.
    let one = render_bench(&left);
    assert!(one.contains("rate (cycles/s)"), "{one}");
    assert!(
        one.contains("cycles-par4/cycle (4 at a time)") && one.contains("5.0/s"),
        "{one}"
    );

    let mut right = report("containerd", vec![op("cycle", 800_000.0, 20, 0)]);
    right.workloads[0].name = "cycles-par4".into();
    right.workloads[0].rate = Some(RateRow {
        count: 20,
        per_sec: 2.0,
        p50_us: 800_000.0,
        p99_us: 1_600_000.0,
        ..r
    });
    let out = render_compare(&left, &right, None, None);
    assert!(out.contains("rate (cycles/s)"), "{out}");
    assert!(
        out.contains("cycles-par4/cycle (4 at a time) x40/20"),
        "{out}"
    );
    // cycles per second: 5.0 vs 2.0; p99 400 ms vs 1.6 s.
    assert!(
        out.contains("5.0/s") && out.contains("2.0/s") && out.contains("2.50x"),
        "{out}"
    );
    assert!(out.contains("0.25x"), "{out}");
    assert!(
        out.contains("above 1.00x means berth completes more"),
        "{out}"
    );
    // One side without a rate row (e.g. its cycles all failed).
    right.workloads[0].rate = None;
    let out = render_compare(&left, &right, None, None);
    assert!(out.contains("x40/0") && out.contains("n/a"), "{out}");
    // Neither side: no rate table.
    let plain = render_compare(
        &report("a", vec![op("Version", 1.0, 1, 0)]),
        &report("b", vec![op("Version", 1.0, 1, 0)]),
        None,
        None,
    );
    assert!(!plain.contains("rate ("), "{plain}");
}

#[test]
fn rate_survives_json_and_old_reports_parse() {
    let mut r = report("x", vec![op("cycle", 10.0, 4, 0)]);
    let s = Summary {
        count: 4,
        ..Default::default()
    };
    r.workloads[0].rate = RateRow::from_summary("x", "cycle", "cycles", 16, 2.0, &s);
    let j = serde_json::to_string(&r).unwrap();
    let back: BenchReport = serde_json::from_str(&j).unwrap();
    assert_eq!(
        back.workloads[0].rate.as_ref().map(|r| r.per_sec),
        Some(2.0)
    );
    // Reports written before the rate field existed still parse.
    let old = serde_json::to_string(&report("y", vec![])).unwrap();
    assert!(!old.contains("\"rate\""), "{old}");
    let back: BenchReport = serde_json::from_str(&old).unwrap();
    assert!(back.workloads[0].rate.is_none());
}
