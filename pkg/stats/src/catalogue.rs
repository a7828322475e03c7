//! The cadvisor-named metrics of ListMetricDescriptors / ListPodSandboxMetrics, which kubelet
//! serves as `/metrics/cadvisor` when it takes stats from the runtime.
//!
//! Names, meanings and types are cadvisor's, so dashboards and HPA adapters built on cadvisor work
//! unchanged. CRI carries values as unsigned integers: counters in seconds are reported in whole
//! seconds (as CRI-O does); the nanosecond counters behind them stay available through
//! ContainerStats.

use crate::{ContainerUsage, InterfaceUsage, PodUsage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricDescriptor {
    pub name: &'static str,
    pub help: &'static str,
    pub label_keys: &'static [&'static str],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSample {
    pub name: &'static str,
    pub kind: MetricKind,
    pub timestamp_ns: i64,
    /// In the order of the descriptor's `label_keys`.
    pub label_values: Vec<String>,
    pub value: u64,
}

/// One pod's samples: pod-level (network) and per container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMetrics {
    pub pod_sandbox_id: String,
    pub metrics: Vec<MetricSample>,
    pub containers: Vec<(String, Vec<MetricSample>)>,
}

/// cadvisor's labels of a container series.
const CONTAINER_LABELS: &[&str] = &["container", "id", "image", "name", "namespace", "pod"];
/// Network series are the pod's (cadvisor puts them on the pod's sandbox), per interface.
const NETWORK_LABELS: &[&str] = &[
    "container",
    "id",
    "image",
    "name",
    "namespace",
    "pod",
    "interface",
];

macro_rules! catalogue {
    ($($ident:ident: $name:literal, $kind:ident, $labels:ident, $help:literal;)*) => {
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy)]
        enum Id { $($ident,)* }
        const DESCRIPTORS: &[(Id, MetricKind, MetricDescriptor)] = &[
            $((Id::$ident, MetricKind::$kind, MetricDescriptor { name: $name, help: $help, label_keys: $labels }),)*
        ];
    };
}

catalogue! {
    CpuUsage: "container_cpu_usage_seconds_total", Counter, CONTAINER_LABELS, "Cumulative cpu time consumed in seconds.";
    CpuUser: "container_cpu_user_seconds_total", Counter, CONTAINER_LABELS, "Cumulative user cpu time consumed in seconds.";
    CpuSystem: "container_cpu_system_seconds_total", Counter, CONTAINER_LABELS, "Cumulative system cpu time consumed in seconds.";
    CfsPeriods: "container_cpu_cfs_periods_total", Counter, CONTAINER_LABELS, "Number of elapsed enforcement period intervals.";
    CfsThrottledPeriods: "container_cpu_cfs_throttled_periods_total", Counter, CONTAINER_LABELS, "Number of throttled period intervals.";
    CfsThrottledSeconds: "container_cpu_cfs_throttled_seconds_total", Counter, CONTAINER_LABELS, "Total time duration the container has been throttled.";
    MemoryUsage: "container_memory_usage_bytes", Gauge, CONTAINER_LABELS, "Current memory usage in bytes, including all memory regardless of when it was accessed.";
    MemoryWorkingSet: "container_memory_working_set_bytes", Gauge, CONTAINER_LABELS, "Current working set in bytes.";
    MemoryRss: "container_memory_rss", Gauge, CONTAINER_LABELS, "Size of RSS in bytes.";
    MemoryCache: "container_memory_cache", Gauge, CONTAINER_LABELS, "Number of bytes of page cache memory.";
    MemoryMappedFile: "container_memory_mapped_file", Gauge, CONTAINER_LABELS, "Size of memory mapped files in bytes.";
    MemorySwap: "container_memory_swap", Gauge, CONTAINER_LABELS, "Container swap usage in bytes.";
    MemoryFailcnt: "container_memory_failcnt", Counter, CONTAINER_LABELS, "Number of memory usage hits limits.";
    MemoryLimit: "container_spec_memory_limit_bytes", Gauge, CONTAINER_LABELS, "Memory limit for the container.";
    OomEvents: "container_oom_events_total", Counter, CONTAINER_LABELS, "Count of out of memory events observed for the container.";
    Processes: "container_processes", Gauge, CONTAINER_LABELS, "Number of processes running inside the container.";
    FsUsage: "container_fs_usage_bytes", Gauge, CONTAINER_LABELS, "Number of bytes that are consumed by the container on this filesystem.";
    FsInodes: "container_fs_inodes_total", Gauge, CONTAINER_LABELS, "Number of inodes used by the container on this filesystem.";
    StartTime: "container_start_time_seconds", Gauge, CONTAINER_LABELS, "Start time of the container since unix epoch in seconds.";
    RxBytes: "container_network_receive_bytes_total", Counter, NETWORK_LABELS, "Cumulative count of bytes received.";
    RxPackets: "container_network_receive_packets_total", Counter, NETWORK_LABELS, "Cumulative count of packets received.";
    RxErrors: "container_network_receive_errors_total", Counter, NETWORK_LABELS, "Cumulative count of errors encountered while receiving.";
    RxDropped: "container_network_receive_packets_dropped_total", Counter, NETWORK_LABELS, "Cumulative count of packets dropped while receiving.";
    TxBytes: "container_network_transmit_bytes_total", Counter, NETWORK_LABELS, "Cumulative count of bytes transmitted.";
    TxPackets: "container_network_transmit_packets_total", Counter, NETWORK_LABELS, "Cumulative count of packets transmitted.";
    TxErrors: "container_network_transmit_errors_total", Counter, NETWORK_LABELS, "Cumulative count of errors encountered while transmitting.";
    TxDropped: "container_network_transmit_packets_dropped_total", Counter, NETWORK_LABELS, "Cumulative count of packets dropped while transmitting.";
}

