//! `berth_container_*`, `berth_containers`, `berth_sandboxes` and `berth_monitor_processes`.
//!
//! Counters move where the record's phase changes (see `events.rs`); the gauges are computed at
//! scrape time from the records, so they can never drift from what CRI reports. No label carries
//! a container or pod ID: the daemon's own series stay few whatever runs on the node.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::events::ContainerEventKind;
use crate::record::{ContainerRecord, ContainerState, Phase};

/// Counters updated as containers change phase.
#[derive(Clone)]
pub struct ContainerMetrics {
    starts: IntCounter,
    exits: IntCounterVec,
    oom_kills: IntCounter,
    monitors_lost: IntCounter,
    events: IntCounterVec,
    /// Log bytes of containers whose exit berthd has recorded; running ones are added at scrape.
    exited_log_bytes: Arc<AtomicU64>,
}

impl ContainerMetrics {
    pub fn register(registry: &Registry) -> Result<ContainerMetrics, prometheus::Error> {
        let metrics = ContainerMetrics {
            starts: IntCounter::new(
                "berth_container_starts_total",
                "Containers that started running.",
            )?,
            exits: IntCounterVec::new(
                Opts::new(
                    "berth_container_exits_total",
                    "Containers that exited, by reason (Completed, Error, OOMKilled, StartError, Unknown).",
                ),
                &["reason"],
            )?,
            oom_kills: IntCounter::new(
                "berth_container_oom_kills_total",
                "Containers killed by the kernel's OOM killer.",
            )?,
            monitors_lost: IntCounter::new(
                "berth_container_monitors_lost_total",
                "Running containers whose pod monitor died without recording their exit (seen while \
                 running or by recovery at start): killed and reported with an unknown exit.",
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "berth_container_events_total",
                    "Container lifecycle events, by type (created, started, stopped, deleted).",
                ),
                &["type"],
            )?,
            exited_log_bytes: Arc::new(AtomicU64::new(0)),
        };
        registry.register(Box::new(metrics.starts.clone()))?;
        registry.register(Box::new(metrics.exits.clone()))?;
        registry.register(Box::new(metrics.oom_kills.clone()))?;
        registry.register(Box::new(metrics.monitors_lost.clone()))?;
        registry.register(Box::new(metrics.events.clone()))?;
        Ok(metrics)
    }

    /// Counts what a phase change means.
    /// A running container's monitor was found gone with no exit recorded.
    pub(crate) fn monitor_lost(&self) {
        self.monitors_lost.inc();
    }

    pub(crate) fn observe(&self, kind: ContainerEventKind, record: &ContainerRecord) {
        self.events.with_label_values(&[kind.as_str()]).inc();
        match kind {
            ContainerEventKind::Started => self.starts.inc(),
            ContainerEventKind::Stopped => {
                let reason = match record.reason.as_str() {
                    r @ ("Completed" | "Error" | "OOMKilled" | "StartError") => r,
                    _ => "Unknown",
                };
                self.exits.with_label_values(&[reason]).inc();
                if reason == "OOMKilled" {
                    self.oom_kills.inc();
                }
                self.exited_log_bytes
                    .fetch_add(record.log_bytes, Ordering::Relaxed);
            }
            ContainerEventKind::Created | ContainerEventKind::Deleted => {}
        }
    }
}

/// The scrape-time gauges and the log-bytes counter, computed from the service's state.
pub(crate) struct StateCollector {
    inner: Weak<crate::Inner>,
    containers: IntGaugeVec,
    sandboxes: IntGaugeVec,
    monitors: IntGauge,
    log_bytes: prometheus::IntCounter,
    descs: Vec<Desc>,
}

impl StateCollector {
    pub(crate) fn new(inner: Weak<crate::Inner>) -> Result<StateCollector, prometheus::Error> {
        let containers = IntGaugeVec::new(
            Opts::new(
                "berth_containers",
                "Containers, by CRI state (created, running, exited, unknown).",
            ),
            &["state"],
        )?;
        let sandboxes = IntGaugeVec::new(
            Opts::new(
                "berth_sandboxes",
                "Pod sandboxes, by CRI state (ready, notready).",
            ),
            &["state"],
        )?;
        let monitors = IntGauge::new(
            "berth_monitor_processes",
            "berth-monitor processes alive (one per pod with started containers).",
        )?;
        let log_bytes = IntCounter::new(
            "berth_container_log_bytes_total",
            "CRI log bytes written by the pod monitors for containers of this berthd's lifetime.",
        )?;
        let mut descs = Vec::new();
        descs.extend(containers.desc().into_iter().cloned());
        descs.extend(sandboxes.desc().into_iter().cloned());
        descs.extend(monitors.desc().into_iter().cloned());
        descs.extend(log_bytes.desc().into_iter().cloned());
        Ok(StateCollector {
            inner,
            containers,
            sandboxes,
            monitors,
            log_bytes,
            descs,
        })
    }
}

impl Collector for StateCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    /// Runs on the metrics server's blocking pool: it asks each pod monitor for its log count.
    fn collect(&self) -> Vec<MetricFamily> {
        let Some(inner) = self.inner.upgrade() else {
            return Vec::new();
        };
        let mut counts = [0i64; 4];
        for r in inner.records().values() {
            if r.phase == Phase::Creating {
                continue;
            }
            let i = match r.state() {
                ContainerState::Created => 0,
                ContainerState::Running => 1,
                ContainerState::Exited => 2,
                ContainerState::Unknown => 3,
            };
            counts[i] += 1;
        }
        for (state, n) in ["created", "running", "exited", "unknown"]
            .iter()
            .zip(counts)
        {
            self.containers.with_label_values(&[state]).set(n);
        }
        let (mut ready, mut not_ready) = (0, 0);
        for s in inner.deps.sandboxes.list() {
            match s.state() {
                berth_sandbox::SandboxState::Ready => ready += 1,
                berth_sandbox::SandboxState::NotReady => not_ready += 1,
            }
        }
        self.sandboxes.with_label_values(&["ready"]).set(ready);
        self.sandboxes
            .with_label_values(&["notready"])
            .set(not_ready);
        {
            let live = inner.monitors.live();
            self.monitors.set(live.len() as i64);
            let running_bytes: u64 = live
                .iter()
                .filter_map(|m| m.list().ok())
                .flatten()
                .filter(|c| c.exit.is_none())
                .map(|c| c.log_bytes)
                .sum();
            let exited = inner.deps.metrics.exited_log_bytes.load(Ordering::Relaxed);
            // A counter only goes up: a monitor that died takes its running containers' bytes
            // with it, which must not make the total go back.
            let total = exited + running_bytes;
            let current = self.log_bytes.get();
            if total > current {
                self.log_bytes.inc_by(total - current);
            }
        }
        let mut out = Vec::new();
        out.extend(self.containers.collect());
        out.extend(self.sandboxes.collect());
        out.extend(self.monitors.collect());
        out.extend(self.log_bytes.collect());
        out
    }
}
