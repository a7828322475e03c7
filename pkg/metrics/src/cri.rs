//! Per-RPC counters and latency histograms.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// `berth_cri_operations_total{method,code}` and `berth_cri_operation_duration_seconds{method}`.
#[derive(Clone)]
pub struct CriMetrics {
    operations: IntCounterVec,
    duration: HistogramVec,
}

/// Latency buckets from 100µs to 2 minutes: status calls take microseconds, pulls take minutes.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0,
];

impl CriMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<CriMetrics, prometheus::Error> {
        let operations = IntCounterVec::new(
            Opts::new(
                "berth_cri_operations_total",
                "CRI RPCs handled, by method and gRPC status code.",
            ),
            &["method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "berth_cri_operation_duration_seconds",
                "Time spent handling CRI RPCs, by method.",
            )
            .buckets(BUCKETS.to_vec()),
            &["method"],
        )?;
        registry.register(Box::new(operations.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(CriMetrics {
            operations,
            duration,
        })
    }

    /// Starts timing one RPC; call [`RpcTimer::finish`] with the resulting gRPC code name.
    pub fn start(&self, method: &'static str) -> RpcTimer<'_> {
        RpcTimer {
            metrics: self,
            method,
            started: Instant::now(),
        }
    }
}

pub struct RpcTimer<'a> {
    metrics: &'a CriMetrics,
    method: &'static str,
    started: Instant,
}

impl RpcTimer<'_> {
    pub fn finish(self, code: &str) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.metrics
            .duration
            .with_label_values(&[self.method])
            .observe(elapsed);
        self.metrics
            .operations
            .with_label_values(&[self.method, code])
            .inc();
    }
}
