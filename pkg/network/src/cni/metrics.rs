//! `berth_cni_*` metrics.

use std::time::Instant;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::cni::Command;

#[derive(Clone)]
pub struct CniMetrics {
    operations: IntCounterVec,
    duration: HistogramVec,
}

impl CniMetrics {
    pub fn register(registry: &Registry) -> Result<CniMetrics, prometheus::Error> {
        let metrics = CniMetrics {
            operations: IntCounterVec::new(
                Opts::new(
                    "berth_cni_operations_total",
                    "CNI operations on the pod network, by op (ADD, DEL, CHECK) and result (success, failure).",
                ),
                &["op", "result"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "berth_cni_operation_duration_seconds",
                    "Time taken by CNI operations on the pod network, all plugins of the list included.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ]),
                &["op"],
            )?,
        };
        registry.register(Box::new(metrics.operations.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        Ok(metrics)
    }

    pub(crate) fn observe(&self, op: Command, started: Instant, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.operations
            .with_label_values(&[op.as_str(), result])
            .inc();
        self.duration
            .with_label_values(&[op.as_str()])
            .observe(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_counts() {
        let registry = Registry::new();
        let metrics = CniMetrics::register(&registry).unwrap();
        metrics.observe(Command::Add, Instant::now(), true);
        metrics.observe(Command::Del, Instant::now(), false);
        let families = registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert!(names.contains(&"berth_cni_operations_total"), "{names:?}");
        assert!(names.contains(&"berth_cni_operation_duration_seconds"));
        assert!(
            CniMetrics::register(&registry).is_err(),
            "double registration"
        );
    }
}
