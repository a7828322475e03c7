//! `compare`: two runtimes' reports side by side, latency and throughput ratios.

use std::fmt::Write as _;

use super::*;

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

fn find_op<'a>(r: &'a BenchReport, workload: &str, op: &str) -> Option<&'a OpResult> {
    r.workloads
        .iter()
        .filter(|w| w.name == workload)
        .flat_map(|w| &w.ops)
        .find(|o| o.op == op)
}

fn cell(o: Option<&OpResult>, pick: fn(&Summary) -> f64) -> String {
    match o {
        None => "n/a".into(),
        Some(o) if o.has_samples() => fmt_us(pick(&o.summary)),
        Some(o) => o.status.clone(),
    }
}

/// The throughput table of a comparison (empty when neither side has throughput rows). Its
/// ratio is left / right too, so here above 1.00x means the left runtime is faster.
pub(super) fn render_throughput(left: &BenchReport, right: &BenchReport) -> String {
    let mut names: Vec<String> = Vec::new();
    for rep in [left, right] {
        for t in rep.workloads.iter().flat_map(|w| &w.throughput) {
            if !names.contains(&t.name) {
                names.push(t.name.clone());
            }
        }
    }
    if names.is_empty() {
        return String::new();
    }
    let find = |rep: &BenchReport, name: &str| -> Option<ThroughputRow> {
        rep.workloads
            .iter()
            .flat_map(|w| &w.throughput)
            .rfind(|t| t.name == name)
            .cloned()
    };
    let (l, r) = (&left.label, &right.label);
    let header: Vec<String> = vec![
        "throughput (MB = 10^6 bytes)".into(),
        format!("{l} median"),
        format!("{l} worst"),
        format!("{r} median"),
        format!("{r} worst"),
        "ratio median".into(),
        "ratio worst".into(),
    ];
    let mut rows = Vec::new();
    for name in &names {
        let (a, b) = (find(left, name), find(right, name));
        let get = |t: &Option<ThroughputRow>, f: fn(&ThroughputRow) -> f64| {
            t.as_ref().map(|t| fmt_mb_s(f(t))).unwrap_or("n/a".into())
        };
        let rat = |f: fn(&ThroughputRow) -> f64| match (&a, &b) {
            (Some(x), Some(y)) => ratio(f(x), f(y)),
            _ => "-".into(),
        };
        rows.push(vec![
            format!(
                "{name} x{}/{}",
                a.as_ref().map_or(0, |t| t.count),
                b.as_ref().map_or(0, |t| t.count)
            ),
            get(&a, |t| t.median_mb_s),
            get(&a, |t| t.worst_mb_s),
            get(&b, |t| t.median_mb_s),
            get(&b, |t| t.worst_mb_s),
            rat(|t| t.median_mb_s),
            rat(|t| t.worst_mb_s),
        ]);
    }
    let mut out = table(&header, &rows);
    let _ = writeln!(
        out,
        "(throughput ratios are {l} / {r}: above 1.00x means {l} moves more per second)"
    );
    out
}

