//! Drives a workload: setup, then per stage (most workloads have one) the stage's untimed
//! preparation, warm-up and measured iterations over `concurrency` tasks sharing one channel,
//! then teardown; turns the records into results.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{Recorder, Workload};
use crate::client::Clients;
use crate::report::{OpResult, RateRow, ScalingRow, ThroughputRow, WorkloadResult};
use crate::stats::Summary;

#[derive(Debug, Clone, Copy)]
pub struct RunParams {
    pub iterations: u64,
    pub warmup: u64,
    pub concurrency: usize,
    pub call_timeout: Duration,
}

/// Run `iterations` iterations (indices `first..first+iterations`) spread
/// over `concurrency` tasks; each task pulls the next index from a shared
/// counter, so a slow call on one task does not stall the others.
async fn run_phase(
    workload: &Arc<dyn Workload>,
    clients: &Clients,
    first: u64,
    iterations: u64,
    params: &RunParams,
) -> Result<Recorder> {
    let next = Arc::new(AtomicU64::new(first));
    let end = first + iterations;
    let mut tasks = Vec::with_capacity(params.concurrency);
    for _ in 0..params.concurrency.max(1) {
        let workload = Arc::clone(workload);
        let mut clients = clients.clone();
        let next = Arc::clone(&next);
        let timeout = params.call_timeout;
        tasks.push(tokio::spawn(async move {
            let mut rec = Recorder::new(timeout);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                workload.iteration(&mut clients, i, &mut rec).await;
            }
            rec
        }));
    }
    let mut total = Recorder::new(params.call_timeout);
    for t in tasks {
        total.merge(t.await.context("benchmark task panicked")?);
    }
    Ok(total)
}

