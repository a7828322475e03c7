//! Measures pin + unpin of net+ipc+uts with a hostname and two sysctls (run as root):
//! `cargo run --release -p berth-namespace --example pin_bench -- [iterations]`

// Test code: a panic here is a failed test (clippy.toml covers #[test] fns, not helpers).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use berth_namespace::{NsKind, PinRequest, pin, unpin};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args().nth(1).map_or(Ok(200), |s| s.parse())?;
    let tmp = tempfile::tempdir()?;
    let sysctls = BTreeMap::from([
        (
            "net.ipv4.ip_unprivileged_port_start".to_owned(),
            "0".to_owned(),
        ),
        ("kernel.shmmni".to_owned(), "2048".to_owned()),
    ]);
    let mut pin_times = Vec::with_capacity(iterations);
    let mut unpin_times = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let dir = tmp.path().join(format!("sandboxes/{i}/ns"));
        let t0 = Instant::now();
        pin(&PinRequest {
            dir: &dir,
            kinds: &NsKind::ALL,
            hostname: Some("bench-pod"),
            sysctls: &sysctls,
            userns: None,
        })?;
        let t1 = Instant::now();
        unpin(&dir)?;
        pin_times.push(t1 - t0);
        unpin_times.push(t1.elapsed());
    }
    report("pin", &mut pin_times);
    report("unpin", &mut unpin_times);
    Ok(())
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort_unstable();
    // p is in 0..=1, so the index is within 0..len.
    #[allow(clippy::cast_possible_truncation)]
    let pct = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    let mean =
        times.iter().sum::<Duration>() / u32::try_from(times.len().max(1)).unwrap_or(u32::MAX);
    println!(
        "{what:>6}: n={} mean={mean:?} p50={:?} p90={:?} p99={:?} max={:?}",
        times.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}
