//! `berth stats`: containers' CPU, memory and writable-layer usage, as `docker stats` shows it.

use std::time::Duration;

use berth_cri_api::v1 as cri;
use clap::Args;

use crate::containers::{self, Runtime};

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Keep refreshing the table every interval, until interrupted.
    #[arg(long, short = 'w')]
    pub watch: bool,
    /// Refresh interval for --watch, in seconds.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub interval: f64,
    /// Containers (IDs, unique ID prefixes or names); none: every container.
    pub ids: Vec<String>,
}

/// Bytes in binary units, as `docker stats` prints memory.
fn binary_size(bytes: u64) -> String {
    match crate::table::scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB"]) {
        None => format!("{bytes}B"),
        Some((value, unit)) => format!("{value:.2}{unit}"),
    }
}

fn stats_row(s: &cri::ContainerStats) -> [String; 7] {
    let attributes = s.attributes.clone().unwrap_or_default();
    let cpu = s
        .cpu
        .as_ref()
        .and_then(|c| c.usage_nano_cores.as_ref())
        .map_or("-".to_string(), |n| {
            format!("{:.2}%", n.value as f64 / 10_000_000.0)
        });
    let memory = s.memory.as_ref();
    let working_set = memory
        .and_then(|m| m.working_set_bytes.as_ref())
        .map(|b| b.value);
    let mem = working_set.map_or("-".to_string(), binary_size);
    // CRI has no limit field: available = limit − working set.
    let limit = match (working_set, memory.and_then(|m| m.available_bytes.as_ref())) {
        (Some(ws), Some(available)) => binary_size(ws + available.value),
        (Some(_), None) => "unlimited".to_string(),
        _ => "-".to_string(),
    };
    let layer = s.writable_layer.as_ref();
    let disk = layer
        .and_then(|l| l.used_bytes.as_ref())
        .map_or("-".to_string(), |b| binary_size(b.value));
    let inodes = layer
        .and_then(|l| l.inodes_used.as_ref())
        .map_or("-".to_string(), |i| i.value.to_string());
    [
        attributes.id.chars().take(13).collect(),
        attributes.metadata.map(|m| m.name).unwrap_or_default(),
        cpu,
        mem,
        limit,
        disk,
        inodes,
    ]
}

async fn sample(runtime: &mut Runtime, ids: &[String]) -> anyhow::Result<Vec<cri::ContainerStats>> {
    if ids.is_empty() {
        return Ok(runtime
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await?
            .into_inner()
            .stats);
    }
    let mut stats = Vec::new();
    for id in ids {
        stats.extend(
            runtime
                .container_stats(cri::ContainerStatsRequest {
                    container_id: id.clone(),
                })
                .await?
                .into_inner()
                .stats,
        );
    }
    Ok(stats)
}

/// berthd reports CPU as a rate since its previous sample of the container, so the first sample
/// of a container nobody has asked about has none: take a second one a moment later.
fn lacks_rate(stats: &[cri::ContainerStats]) -> bool {
    stats
        .iter()
        .any(|s| s.cpu.as_ref().is_some_and(|c| c.usage_nano_cores.is_none()))
}

pub async fn stats(runtime: &mut Runtime, args: &StatsArgs) -> anyhow::Result<()> {
    if !(args.interval.is_finite() && args.interval > 0.0) {
        anyhow::bail!("--interval must be a positive number of seconds");
    }
    let mut ids = Vec::new();
    for arg in &args.ids {
        ids.push(containers::find(runtime, arg, false).await?.id);
    }
    let mut stats = sample(runtime, &ids).await?;
    if lacks_rate(&stats) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        stats = sample(runtime, &ids).await?;
    }
    loop {
        let rows: Vec<[String; 7]> = stats.iter().map(stats_row).collect();
        let mut out = std::io::stdout().lock();
        if args.watch {
            // Clear the screen and home the cursor, as `watch` does.
            use std::io::Write;
            write!(out, "\x1b[2J\x1b[H")?;
        }
        crate::table::print(
            &mut out,
            [
                "CONTAINER",
                "NAME",
                "CPU %",
                "MEM",
                "MEM LIMIT",
                "DISK",
                "INODES",
            ],
            &rows,
        )?;
        drop(out);
        if !args.watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs_f64(args.interval)).await;
        stats = sample(runtime, &ids).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_rate_memory_limit_and_layer() {
        let s = cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: "0123456789abcdef".into(),
                metadata: Some(cri::ContainerMetadata {
                    name: "web".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
            cpu: Some(cri::CpuUsage {
                usage_nano_cores: Some(cri::UInt64Value { value: 500_000_000 }),
                ..Default::default()
            }),
            memory: Some(cri::MemoryUsage {
                working_set_bytes: Some(cri::UInt64Value { value: 64 << 20 }),
                available_bytes: Some(cri::UInt64Value { value: 192 << 20 }),
                ..Default::default()
            }),
            writable_layer: Some(cri::FilesystemUsage {
                used_bytes: Some(cri::UInt64Value { value: 4096 }),
                inodes_used: Some(cri::UInt64Value { value: 3 }),
                ..Default::default()
            }),
            swap: None,
            io: None,
        };
        assert_eq!(
            stats_row(&s),
            [
                "0123456789abc",
                "web",
                "50.00%",
                "64.00MiB",
                "256.00MiB",
                "4.00KiB",
                "3"
            ]
            .map(String::from)
        );
        assert_eq!(binary_size(1536), "1.50KiB");
        assert!(lacks_rate(&[cri::ContainerStats {
            cpu: Some(cri::CpuUsage::default()),
            ..Default::default()
        }]));
    }
}
