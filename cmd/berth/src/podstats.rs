//! `berth statsp` (pods' resource usage, CRI ListPodSandboxStats, as `crictl statsp`) and
//! `berth metricsp` (the runtime's per-pod metrics, CRI ListPodSandboxMetrics, as
//! `crictl metricsp`).
//!
//! `statsp -o json` prints `{"pods": [...]}`, each item: `id`, `name`, `namespace`, `uid`,
//! `cpuNanoCores`, `cpuCoreNanoSeconds`, `memoryWorkingSetBytes`, `memoryAvailableBytes`,
//! `networkRxBytes`, `networkTxBytes` (all interfaces), `processCount`, and `containers` (each
//! `id`, `name`, `cpuNanoCores`, `memoryWorkingSetBytes`); a figure the runtime does not report is
//! null. `metricsp -o json` prints `{"pods": [{"podId", "metrics", "containers": [{"id",
//! "metrics"}]}]}`, each metric `name`, `type` (`counter`/`gauge`), `labels` (names from
//! ListMetricDescriptors, to values), `value` and `timestamp` (nanoseconds, as a string).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use clap::Args;
use serde_json::{Value, json};

use crate::containers::{self, Runtime};
use crate::output::OutputArgs;

#[derive(Debug, Clone, Args)]
pub struct StatspArgs {
    /// Keep refreshing every interval, until interrupted.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Refresh interval for --watch, in seconds.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub interval: f64,
    /// Only pods with this label (KEY=VALUE), repeatable.
    #[arg(long = "label", short, value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Pods (IDs, unique ID prefixes or names); none: every pod.
    pub pods: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct MetricspArgs {
    /// Pods (IDs, unique ID prefixes or names); none: every pod the runtime reports.
    pub pods: Vec<String>,
    #[command(flatten)]
    pub output: OutputArgs,
}

fn binary_size(bytes: u64) -> String {
    match crate::table::scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"]) {
        None => format!("{bytes}B"),
        Some((value, unit)) => format!("{value:.2}{unit}"),
    }
}

fn value(v: Option<&cri::UInt64Value>) -> Option<u64> {
    v.map(|v| v.value)
}

/// Received and sent bytes over all of the pod's interfaces.
fn network(n: Option<&cri::NetworkUsage>) -> (Option<u64>, Option<u64>) {
    let Some(n) = n else { return (None, None) };
    let interfaces: Vec<&cri::NetworkInterfaceUsage> = if n.interfaces.is_empty() {
        n.default_interface.iter().collect()
    } else {
        n.interfaces.iter().collect()
    };
    let sum = |f: fn(&cri::NetworkInterfaceUsage) -> Option<u64>| {
        let values: Vec<u64> = interfaces.iter().filter_map(|i| f(i)).collect();
        (!values.is_empty()).then(|| values.iter().sum())
    };
    (
        sum(|i| value(i.rx_bytes.as_ref())),
        sum(|i| value(i.tx_bytes.as_ref())),
    )
}

pub fn pod_json(s: &cri::PodSandboxStats) -> Value {
    let attributes = s.attributes.clone().unwrap_or_default();
    let m = attributes.metadata.unwrap_or_default();
    let linux = s.linux.clone().unwrap_or_default();
    let cpu = linux.cpu.as_ref();
    let memory = linux.memory.as_ref();
    let (rx, tx) = network(linux.network.as_ref());
    let containers: Vec<Value> = linux
        .containers
        .iter()
        .map(|c| {
            let a = c.attributes.clone().unwrap_or_default();
            json!({
                "id": a.id,
                "name": a.metadata.map(|m| m.name).unwrap_or_default(),
                "cpuNanoCores": value(c.cpu.as_ref().and_then(|c| c.usage_nano_cores.as_ref())),
                "memoryWorkingSetBytes":
                    value(c.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref())),
            })
        })
        .collect();
    json!({
        "id": attributes.id,
        "name": m.name,
        "namespace": m.namespace,
        "uid": m.uid,
        "cpuNanoCores": value(cpu.and_then(|c| c.usage_nano_cores.as_ref())),
        "cpuCoreNanoSeconds": value(cpu.and_then(|c| c.usage_core_nano_seconds.as_ref())),
        "memoryWorkingSetBytes": value(memory.and_then(|m| m.working_set_bytes.as_ref())),
        "memoryAvailableBytes": value(memory.and_then(|m| m.available_bytes.as_ref())),
        "networkRxBytes": rx,
        "networkTxBytes": tx,
        "processCount": value(linux.process.as_ref().and_then(|p| p.process_count.as_ref())),
        "containers": containers,
    })
}

/// POD, NAME, NAMESPACE, CPU %, MEM, NET RX, NET TX, PROCS (`-`: not reported).
fn row(item: &Value, wide: bool) -> Vec<String> {
    let text = |key: &str| crate::output::text(&item[key]);
    let number = |key: &str| item[key].as_u64();
    let bytes = |key: &str| number(key).map_or("-".to_string(), binary_size);
    let id = text("id");
    vec![
        if wide { id } else { containers::short(&id) },
        text("name"),
        text("namespace"),
        number("cpuNanoCores").map_or("-".to_string(), |n| format!("{:.2}%", n as f64 / 1e7)),
        bytes("memoryWorkingSetBytes"),
        bytes("networkRxBytes"),
        bytes("networkTxBytes"),
        number("processCount").map_or("-".to_string(), |n| n.to_string()),
    ]
}

