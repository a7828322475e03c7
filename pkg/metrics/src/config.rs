//! `berth_config_*`: configuration reloads (SIGHUP), their outcome, and changes waiting for a
//! restart.

use prometheus::{Gauge, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct ConfigMetrics {
    reloads: IntCounterVec,
    last_success: Gauge,
    restart_required: IntGauge,
}

impl ConfigMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<ConfigMetrics, prometheus::Error> {
        let metrics = ConfigMetrics {
            reloads: IntCounterVec::new(
                Opts::new(
                    "berth_config_reloads_total",
                    "Configuration reloads (SIGHUP), by result (success, failure: the new \
                     configuration was rejected and the previous one stays).",
                ),
                &["result"],
            )?,
            last_success: Gauge::new(
                "berth_config_last_reload_success_timestamp_seconds",
                "When the configuration was last loaded successfully (start or reload), as a \
                 Unix time.",
            )?,
            restart_required: IntGauge::new(
                "berth_config_restart_required",
                "1 when the configuration files change settings that only a restart applies \
                 (socket, root, state, runtimes, ...), as of the last successful reload.",
            )?,
        };
        // Both results exist from the start, so that rate() and alerts see a 0 before the first.
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]);
        }
        registry.register(Box::new(metrics.reloads.clone()))?;
        registry.register(Box::new(metrics.last_success.clone()))?;
        registry.register(Box::new(metrics.restart_required.clone()))?;
        Ok(metrics)
    }

    /// The configuration was loaded at start: the timestamp, without counting a reload.
    pub fn loaded(&self) {
        self.last_success.set(now());
    }

    /// A reload applied; `restart_required`: some changes wait for a restart.
    pub fn reloaded(&self, restart_required: bool) {
        self.reloads.with_label_values(&["success"]).inc();
        self.last_success.set(now());
        self.restart_required.set(i64::from(restart_required));
    }

    /// A reload was rejected; the previous configuration stays.
    pub fn reload_failed(&self) {
        self.reloads.with_label_values(&["failure"]).inc();
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use crate::Metrics;

    #[test]
    fn reload_outcomes() {
        let m = Metrics::new("t").unwrap();
        let text = m.render();
        assert!(
            text.contains("berth_config_reloads_total{result=\"failure\"} 0"),
            "{text}"
        );
        m.config.loaded();
        m.config.reload_failed();
        m.config.reloaded(true);
        let text = m.render();
        assert!(
            text.contains("berth_config_reloads_total{result=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("berth_config_reloads_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(text.contains("berth_config_restart_required 1"), "{text}");
        assert!(
            !text.contains("berth_config_last_reload_success_timestamp_seconds 0\n"),
            "{text}"
        );
    }
}
