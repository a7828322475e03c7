//! `berth exec`, `berth stats` and `berth update`: running commands in containers and their
//! resources.

use std::io::Write;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use k8s_cri::v1 as cri;
use tonic::Code;

use crate::client::Connect;
use crate::containers::{self, Runtime};
use crate::flags::{self, Cpus};

/// An UNIMPLEMENTED answer, with the issue that tracks the feature.
fn unimplemented(status: tonic::Status, issue: &str) -> anyhow::Error {
    if status.code() == Code::Unimplemented {
        anyhow::anyhow!("{} (issue {issue})", status.message())
    } else {
        status.into()
    }
}

#[derive(Debug, Clone, Args)]
pub struct ExecArgs {
    /// Attach stdin (needs the streaming Exec RPC: not supported by berth yet).
    #[arg(long, short)]
    pub interactive: bool,
    /// Allocate a terminal (needs the streaming Exec RPC: not supported by berth yet).
    #[arg(long, short)]
    pub tty: bool,
    /// The container (ID, unique ID prefix or name), then the command and its arguments.
    /// Everything after the container belongs to the command, flags too.
    #[arg(
        required = true,
        num_args = 2..,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_names = ["CONTAINER", "CMD"]
    )]
    pub container_and_command: Vec<String>,
}

/// Runs the command with ExecSync; exits with its exit code.
pub async fn exec(connect: &Connect, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    if args.interactive || args.tty {
        bail!(
            "berth exec -i/-t needs the streaming Exec RPC, which berth does not support yet \
             (issue #6); without them the command runs through ExecSync"
        );
    }
    // The command runs as long as it runs.
    let mut runtime = connect.runtime_for(None).await?;
    let [container, command @ ..] = &args.container_and_command[..] else {
        bail!("berth exec needs a container and a command");
    };
    let id = containers::find(&mut runtime, container, false).await?.id;
    let response = runtime
        .exec_sync(cri::ExecSyncRequest {
            container_id: id,
            cmd: command.to_vec(),
            timeout: 0,
        })
        .await
        .map_err(|s| unimplemented(s, "#6"))?
        .into_inner();
    std::io::stdout().write_all(&response.stdout)?;
    std::io::stderr().write_all(&response.stderr)?;
    Ok(ExitCode::from((response.exit_code & 0xff) as u8))
}

#[derive(Debug, Clone, Args)]
pub struct StatsArgs {
    /// Containers (IDs, unique ID prefixes or names); none: every container.
    pub ids: Vec<String>,
}

/// Bytes in binary units, as `docker stats` prints memory.
fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

fn stats_row(s: &cri::ContainerStats) -> [String; 6] {
    let attributes = s.attributes.clone().unwrap_or_default();
    let cpu = s
        .cpu
        .as_ref()
        .and_then(|c| c.usage_nano_cores.as_ref())
        .map_or("-".to_string(), |n| {
            format!("{:.2}", n.value as f64 / 10_000_000.0)
        });
    let memory = s
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes.as_ref())
        .map_or("-".to_string(), |b| binary_size(b.value));
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
        memory,
        disk,
        inodes,
    ]
}

pub async fn stats(runtime: &mut Runtime, args: &StatsArgs) -> anyhow::Result<()> {
    let mut stats = Vec::new();
    if args.ids.is_empty() {
        stats = runtime
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await
            .map_err(|s| unimplemented(s, "#7"))?
            .into_inner()
            .stats;
    }
    for arg in &args.ids {
        let id = containers::find(runtime, arg, false).await?.id;
        stats.extend(
            runtime
                .container_stats(cri::ContainerStatsRequest { container_id: id })
                .await
                .map_err(|s| unimplemented(s, "#7"))?
                .into_inner()
                .stats,
        );
    }
    let rows: Vec<[String; 6]> = stats.iter().map(stats_row).collect();
    crate::table::print(
        &mut std::io::stdout().lock(),
        ["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"],
        &rows,
    )?;
    Ok(())
}

#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    /// New memory limit: bytes, or 512k, 16m, 1g.
    #[arg(long, short = 'm', value_name = "SIZE", value_parser = flags::memory)]
    pub memory: Option<i64>,
    /// New CPU limit in CPUs, e.g. 0.5.
    #[arg(long, value_name = "CPUS", value_parser = flags::cpus)]
    pub cpus: Option<Cpus>,
    /// Container IDs, unique ID prefixes or names.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// The container's current resources with the flags' changes: UpdateContainerResources replaces
/// them whole, so what the flags don't name stays as it was.
fn updated(
    current: Option<cri::LinuxContainerResources>,
    args: &UpdateArgs,
) -> cri::LinuxContainerResources {
    let mut resources = current.unwrap_or_default();
    if let Some(bytes) = args.memory {
        resources.memory_limit_in_bytes = bytes;
    }
    if let Some(cpus) = args.cpus {
        resources.cpu_quota = cpus.quota;
        resources.cpu_period = cpus.period;
    }
    resources
}

pub async fn update(runtime: &mut Runtime, args: &UpdateArgs) -> anyhow::Result<()> {
    if args.memory.is_none() && args.cpus.is_none() {
        bail!("nothing to update: give --memory and/or --cpus");
    }
    let mut failed = 0;
    for arg in &args.ids {
        let result = async {
            let status = containers::find(runtime, arg, false).await?;
            let current = status.resources.and_then(|r| r.linux);
            runtime
                .update_container_resources(cri::UpdateContainerResourcesRequest {
                    container_id: status.id,
                    linux: Some(updated(current, args)),
                    ..Default::default()
                })
                .await?;
            anyhow::Ok(())
        };
        match result.await {
            Ok(()) => println!("{arg}"),
            Err(e) if args.ids.len() == 1 => return Err(e),
            Err(e) => {
                eprintln!("berth: {}", crate::client::render(&e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} containers not updated", args.ids.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_keep_what_the_flags_do_not_name() {
        let args = UpdateArgs {
            memory: Some(32 << 20),
            cpus: None,
            ids: vec!["c".into()],
        };
        let current = cri::LinuxContainerResources {
            cpu_quota: 50_000,
            cpu_period: 100_000,
            memory_limit_in_bytes: 16 << 20,
            cpuset_cpus: "0-1".into(),
            ..Default::default()
        };
        let r = updated(Some(current), &args);
        assert_eq!(r.memory_limit_in_bytes, 32 << 20);
        assert_eq!((r.cpu_quota, r.cpuset_cpus.as_str()), (50_000, "0-1"));
    }

    #[test]
    fn unimplemented_names_the_issue() {
        let e = unimplemented(
            tonic::Status::unimplemented("ExecSync is not implemented by berth 0.1 yet"),
            "#6",
        );
        assert_eq!(
            e.to_string(),
            "ExecSync is not implemented by berth 0.1 yet (issue #6)"
        );
        assert_eq!(binary_size(1536), "1.50KiB");
    }
}