async fn sample(
    runtime: &mut Runtime,
    ids: &[String],
    labels: &HashMap<String, String>,
) -> anyhow::Result<Vec<cri::PodSandboxStats>> {
    let request = |id: &str| cri::ListPodSandboxStatsRequest {
        filter: Some(cri::PodSandboxStatsFilter {
            id: id.to_string(),
            label_selector: labels.clone(),
        }),
    };
    if ids.is_empty() {
        return Ok(runtime
            .list_pod_sandbox_stats(request(""))
            .await?
            .into_inner()
            .stats);
    }
    let mut stats = Vec::new();
    for id in ids {
        stats.extend(
            runtime
                .list_pod_sandbox_stats(request(id))
                .await?
                .into_inner()
                .stats,
        );
    }
    Ok(stats)
}

/// A CPU rate needs two samples: if the first has none, take another a moment later.
fn lacks_rate(stats: &[cri::PodSandboxStats]) -> bool {
    stats.iter().any(|s| {
        s.linux
            .as_ref()
            .and_then(|l| l.cpu.as_ref())
            .is_some_and(|c| c.usage_nano_cores.is_none())
    })
}

pub async fn statsp(runtime: &mut Runtime, args: &StatspArgs) -> anyhow::Result<()> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        bail!("--interval must be a positive number of seconds");
    }
    let labels = crate::pods::labels(&args.labels)?;
    let mut ids = Vec::new();
    for pod in &args.pods {
        ids.push(containers::find_pod(runtime, pod).await?.id);
    }
    let mut stats = sample(runtime, &ids, &labels).await?;
    if lacks_rate(&stats) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stats = sample(runtime, &ids, &labels).await?;
    }
    loop {
        let items: Vec<Value> = stats.iter().map(pod_json).collect();
        if args.watch && args.output.output.is_none() && args.output.format.is_none() {
            // Clear the screen and home the cursor, as `watch` does.
            print!("\x1b[2J\x1b[H");
        }
        let rows = |wide| items.iter().map(|i| row(i, wide)).collect::<Vec<_>>();
        crate::output::list(&args.output, "pods", items.clone(), |out, wide| {
            let header = [
                "POD",
                "NAME",
                "NAMESPACE",
                "CPU %",
                "MEM",
                "NET RX",
                "NET TX",
                "PROCS",
            ];
            crate::table::print_rows(out, &header, &rows(wide))
        })?;
        if !args.watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        stats = sample(runtime, &ids, &labels).await?;
    }
}

fn metric_json(m: &cri::Metric, keys: &HashMap<String, Vec<String>>) -> Value {
    let names = keys.get(&m.name);
    let labels: serde_json::Map<String, Value> = m
        .label_values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = names
                .and_then(|n| n.get(i))
                .cloned()
                .unwrap_or_else(|| format!("label{i}"));
            (key, Value::from(v.clone()))
        })
        .collect();
    json!({
        "name": m.name,
        "type": match cri::MetricType::try_from(m.metric_type) {
            Ok(cri::MetricType::Counter) => "counter",
            Ok(cri::MetricType::Gauge) => "gauge",
            Err(_) => "unknown",
        },
        "labels": labels,
        "value": value(m.value.as_ref()),
        "timestamp": crate::select::nanos(m.timestamp),
    })
}

pub fn metrics_json(pod: &cri::PodSandboxMetrics, keys: &HashMap<String, Vec<String>>) -> Value {
    let metrics = |ms: &[cri::Metric]| ms.iter().map(|m| metric_json(m, keys)).collect::<Vec<_>>();
    json!({
        "podId": pod.pod_sandbox_id,
        "metrics": metrics(&pod.metrics),
        "containers": pod.container_metrics.iter().map(|c| json!({
            "id": c.container_id,
            "metrics": metrics(&c.metrics),
        })).collect::<Vec<_>>(),
    })
}

/// One row per sample: POD, CONTAINER (empty for the pod's own), METRIC, LABELS, VALUE.
fn metric_rows(pod: &Value, wide: bool) -> Vec<Vec<String>> {
    let short = |v: &Value| {
        let id = crate::output::text(v);
        if wide { id } else { containers::short(&id) }
    };
    let mut rows = Vec::new();
    let mut add = |container: String, metrics: &Value| {
        for m in metrics.as_array().into_iter().flatten() {
            let labels: Vec<String> = m["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let v = crate::output::text(v);
                    // Full container IDs make the table unreadable: shortened unless wide.
                    let is_id = v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit());
                    format!(
                        "{k}={}",
                        if is_id && !wide {
                            containers::short(&v)
                        } else {
                            v
                        }
                    )
                })
                .collect();
            rows.push(vec![
                short(&pod["podId"]),
                container.clone(),
                crate::output::text(&m["name"]),
                labels.join(","),
                crate::output::text(&m["value"]),
            ]);
        }
    };
    add(String::new(), &pod["metrics"]);
    for c in pod["containers"].as_array().into_iter().flatten() {
        add(short(&c["id"]), &c["metrics"]);
    }
    rows
}

