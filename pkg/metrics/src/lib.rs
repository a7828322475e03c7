//! Berth's Prometheus metrics.
//!
//! One [`Metrics`] value owns a private registry holding every family berthd exports; capability crates get
//! typed handles from it instead of registering globals, so tests can build as many independent instances as
//! they like. [`serve`] exposes the registry as Prometheus text on `/metrics`.

mod config;
mod cri;
mod events;
// sysconf(_SC_CLK_TCK) for the CPU seconds of /proc/self/stat.
#[allow(unsafe_code)]
mod process;
mod server;

use prometheus::{Encoder, IntGaugeVec, Opts, Registry, TextEncoder};

pub use config::ConfigMetrics;
pub use cri::{CriMetrics, RpcTimer};
pub use events::EventMetrics;
pub use server::{MetricsServerError, serve};

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("registering metric family: {0}")]
    Register(#[from] prometheus::Error),
}

/// The metric families of one berthd.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub cri: CriMetrics,
    pub events: EventMetrics,
    pub config: ConfigMetrics,
}

impl Metrics {
    /// Builds the registry with build info, CRI operation families and process metrics.
    pub fn new(version: &str) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "berth_build_info",
                "Berth build information; the value is always 1.",
            ),
            &["version", "api_version"],
        )?;
        build_info.with_label_values(&[version, "v1"]).set(1);
        registry.register(Box::new(build_info))?;
        let cri = CriMetrics::register(&registry)?;
        let events = EventMetrics::register(&registry)?;
        let config = ConfigMetrics::register(&registry)?;
        registry.register(Box::new(process::ProcessCollector::new()?))?;
        Ok(Metrics {
            registry,
            cri,
            events,
            config,
        })
    }

    /// The registry, for capability crates that add their own families.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything in Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(16 * 1024);
        let families = self.registry.gather();
        // Encoding into a Vec only fails on malformed families, which the registry refuses up front.
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_build_info_cri_and_process_families() {
        let metrics = Metrics::new("1.2.3").unwrap();
        let timer = metrics.cri.start("Version");
        timer.finish("OK");
        metrics.cri.start("RunPodSandbox").finish("Unimplemented");
        let text = metrics.render();
        assert!(
            text.contains("berth_build_info{api_version=\"v1\""),
            "{text}"
        );
        assert!(
            text.contains("berth_cri_operations_total{code=\"OK\",method=\"Version\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "berth_cri_operations_total{code=\"Unimplemented\",method=\"RunPodSandbox\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("berth_cri_operation_duration_seconds_count{method=\"Version\"} 1"),
            "{text}"
        );
        for family in [
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_threads",
            "process_start_time_seconds",
            "process_cpu_seconds_total",
        ] {
            assert!(text.contains(&format!("\n{family} ")), "{family} in {text}");
        }
    }

    #[test]
    fn instances_are_independent() {
        let a = Metrics::new("a").unwrap();
        let b = Metrics::new("b").unwrap();
        a.cri.start("Status").finish("OK");
        assert!(!b.render().contains("method=\"Status\""));
    }
}
