//! `berth_image_*` metrics.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct ImageMetrics {
    pub(crate) pulls: IntCounterVec,
    pub(crate) bytes: IntCounter,
    pub(crate) duration: Histogram,
    pub(crate) in_progress: IntGauge,
    pub(crate) layers_reused: IntCounter,
    pub(crate) layers_fetched: IntCounter,
}

impl ImageMetrics {
    pub fn register(registry: &Registry) -> Result<ImageMetrics, prometheus::Error> {
        let metrics = ImageMetrics {
            pulls: IntCounterVec::new(
                Opts::new(
                    "berth_image_pulls_total",
                    "Image pulls, by result (success, failure).",
                ),
                &["result"],
            )?,
            bytes: IntCounter::new(
                "berth_image_pull_bytes_total",
                "Compressed layer bytes received from registries.",
            )?,
            duration: Histogram::with_opts(
                HistogramOpts::new(
                    "berth_image_pull_duration_seconds",
                    "Time taken by image pulls.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                ]),
            )?,
            in_progress: IntGauge::new(
                "berth_image_pulls_in_progress",
                "Image pulls running now.",
            )?,
            layers_reused: IntCounter::new(
                "berth_image_layers_reused_total",
                "Layers a pull needed that were already unpacked.",
            )?,
            layers_fetched: IntCounter::new(
                "berth_image_layers_fetched_total",
                "Layers downloaded and unpacked.",
            )?,
        };
        registry.register(Box::new(metrics.pulls.clone()))?;
        registry.register(Box::new(metrics.bytes.clone()))?;
        registry.register(Box::new(metrics.duration.clone()))?;
        registry.register(Box::new(metrics.in_progress.clone()))?;
        registry.register(Box::new(metrics.layers_reused.clone()))?;
        registry.register(Box::new(metrics.layers_fetched.clone()))?;
        Ok(metrics)
    }
}