/// Side-by-side table: left vs right. Ratios are left / right (below 1.00x
/// means the left runtime is faster or smaller).
pub fn render_compare(
    left: &BenchReport,
    right: &BenchReport,
    left_startup: Option<&StartupReport>,
    right_startup: Option<&StartupReport>,
) -> String {
    let (l, r) = (&left.label, &right.label);
    let mut out = String::new();
    let header: Vec<String> = vec![
        "op".into(),
        format!("{l} p50"),
        format!("{l} p99"),
        format!("{r} p50"),
        format!("{r} p99"),
        "ratio p50".into(),
        "ratio p99".into(),
    ];
    let mut rows = Vec::new();
    // Union of (workload, op) in left order, then right-only ones.
    let mut keys: Vec<(String, String)> = Vec::new();
    for rep in [left, right] {
        for w in &rep.workloads {
            for o in &w.ops {
                let k = (w.name.clone(), o.op.clone());
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
    }
    for (w, op) in &keys {
        let lo = find_op(left, w, op);
        let ro = find_op(right, w, op);
        let sampled = (
            lo.filter(|o| o.has_samples()),
            ro.filter(|o| o.has_samples()),
        );
        let (r50, r99) = match sampled {
            (Some(l), Some(r)) => {
                let (ls, rs) = (&l.summary, &r.summary);
                (ratio(ls.p50_us, rs.p50_us), ratio(ls.p99_us, rs.p99_us))
            }
            _ => ("-".into(), "-".into()),
        };
        rows.push(vec![
            format!("{w}/{op}"),
            cell(lo, |s| s.p50_us),
            cell(lo, |s| s.p99_us),
            cell(ro, |s| s.p50_us),
            cell(ro, |s| s.p99_us),
            r50,
            r99,
        ]);
    }
    if let (Some(ls), Some(rs)) = (left_startup, right_startup) {
        rows.push(vec![
            format!("startup (median of {}/{})", ls.runs.len(), rs.runs.len()),
            format!("{:.1}ms", ls.median_startup_ms),
            format!("max {:.1}ms", ls.max_startup_ms),
            format!("{:.1}ms", rs.median_startup_ms),
            format!("max {:.1}ms", rs.max_startup_ms),
            ratio(ls.median_startup_ms, rs.median_startup_ms),
            ratio(ls.max_startup_ms, rs.max_startup_ms),
        ]);
    }
    out.push_str(&table(&header, &rows));

    let throughput = render_throughput(left, right);
    if !throughput.is_empty() {
        out.push('\n');
        out.push_str(&throughput);
    }
    let rate = super::rate::render_compare(left, right);
    if !rate.is_empty() {
        out.push('\n');
        out.push_str(&rate);
    }
    let scaling = super::scaling::render_compare(left, right);
    if !scaling.is_empty() {
        out.push('\n');
        out.push_str(&scaling);
    }

    let mut mem_rows = Vec::new();
    let kib = |v: Option<u64>| v.map(fmt_kib).unwrap_or_else(|| "n/a".into());
    let rat = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => ratio(a as f64, b as f64),
        _ => "-".into(),
    };
    let mut mem = |name: &str, a: Option<u64>, b: Option<u64>| {
        mem_rows.push(vec![name.to_string(), kib(a), kib(b), rat(a, b)]);
    };
    if let (Some(ls), Some(rs)) = (left_startup, right_startup) {
        mem(
            "idle RSS after startup (median)",
            Some(ls.median_idle_rss_kib),
            Some(rs.median_idle_rss_kib),
        );
    }
    let before = |x: &BenchReport| x.rss_before.as_ref().map(|s| s.total_rss_kib);
    let after = |x: &BenchReport| x.rss_after.as_ref().map(|s| s.total_rss_kib);
    let hwm = |x: &BenchReport| x.rss_after.as_ref().map(|s| s.total_hwm_kib);
    mem("RSS before workloads", before(left), before(right));
    mem("RSS after workloads", after(left), after(right));
    mem("peak RSS (sum of VmHWM)", hwm(left), hwm(right));
    // Workload-measured figures (pod-memory), matched by name.
    let mut names: Vec<String> = Vec::new();
    for rep in [left, right] {
        for m in rep.workloads.iter().flat_map(|w| &w.memory) {
            if !names.contains(&m.name) {
                names.push(m.name.clone());
            }
        }
    }
    let find_mem = |rep: &BenchReport, name: &str| -> Option<MemoryRow> {
        rep.workloads
            .iter()
            .flat_map(|w| &w.memory)
            .rfind(|m| m.name == name)
            .cloned()
    };
    for name in &names {
        let (a, b) = (find_mem(left, name), find_mem(right, name));
        let cell = |m: &Option<MemoryRow>| m.as_ref().map(|m| m.cell()).unwrap_or("n/a".into());
        let r = match (
            a.as_ref().and_then(|m| m.kib),
            b.as_ref().and_then(|m| m.kib),
        ) {
            (Some(x), Some(y)) if x >= 0 && y > 0 => ratio(x as f64, y as f64),
            _ => "-".into(),
        };
        mem_rows.push(vec![name.clone(), cell(&a), cell(&b), r]);
    }
    out.push('\n');
    out.push_str(&table(
        &["memory".into(), l.clone(), r.clone(), "ratio".into()],
        &mem_rows,
    ));
    let _ = writeln!(
        out,
        "(ratios are {l} / {r}: below 1.00x means {l} is faster/smaller)"
    );
    for (rep, name) in [(left, l), (right, r)] {
        for w in &rep.workloads {
            for o in &w.ops {
                if let Some(e) = &o.first_error {
                    let _ = writeln!(
                        out,
                        "warning: {name} {}/{}: {} error(s), first: {e}",
                        w.name, o.op, o.errors
                    );
                }
            }
            if let Some(e) = &w.stage_error {
                let _ = writeln!(out, "warning: {name} {}: not measured further: {e}", w.name);
            }
            if let Some(e) = &w.teardown_error {
                let _ = writeln!(out, "warning: {name} {}: teardown failed: {e}", w.name);
            }
        }
    }
    for (rep, name) in [(left, l), (right, r)] {
        for m in rep.workloads.iter().flat_map(|w| &w.memory) {
            if let (Some(_), Some(n)) = (m.kib, &m.note) {
                let _ = writeln!(out, "{name} {}: {n}", m.name);
            }
        }
    }
    out
}
