//! `berth_container_events_dropped_total` and `berth_container_event_subscribers`: how the
//! GetContainerEvents clients keep up.

use prometheus::{IntCounter, IntGauge, Registry};

#[derive(Clone)]
pub struct EventMetrics {
    dropped: IntCounter,
    subscribers: IntGauge,
}

impl EventMetrics {
    pub(crate) fn register(registry: &Registry) -> Result<EventMetrics, prometheus::Error> {
        let metrics = EventMetrics {
            dropped: IntCounter::new(
                "berth_container_events_dropped_total",
                "Container events a GetContainerEvents client lost because it fell behind.",
            )?,
            subscribers: IntGauge::new(
                "berth_container_event_subscribers",
                "GetContainerEvents streams open now.",
            )?,
        };
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.subscribers.clone()))?;
        Ok(metrics)
    }

    pub fn dropped(&self, n: u64) {
        self.dropped.inc_by(n);
    }

    pub fn subscribed(&self) {
        self.subscribers.inc();
    }

    pub fn unsubscribed(&self) {
        self.subscribers.dec();
    }
}