pub async fn metricsp(runtime: &mut Runtime, args: &MetricspArgs) -> anyhow::Result<()> {
    let unimplemented = |e: tonic::Status, rpc: &str| -> anyhow::Error {
        if e.code() == tonic::Code::Unimplemented {
            anyhow::Error::from(e).context(format!("the runtime does not implement {rpc}"))
        } else {
            e.into()
        }
    };
    let response = runtime
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .map_err(|e| unimplemented(e, "ListPodSandboxMetrics"))?
        .into_inner();
    // Label names are optional: without descriptors, labels are numbered.
    let keys: HashMap<String, Vec<String>> = runtime
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .map(|r| {
            r.into_inner()
                .descriptors
                .into_iter()
                .map(|d| (d.name, d.label_keys))
                .collect()
        })
        .unwrap_or_default();
    let mut wanted = Vec::new();
    for pod in &args.pods {
        let id = containers::find_pod(runtime, pod)
            .await
            .with_context(|| format!("pod {pod}"))?
            .id;
        wanted.push(id);
    }
    let items: Vec<Value> = response
        .pod_metrics
        .iter()
        .filter(|p| wanted.is_empty() || wanted.contains(&p.pod_sandbox_id))
        .map(|p| metrics_json(p, &keys))
        .collect();
    crate::output::list(&args.output, "pods", items.clone(), |out, wide| {
        let rows: Vec<Vec<String>> = items.iter().flat_map(|p| metric_rows(p, wide)).collect();
        crate::table::print_rows(
            out,
            &["POD", "CONTAINER", "METRIC", "LABELS", "VALUE"],
            &rows,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: u64) -> Option<cri::UInt64Value> {
        Some(cri::UInt64Value { value })
    }

    #[test]
    fn pod_stats_become_documented_json_and_rows() {
        let s = cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: "0123456789abcdef".into(),
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    namespace: "ns".into(),
                    uid: "u".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    usage_nano_cores: n(250_000_000),
                    ..Default::default()
                }),
                memory: Some(cri::MemoryUsage {
                    working_set_bytes: n(2 << 20),
                    ..Default::default()
                }),
                network: Some(cri::NetworkUsage {
                    interfaces: vec![
                        cri::NetworkInterfaceUsage {
                            name: "eth0".into(),
                            rx_bytes: n(1000),
                            tx_bytes: n(24),
                            ..Default::default()
                        },
                        cri::NetworkInterfaceUsage {
                            name: "eth1".into(),
                            rx_bytes: n(24),
                            ..Default::default()
                        },
                    ],
                    ..Default::default()
                }),
                process: Some(cri::ProcessUsage {
                    process_count: n(3),
                    ..Default::default()
                }),
                containers: vec![],
                io: None,
            }),
            windows: None,
        };
        let item = pod_json(&s);
        assert_eq!(item["networkRxBytes"], 1024);
        assert_eq!(item["networkTxBytes"], 24);
        assert_eq!(item["memoryAvailableBytes"], Value::Null);
        assert_eq!(
            row(&item, false),
            [
                "0123456789abc",
                "web",
                "ns",
                "25.00%",
                "2.00MiB",
                "1.00KiB",
                "24B",
                "3"
            ]
        );
        let bare = pod_json(&cri::PodSandboxStats::default());
        assert_eq!(row(&bare, false)[3..], ["-", "-", "-", "-", "-"]);
    }

    #[test]
    fn metrics_get_label_names_from_descriptors() {
        let pod = cri::PodSandboxMetrics {
            pod_sandbox_id: "p".into(),
            metrics: vec![cri::Metric {
                name: "container_network_receive_bytes_total".into(),
                timestamp: 5,
                metric_type: cri::MetricType::Counter as i32,
                label_values: vec!["eth0".into(), "x".into()],
                value: n(7),
            }],
            container_metrics: vec![cri::ContainerMetrics {
                container_id: "c".into(),
                metrics: vec![cri::Metric {
                    name: "container_memory_usage_bytes".into(),
                    metric_type: cri::MetricType::Gauge as i32,
                    value: n(9),
                    ..Default::default()
                }],
            }],
        };
        let keys = HashMap::from([(
            "container_network_receive_bytes_total".to_string(),
            vec!["interface".to_string()],
        )]);
        let json = metrics_json(&pod, &keys);
        assert_eq!(json["metrics"][0]["labels"]["interface"], "eth0");
        assert_eq!(json["metrics"][0]["labels"]["label1"], "x");
        assert_eq!(json["metrics"][0]["type"], "counter");
        assert_eq!(json["containers"][0]["metrics"][0]["value"], 9);
        let rows = metric_rows(&json, true);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][3], "interface=eth0,label1=x");
        assert_eq!(rows[1][..3], ["p", "c", "container_memory_usage_bytes"]);
    }
}
