//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats,
//! ListMetricDescriptors and ListPodSandboxMetrics: request validation and translation of
//! `berth-stats`' usage into CRI messages. The readings themselves block on file reads, so
//! they run on the blocking pool.

use std::sync::Arc;

use berth_cri_api::v1 as cri;
use berth_stats::{ContainerUsage, CpuUsage, InterfaceUsage, MetricKind, PodUsage, StatsService};

use crate::error::CriError;

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

async fn blocking<T: Send + 'static>(
    stats: &Arc<StatsService>,
    work: impl FnOnce(&StatsService) -> T + Send + 'static,
) -> Result<T, CriError> {
    let stats = stats.clone();
    tokio::task::spawn_blocking(move || work(&stats))
        .await
        .map_err(|source| CriError::Task {
            what: "stats",
            source,
        })
}

pub(crate) async fn container_stats(
    stats: &Arc<StatsService>,
    req: cri::ContainerStatsRequest,
) -> Result<cri::ContainerStatsResponse, CriError> {
    if req.container_id.is_empty() {
        return Err(CriError::InvalidArgument("container_id is required".into()));
    }
    let usage = blocking(stats, move |s| s.container(&req.container_id)).await??;
    Ok(cri::ContainerStatsResponse {
        stats: Some(container_to_cri(&usage)),
    })
}

pub(crate) async fn list_container_stats(
    stats: &Arc<StatsService>,
    req: cri::ListContainerStatsRequest,
) -> Result<cri::ListContainerStatsResponse, CriError> {
    let f = req.filter.unwrap_or_default();
    let filter = berth_container::ContainerFilter {
        list: berth_store::ListFilter {
            id: Some(f.id).filter(|s| !s.is_empty()),
            state: None,
            labels: f.label_selector.into_iter().collect(),
        },
        sandbox_id: Some(f.pod_sandbox_id).filter(|s| !s.is_empty()),
    };
    let usage = blocking(stats, move |s| s.containers(&filter)).await?;
    Ok(cri::ListContainerStatsResponse {
        stats: usage.iter().map(container_to_cri).collect(),
    })
}

pub(crate) async fn pod_sandbox_stats(
    stats: &Arc<StatsService>,
    req: cri::PodSandboxStatsRequest,
) -> Result<cri::PodSandboxStatsResponse, CriError> {
    if req.pod_sandbox_id.is_empty() {
        return Err(CriError::InvalidArgument(
            "pod_sandbox_id is required".into(),
        ));
    }
    let usage = blocking(stats, move |s| s.pod(&req.pod_sandbox_id)).await??;
    Ok(cri::PodSandboxStatsResponse {
        stats: Some(pod_to_cri(&usage)),
    })
}

pub(crate) async fn list_pod_sandbox_stats(
    stats: &Arc<StatsService>,
    req: cri::ListPodSandboxStatsRequest,
) -> Result<cri::ListPodSandboxStatsResponse, CriError> {
    let f = req.filter.unwrap_or_default();
    let filter = berth_sandbox::SandboxFilter {
        id: Some(f.id).filter(|s| !s.is_empty()),
        state: None,
        labels: f.label_selector.into_iter().collect(),
    };
    let usage = blocking(stats, move |s| s.pods(&filter)).await?;
    Ok(cri::ListPodSandboxStatsResponse {
        stats: usage.iter().map(pod_to_cri).collect(),
    })
}

pub(crate) fn list_metric_descriptors() -> cri::ListMetricDescriptorsResponse {
    cri::ListMetricDescriptorsResponse {
        descriptors: berth_stats::descriptors()
            .into_iter()
            .map(|d| cri::MetricDescriptor {
                name: d.name.to_string(),
                help: d.help.to_string(),
                label_keys: d.label_keys.iter().map(|k| k.to_string()).collect(),
            })
            .collect(),
    }
}