/// Run one workload end to end and summarise it.
pub async fn run(
    workload: Arc<dyn Workload>,
    clients: &Clients,
    params: &RunParams,
) -> Result<WorkloadResult> {
    // A workload may fix its own concurrency (`cycles-par4`).
    let params = &RunParams {
        concurrency: workload.concurrency().unwrap_or(params.concurrency).max(1),
        ..*params
    };
    let mut setup_clients = clients.clone();
    if let Err(e) = workload.setup(&mut setup_clients).await {
        // Whatever the setup made before it failed goes too.
        if let Err(t) = workload.teardown(&mut setup_clients).await {
            eprintln!(
                "berth-bench: teardown of {} after its failed setup: {t:#}",
                workload.name()
            );
        }
        return Err(e.context(format!("setting up workload {}", workload.name())));
    }

    let stages = workload.stages().max(1);
    let mut stage_error = None;
    let mut stages_run: u64 = 0;
    let phases = async {
        let mut total = Recorder::new(params.call_timeout);
        let mut wall = Duration::ZERO;
        // Iteration indices are unique across stages.
        let per_stage = params.warmup + params.iterations;
        for stage in 0..stages {
            if let Err(e) = workload.enter_stage(&mut setup_clients, stage).await {
                let e = format!("stage {}: {e:#}", stage + 1);
                eprintln!("berth-bench: {}: {e}", workload.name());
                stage_error = Some(e);
                break;
            }
            let first = stage as u64 * per_stage;
            if params.warmup > 0 {
                // Warm-up samples are discarded.
                run_phase(&workload, clients, first, params.warmup, params).await?;
            }
            let start = Instant::now();
            let rec = run_phase(
                &workload,
                clients,
                first + params.warmup,
                params.iterations,
                params,
            )
            .await?;
            wall += start.elapsed();
            total.merge(rec);
            stages_run += 1;
        }
        Ok::<_, anyhow::Error>((total, wall))
    }
    .await;

    // Always, also after failed iterations: leave the runtime as we found it.
    let teardown_error = workload
        .teardown(&mut setup_clients)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    if let Some(e) = &teardown_error {
        eprintln!(
            "berth-bench: tearing down workload {}: {e}",
            workload.name()
        );
    }
    let (rec, wall) = phases?;

    let mut records = rec.into_ops();
    let mut ops = Vec::new();
    let transfers = workload.transfers();
    let mut throughput = Vec::new();
    let scaling_ops = workload.scaling();
    let mut scaling = Vec::new();
    let rate_op = workload.rate();
    let mut rate = None;
    let wall_secs = wall.as_secs_f64();
    // Declared ops first, in declared order, then anything else recorded.
    let mut names: Vec<&'static str> = workload.ops().to_vec();
    for k in records.keys() {
        if !names.contains(k) {
            names.push(k);
        }
    }
    for name in names {
        let mut r = records.remove(name).unwrap_or_default();
        let summary = Summary::from_samples(&mut r.samples);
        if let Some(&(_, bytes)) = transfers.iter().find(|(op, _)| *op == name)
            && let Some(row) = ThroughputRow::from_summary(workload.name(), name, bytes, &summary)
        {
            throughput.push(row);
        }
        if let Some(s) = scaling_ops.iter().find(|s| s.op == name)
            && let Some(row) = ScalingRow::from_summary(workload.name(), s, &summary)
        {
            scaling.push(row);
        }
        if let Some(r) = rate_op.filter(|r| r.op == name) {
            rate = RateRow::from_summary(
                workload.name(),
                name,
                r.unit,
                params.concurrency,
                wall_secs,
                &summary,
            );
        }
        ops.push(OpResult::new(
            name,
            summary,
            r.unsupported,
            r.errors,
            r.first_error,
        ));
    }
    Ok(WorkloadResult {
        name: workload.name().to_string(),
        iterations: params.iterations,
        warmup: params.warmup,
        concurrency: params.concurrency,
        stages,
        wall_secs,
        iterations_per_sec: if wall_secs > 0.0 {
            (params.iterations * stages_run) as f64 / wall_secs
        } else {
            0.0
        },
        ops,
        rss_after: None,
        memory: workload.memory(),
        throughput,
        scaling,
        rate,
        stage_error,
        teardown_error,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::super::{BoxFut, RateOp};
    use super::*;

    /// Counts how many iterations are in flight at once; every iteration is one "unit".
    struct Overlap {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    impl Workload for Overlap {
        fn name(&self) -> &'static str {
            "overlap"
        }
        fn ops(&self) -> &'static [&'static str] {
            &["unit"]
        }
        fn concurrency(&self) -> Option<usize> {
            Some(3)
        }
        fn rate(&self) -> Option<RateOp> {
            Some(RateOp {
                op: "unit",
                unit: "units",
            })
        }
        fn iteration<'a>(
            &'a self,
            _clients: &'a mut Clients,
            _iter: u64,
            rec: &'a mut Recorder,
        ) -> BoxFut<'a, ()> {
            Box::pin(async move {
                let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
                self.max.fetch_max(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                self.now.fetch_sub(1, Ordering::SeqCst);
                rec.sample("unit", Duration::from_millis(5));
            })
        }
    }

    #[tokio::test]
    async fn workload_concurrency_overrides_the_global_one_and_rate_is_reported() {
        let channel = tonic::transport::Endpoint::from_static("http://[::1]:9").connect_lazy();
        let clients = Clients::new(channel);
        let w = Arc::new(Overlap {
            now: AtomicUsize::new(0),
            max: AtomicUsize::new(0),
        });
        let params = RunParams {
            iterations: 12,
            warmup: 0,
            concurrency: 1,
            call_timeout: Duration::from_secs(1),
        };
        let res = run(w.clone(), &clients, &params).await.unwrap();
        assert_eq!(res.concurrency, 3);
        assert_eq!(w.max.load(Ordering::SeqCst), 3);
        let rate = res.rate.expect("a rate row");
        assert_eq!((rate.count, rate.concurrency), (12, 3));
        assert!(rate.per_sec > 0.0 && rate.wall_secs > 0.0, "{rate:?}");
        assert_eq!(rate.name, "overlap/unit");
    }
}