/// Every metric ListPodSandboxMetrics may return.
pub fn descriptors() -> Vec<MetricDescriptor> {
    DESCRIPTORS.iter().map(|(_, _, d)| d.clone()).collect()
}

const NS_PER_S: u64 = 1_000_000_000;

struct Builder<'a> {
    timestamp_ns: i64,
    labels: Vec<String>,
    out: &'a mut Vec<MetricSample>,
}

impl Builder<'_> {
    fn push(&mut self, id: Id, value: u64) {
        let (_, kind, d) = &DESCRIPTORS[id as usize];
        self.out.push(MetricSample {
            name: d.name,
            kind: *kind,
            timestamp_ns: self.timestamp_ns,
            label_values: self.labels.clone(),
            value,
        });
    }
}

/// The pod's samples, computed from its usage.
pub fn pod_metrics(pod: &PodUsage) -> PodMetrics {
    let meta = &pod.record.metadata;
    let mut metrics = Vec::new();
    if let Some(network) = &pod.network {
        for iface in &network.interfaces {
            network_samples(pod, iface, &mut metrics);
        }
    }
    let containers = pod
        .containers
        .iter()
        .map(|c| {
            let mut out = Vec::new();
            container_samples(c, &meta.name, &meta.namespace, &mut out);
            (c.record.id.clone(), out)
        })
        .collect();
    PodMetrics {
        pod_sandbox_id: pod.record.id.clone(),
        metrics,
        containers,
    }
}

fn network_samples(pod: &PodUsage, iface: &InterfaceUsage, out: &mut Vec<MetricSample>) {
    let meta = &pod.record.metadata;
    let mut b = Builder {
        timestamp_ns: pod.timestamp_ns,
        labels: vec![
            // cadvisor's name for the pod-level container.
            "POD".to_string(),
            pod.record.id.clone(),
            String::new(),
            pod.record.id.clone(),
            meta.namespace.clone(),
            meta.name.clone(),
            iface.name.clone(),
        ],
        out,
    };
    b.push(Id::RxBytes, iface.rx_bytes);
    b.push(Id::RxPackets, iface.rx_packets);
    b.push(Id::RxErrors, iface.rx_errors);
    b.push(Id::RxDropped, iface.rx_dropped);
    b.push(Id::TxBytes, iface.tx_bytes);
    b.push(Id::TxPackets, iface.tx_packets);
    b.push(Id::TxErrors, iface.tx_errors);
    b.push(Id::TxDropped, iface.tx_dropped);
}

fn container_samples(c: &ContainerUsage, pod: &str, namespace: &str, out: &mut Vec<MetricSample>) {
    let r = &c.record;
    let mut b = Builder {
        timestamp_ns: c.timestamp_ns,
        labels: vec![
            r.config.name.clone(),
            r.id.clone(),
            r.image_name.clone(),
            r.id.clone(),
            namespace.to_string(),
            pod.to_string(),
        ],
        out,
    };
    if let Some(cpu) = &c.cpu {
        b.push(Id::CpuUsage, cpu.usage_core_ns / NS_PER_S);
        b.push(Id::CpuUser, cpu.user_ns / NS_PER_S);
        b.push(Id::CpuSystem, cpu.system_ns / NS_PER_S);
        b.push(Id::CfsPeriods, cpu.periods);
        b.push(Id::CfsThrottledPeriods, cpu.throttled_periods);
        b.push(Id::CfsThrottledSeconds, cpu.throttled_ns / NS_PER_S);
    }
    if let Some(m) = &c.memory {
        b.push(Id::MemoryUsage, m.usage_bytes);
        b.push(Id::MemoryWorkingSet, m.working_set_bytes);
        b.push(Id::MemoryRss, m.rss_bytes);
        b.push(Id::MemoryCache, m.cache_bytes);
        b.push(Id::MemoryMappedFile, m.mapped_file_bytes);
        b.push(Id::MemorySwap, m.swap_usage_bytes.unwrap_or(0));
        b.push(Id::MemoryFailcnt, m.failcnt);
        // cadvisor reports 0 for unlimited.
        b.push(Id::MemoryLimit, m.limit_bytes.unwrap_or(0));
        b.push(Id::OomEvents, m.oom_kills);
    }
    if let Some(p) = c.processes {
        b.push(Id::Processes, p);
    }
    if let Some(fs) = &c.writable_layer {
        b.push(Id::FsUsage, fs.used_bytes);
        b.push(Id::FsInodes, fs.inodes_used);
    }
    if r.started_at_ns > 0 {
        b.push(Id::StartTime, r.started_at_ns as u64 / NS_PER_S);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_in_id_order_and_unique() {
        let mut names = std::collections::HashSet::new();
        for (i, (id, _, d)) in DESCRIPTORS.iter().enumerate() {
            assert_eq!(*id as usize, i, "{}", d.name);
            assert!(names.insert(d.name), "duplicate {}", d.name);
            assert!(d.name.starts_with("container_"));
            assert!(!d.label_keys.is_empty());
        }
        for required in [
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
            "container_memory_rss",
            "container_network_receive_bytes_total",
            "container_network_transmit_bytes_total",
            "container_fs_usage_bytes",
            "container_processes",
        ] {
            assert!(names.contains(required), "{required}");
        }
    }
}