pub(crate) async fn list_pod_sandbox_metrics(
    stats: &Arc<StatsService>,
) -> Result<cri::ListPodSandboxMetricsResponse, CriError> {
    let pods = blocking(stats, |s| {
        s.pods(&berth_sandbox::SandboxFilter {
            state: Some(berth_sandbox::SandboxState::Ready),
            ..Default::default()
        })
    })
    .await?;
    let metric = |m: berth_stats::MetricSample| cri::Metric {
        name: m.name.to_string(),
        timestamp: m.timestamp_ns,
        metric_type: match m.kind {
            MetricKind::Counter => cri::MetricType::Counter,
            MetricKind::Gauge => cri::MetricType::Gauge,
        } as i32,
        label_values: m.label_values,
        value: value(m.value),
    };
    let pod_metrics = pods
        .iter()
        .map(|p| {
            let m = berth_stats::pod_metrics(p);
            cri::PodSandboxMetrics {
                pod_sandbox_id: m.pod_sandbox_id,
                metrics: m.metrics.into_iter().map(metric).collect(),
                container_metrics: m
                    .containers
                    .into_iter()
                    .map(|(id, samples)| cri::ContainerMetrics {
                        container_id: id,
                        metrics: samples.into_iter().map(metric).collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(cri::ListPodSandboxMetricsResponse { pod_metrics })
}

/// PSI as CRI carries it: totals in nanoseconds (the kernel counts microseconds), averages in
/// percent.
fn psi_to_cri(p: Option<berth_cgroup::PsiStats>) -> Option<cri::PsiStats> {
    let data = |d: berth_cgroup::PsiData| cri::PsiData {
        total: d.total_us.saturating_mul(1000),
        avg10: f64::from(d.avg10_centi) / 100.0,
        avg60: f64::from(d.avg60_centi) / 100.0,
        avg300: f64::from(d.avg300_centi) / 100.0,
    };
    p.map(|p| cri::PsiStats {
        full: Some(data(p.full)),
        some: Some(data(p.some)),
    })
}

fn cpu_to_cri(ts: i64, cpu: &CpuUsage, pressure: Option<&berth_cgroup::Pressure>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: ts,
        usage_core_nano_seconds: value(cpu.usage_core_ns),
        usage_nano_cores: cpu.usage_nano_cores.and_then(value),
        psi: psi_to_cri(pressure.and_then(|p| p.cpu)),
    }
}

fn io_to_cri(ts: i64, pressure: Option<&berth_cgroup::Pressure>) -> Option<cri::IoUsage> {
    let psi = psi_to_cri(pressure.and_then(|p| p.io))?;
    Some(cri::IoUsage {
        timestamp: ts,
        psi: Some(psi),
    })
}

fn memory_to_cri(
    ts: i64,
    m: &berth_cgroup::MemoryStats,
    pressure: Option<&berth_cgroup::Pressure>,
) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: ts,
        working_set_bytes: value(m.working_set_bytes),
        available_bytes: m.available_bytes().and_then(value),
        usage_bytes: value(m.usage_bytes),
        rss_bytes: value(m.rss_bytes),
        page_faults: value(m.page_faults),
        major_page_faults: value(m.major_page_faults),
        psi: psi_to_cri(pressure.and_then(|p| p.memory)),
    }
}

pub(crate) fn container_to_cri(u: &ContainerUsage) -> cri::ContainerStats {
    let r = &u.record;
    let ts = u.timestamp_ns;
    cri::ContainerStats {
        attributes: Some(cri::ContainerAttributes {
            id: r.id.clone(),
            metadata: Some(cri::ContainerMetadata {
                name: r.config.name.clone(),
                attempt: r.config.attempt,
            }),
            labels: r.config.labels.clone().into_iter().collect(),
            annotations: r.config.annotations.clone().into_iter().collect(),
        }),
        cpu: u
            .cpu
            .as_ref()
            .map(|c| cpu_to_cri(ts, c, u.pressure.as_ref())),
        memory: u
            .memory
            .as_ref()
            .map(|m| memory_to_cri(ts, m, u.pressure.as_ref())),
        writable_layer: u.writable_layer.as_ref().map(|fs| cri::FilesystemUsage {
            timestamp: ts,
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: fs.mountpoint.display().to_string(),
            }),
            used_bytes: value(fs.used_bytes),
            inodes_used: value(fs.inodes_used),
        }),
        swap: u.memory.as_ref().map(|m| cri::SwapUsage {
            timestamp: ts,
            swap_available_bytes: match (m.swap_limit_bytes, m.swap_usage_bytes) {
                (Some(limit), Some(used)) => value(limit.saturating_sub(used)),
                _ => None,
            },
            swap_usage_bytes: value(m.swap_usage_bytes.unwrap_or(0)),
        }),
        io: io_to_cri(ts, u.pressure.as_ref()),
    }
}

fn interface_to_cri(i: &InterfaceUsage) -> cri::NetworkInterfaceUsage {
    cri::NetworkInterfaceUsage {
        name: i.name.clone(),
        rx_bytes: value(i.rx_bytes),
        rx_errors: value(i.rx_errors),
        tx_bytes: value(i.tx_bytes),
        tx_errors: value(i.tx_errors),
    }
}

pub(crate) fn pod_to_cri(u: &PodUsage) -> cri::PodSandboxStats {
    let r = &u.record;
    let ts = u.timestamp_ns;
    cri::PodSandboxStats {
        attributes: Some(cri::PodSandboxAttributes {
            id: r.id.clone(),
            metadata: Some(cri::PodSandboxMetadata {
                name: r.metadata.name.clone(),
                uid: r.metadata.uid.clone(),
                namespace: r.metadata.namespace.clone(),
                attempt: r.metadata.attempt,
            }),
            labels: r.labels.clone().into_iter().collect(),
            annotations: r.annotations.clone().into_iter().collect(),
        }),
        linux: Some(cri::LinuxPodSandboxStats {
            cpu: u
                .cpu
                .as_ref()
                .map(|c| cpu_to_cri(ts, c, u.pressure.as_ref())),
            memory: u
                .memory
                .as_ref()
                .map(|m| memory_to_cri(ts, m, u.pressure.as_ref())),
            network: u.network.as_ref().map(|n| cri::NetworkUsage {
                timestamp: ts,
                default_interface: n.default.as_ref().map(interface_to_cri),
                interfaces: n.interfaces.iter().map(interface_to_cri).collect(),
            }),
            process: u.processes.map(|n| cri::ProcessUsage {
                timestamp: ts,
                process_count: value(n),
            }),
            containers: u.containers.iter().map(container_to_cri).collect(),
            io: io_to_cri(ts, u.pressure.as_ref()),
        }),
        windows: None,
    }
}
