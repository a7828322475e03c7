//! berth-bench: run the same CRI workload against any CRI endpoint and report
//! per-operation latency (p50/p90/p99/mean/min/max) and the runtime's RSS.
//!
//! ```text
//! berth-bench --endpoint unix:///run/berth.sock --iterations 1000 version status list
//! berth-bench startup --endpoint unix:///x.sock --repeat 5 --fresh-dir /d/root -- berthd ...
//! berth-bench compare --left berth.json --right containerd.json
//! berth-bench wait --endpoint unix:///x.sock --timeout 30
//! ```

mod cleanup;
mod client;
mod report;
mod rss;
// kill(2) of the runtime under test.
#[allow(unsafe_code)]
mod startup;
mod stats;
mod workloads;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use berth_cri_api::v1::VersionRequest;
use clap::{Args, Parser, Subcommand};

use crate::client::Clients;
use crate::report::{BenchReport, RssSelection, RuntimeInfo, StartupReport};
use crate::rss::Selector;
use crate::workloads::runner::{self, RunParams};
use crate::workloads::{WorkloadKind, WorkloadOpts};

#[derive(Parser, Debug)]
#[command(
    name = "berth-bench",
    version,
    about = "Benchmark driver for CRI runtimes (Berth, containerd, ...)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Threads of the driver's own async runtime. 1 (default) runs every
    /// client task on one thread, which gives the lowest and most stable
    /// per-call latency; raise it when high --concurrency saturates the client.
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    client_threads: u16,
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run workloads against an endpoint (the default when no subcommand is given).
    Run(RunArgs),
    /// Start a daemon repeatedly; time exec -> first successful Version and idle RSS.
    Startup(StartupArgs),
    /// Print a side-by-side table from two `--json` reports.
    Compare(CompareArgs),
    /// Wait until an endpoint answers Version (readiness probe for scripts).
    Wait(WaitArgs),
    /// Stop and remove every container and pod sandbox of a runtime through
    /// the CRI (so network teardown runs). Only for bench-private runtimes!
    Cleanup(cleanup::CleanupArgs),
    /// List the available workloads.
    Workloads,
}

#[derive(Args, Debug, Clone)]
struct RssArgs {
    /// Measure the RSS of this pid (repeatable).
    #[arg(long = "pid", value_name = "PID")]
    pids: Vec<u32>,
    /// Measure the RSS of processes whose /proc/PID/comm is NAME (repeatable;
    /// names longer than 15 bytes match the kernel's truncated comm).
    #[arg(long = "process-name", value_name = "NAME")]
    process_names: Vec<String>,
    /// Only count --process-name matches whose command line contains this
    /// string (e.g. the daemon's socket path).
    #[arg(long, value_name = "SUBSTR")]
    match_cmdline: Option<String>,
    /// Include all descendants of the selected processes.
    #[arg(long)]
    with_children: bool,
}

impl RssArgs {
    fn selector(&self) -> Selector {
        Selector {
            pids: self.pids.clone(),
            names: self.process_names.clone(),
            cmdline_filter: self.match_cmdline.clone(),
            with_children: self.with_children,
        }
    }
}

#[derive(Args, Debug, Clone)]
struct RunArgs {
    /// Workloads to run, in order (default: version).
    #[arg(value_enum, value_name = "WORKLOAD")]
    workloads: Vec<WorkloadKind>,
    /// CRI endpoint, e.g. unix:///run/berth/berth.sock.
    #[arg(long, value_name = "unix:///PATH")]
    endpoint: Option<String>,
    /// Measured iterations per workload.
    #[arg(short = 'n', long, default_value_t = 1000)]
    iterations: u64,
    /// Unmeasured warm-up iterations per workload.
    #[arg(long, default_value_t = 50)]
    warmup: u64,
    /// Concurrent tasks sharing the channel.
    #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
    /// Name for this runtime in the output (default: runtime_name from Version).
    #[arg(long)]
    label: Option<String>,
    /// Per-call timeout in seconds (a timed-out call counts as an error).
    #[arg(long, default_value_t = 30.0)]
    call_timeout: f64,
    /// Connection timeout in seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    #[command(flatten)]
    rss: RssArgs,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "PATH")]
    json_file: Option<PathBuf>,
    /// Image for pull-cold and pull-warm.
    #[arg(long, default_value_t = WorkloadOpts::default().image)]
    image: String,
    /// Repository of image-queries' images (`<repo>:img-<i>`, hack/bench/many-images.sh).
    #[arg(long, default_value_t = WorkloadOpts::default().many_repo)]
    many_repo: String,
    /// How many images image-queries pulls before it measures.
    #[arg(long, default_value_t = WorkloadOpts::default().many_count)]
    many_count: usize,
    /// Image of the container workloads' containers (needs sh, sleep).
    #[arg(long, default_value_t = WorkloadOpts::default().container_image)]
    container_image: String,
    /// pod-memory: pods (one running container each) started before measuring.
    #[arg(long, default_value_t = WorkloadOpts::default().memory_pods)]
    memory_pods: usize,
    /// pod-memory: containers of the one pod measured on its own (0 skips it).
    #[arg(long, default_value_t = WorkloadOpts::default().memory_containers)]
    memory_containers: usize,
    /// pod-memory: idle time between starting the pods and measuring, in ms.
    #[arg(long, default_value_t = 1000)]
    memory_settle_ms: u64,
    /// pod-memory: comm of the runtime's per-pod helper processes (repeatable; default by
    /// runtime name: berth-monitor, berth-init / containerd-shim-runc-v2, pause). They are
    /// looked for below --pid and below helpers whose command line has --match-cmdline.
    #[arg(long = "pod-process", value_name = "NAME")]
    pod_processes: Vec<String>,
    /// port-forward-throughput: image of the pod's HTTP server (GET /bytes/N on port 8080).
    #[arg(long, default_value_t = WorkloadOpts::default().httpd_image)]
    httpd_image: String,
    /// port-forward-throughput: bytes per transfer (decimal: 100000000 is 100 MB).
    #[arg(long, default_value_t = WorkloadOpts::default().forward_bytes, value_parser = clap::value_parser!(u64).range(1..))]
    forward_bytes: u64,
    /// stats: running-container counts to measure at (comma-separated), grown in ascending order.
    #[arg(long, value_delimiter = ',', default_values_t = WorkloadOpts::default().stats_sizes)]
    stats_sizes: Vec<usize>,
    /// stats: containers per pod.
    #[arg(long, default_value_t = WorkloadOpts::default().stats_pod_containers)]
    stats_pod_containers: usize,
    /// pod-container-burst: pods (one container each) started at once.
    #[arg(long, default_value_t = WorkloadOpts::default().burst_pods, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    burst_pods: usize,
}

#[derive(Args, Debug)]
struct StartupArgs {
    /// Endpoint the daemon serves.
    #[arg(long)]
    endpoint: String,
    /// Name for this runtime in the output.
    #[arg(long, default_value = "runtime")]
    label: String,
    /// Number of starts.
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// Directory wiped and recreated before every start (repeatable): the
    /// daemon's root/state, so each start is from an empty store.
    #[arg(long = "fresh-dir", value_name = "DIR")]
    fresh_dirs: Vec<PathBuf>,
    /// Idle time after readiness before RSS is measured, in ms.
    #[arg(long, default_value_t = 1000)]
    settle_ms: u64,
    /// Interval between readiness probes, in µs (bounds the resolution).
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
    /// Give up if not ready after this many seconds.
    #[arg(long, default_value_t = 60.0)]
    ready_timeout: f64,
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(long, default_value_t = 15.0)]
    stop_grace: f64,
    /// Append the daemon's stdout/stderr to this file (default: discard).
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Additional processes to include in the idle RSS (the daemon's own pid
    /// is always included).
    #[command(flatten)]
    rss: RssArgs,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, value_name = "PATH")]
    json_file: Option<PathBuf>,
    /// The daemon command line.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args, Debug)]
struct CompareArgs {
    /// Workload report (`--json-file`) of the left runtime (usually Berth).
    /// Repeatable: reports of separate runs (e.g. one per workload) are
    /// merged in order.
    #[arg(long, required = true)]
    left: Vec<PathBuf>,
    /// Workload report(s) of the right runtime (usually containerd).
    #[arg(long, required = true)]
    right: Vec<PathBuf>,
    /// Startup report of the left runtime.
    #[arg(long)]
    left_startup: Option<PathBuf>,
    /// Startup report of the right runtime.
    #[arg(long)]
    right_startup: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct WaitArgs {
    #[arg(long)]
    endpoint: String,
    /// Seconds to wait.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
}

fn secs(v: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(v).with_context(|| format!("invalid {what}: {v}"))
}

fn write_json<T: serde::Serialize>(value: &T, path: Option<&PathBuf>, stdout: bool) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    if let Some(p) = path {
        std::fs::write(p, format!("{text}\n"))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if stdout {
        println!("{text}");
    }
    Ok(())
}

async fn cmd_run(a: RunArgs) -> Result<bool> {
    let Some(endpoint) = a.endpoint.clone() else {
        bail!("--endpoint is required (e.g. --endpoint unix:///run/berth/berth.sock)");
    };
    let kinds = if a.workloads.is_empty() {
        vec![WorkloadKind::Version]
    } else {
        a.workloads.clone()
    };
    let channel = client::connect(&endpoint, secs(a.connect_timeout, "--connect-timeout")?).await?;
    let mut clients = Clients::new(channel);

    // Untimed: identify the runtime (and fail early on a dead endpoint).
    let runtime = match clients
        .runtime
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
    {
        Ok(v) => {
            let v = v.into_inner();
            Some(RuntimeInfo {
                runtime_name: v.runtime_name,
                runtime_version: v.runtime_version,
                runtime_api_version: v.runtime_api_version,
            })
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => None,
        Err(s) => bail!("Version on {endpoint} failed: {s}"),
    };
    let label = a
        .label
        .clone()
        .or_else(|| runtime.as_ref().map(|r| r.runtime_name.clone()))
        .unwrap_or_else(|| "runtime".into());

    let selector = a.rss.selector();
    let measure = !selector.is_empty();
    let rss_before = measure.then(|| rss::sample(&selector));

    let params = RunParams {
        iterations: a.iterations,
        warmup: a.warmup,
        concurrency: a.concurrency as usize,
        call_timeout: secs(a.call_timeout, "--call-timeout")?,
    };
    let opts = WorkloadOpts {
        image: a.image.clone(),
        many_repo: a.many_repo.clone(),
        many_count: a.many_count,
        container_image: a.container_image.clone(),
        memory_pods: a.memory_pods,
        memory_containers: a.memory_containers,
        memory_settle: Duration::from_millis(a.memory_settle_ms),
        daemon_pids: a.rss.pids.clone(),
        pod_process_names: a.pod_processes.clone(),
        cmdline_filter: a.rss.match_cmdline.clone(),
        runtime_name: runtime.as_ref().map(|r| r.runtime_name.clone()),
        httpd_image: a.httpd_image.clone(),
        forward_bytes: a.forward_bytes,
        stats_sizes: a.stats_sizes.clone(),
        stats_pod_containers: a.stats_pod_containers,
        burst_pods: a.burst_pods,
        label: label.clone(),
    };
    let mut results = Vec::new();
    for kind in kinds {
        let workload = Arc::from(kind.build(&opts));
        let mut res = runner::run(workload, &clients, &params).await?;
        if measure {
            res.rss_after = Some(rss::sample(&selector));
        }
        results.push(res);
    }
    let rss_after = measure.then(|| rss::sample(&selector));

    let report = BenchReport {
        kind: "bench".into(),
        label,
        endpoint,
        runtime,
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        rss_selection: measure.then(|| RssSelection {
            pids: a.rss.pids.clone(),
            process_names: a.rss.process_names.clone(),
            match_cmdline: a.rss.match_cmdline.clone(),
            with_children: a.rss.with_children,
        }),
        rss_before,
        rss_after,
        workloads: results,
    };
    write_json(&report, a.json_file.as_ref(), a.json)?;
    if !a.json {
        print!("{}", report::render_bench(&report));
    }
    Ok(!report.has_errors())
}

async fn cmd_startup(a: StartupArgs) -> Result<bool> {
    let params = startup::StartupParams {
        endpoint: a.endpoint.clone(),
        label: a.label.clone(),
        repeat: a.repeat,
        fresh_dirs: a.fresh_dirs.clone(),
        settle: Duration::from_millis(a.settle_ms),
        poll: Duration::from_micros(a.poll_us),
        ready_timeout: secs(a.ready_timeout, "--ready-timeout")?,
        stop_grace: secs(a.stop_grace, "--stop-grace")?,
        log_file: a.log_file.clone(),
        selector: a.rss.selector(),
        command: a.command.clone(),
    };
    // On ^C / SIGTERM the run is dropped, which SIGKILLs the daemon
    // (kill_on_drop): never leave a half-measured daemon behind.
    let report = tokio::select! {
        r = startup::run(&params) => r?,
        s = interrupted() => bail!("interrupted by {s}"),
    };
    write_json(&report, a.json_file.as_ref(), a.json)?;
    if !a.json {
        print!("{}", report::render_startup(&report));
    }
    Ok(true)
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

fn read_report<T: serde::de::DeserializeOwned>(p: &PathBuf) -> Result<T> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))
}

/// Read one or more bench reports of the same runtime and merge them.
fn read_merged(paths: &[PathBuf]) -> Result<BenchReport> {
    let reports = paths
        .iter()
        .map(read_report)
        .collect::<Result<Vec<BenchReport>>>()?;
    report::merge(reports).context("no report given")
}

fn cmd_compare(a: CompareArgs) -> Result<bool> {
    let left = read_merged(&a.left)?;
    let right = read_merged(&a.right)?;
    let ls: Option<StartupReport> = a.left_startup.as_ref().map(read_report).transpose()?;
    let rs: Option<StartupReport> = a.right_startup.as_ref().map(read_report).transpose()?;
    print!(
        "{}",
        report::render_compare(&left, &right, ls.as_ref(), rs.as_ref())
    );
    Ok(true)
}

async fn cmd_wait(a: WaitArgs) -> Result<bool> {
    let t = std::time::Instant::now();
    startup::wait_ready(
        &a.endpoint,
        secs(a.timeout, "--timeout")?,
        Duration::from_millis(20),
    )
    .await?;
    eprintln!(
        "{} ready after {:.0}ms",
        a.endpoint,
        t.elapsed().as_secs_f64() * 1000.0
    );
    Ok(true)
}

fn cmd_workloads() -> Result<bool> {
    for k in WorkloadKind::all() {
        let w = k.build(&WorkloadOpts::default());
        println!(
            "{:<14} {} [ops: {}]",
            k.cli_name(),
            k.help(),
            w.ops().join(", ")
        );
    }
    Ok(true)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let mut builder = if cli.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(cli.client_threads as usize);
        b
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth-bench: cannot start tokio runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let res = rt.block_on(async {
        match cli.cmd {
            None => cmd_run(cli.run).await,
            Some(Cmd::Run(a)) => cmd_run(a).await,
            Some(Cmd::Startup(a)) => cmd_startup(a).await,
            Some(Cmd::Compare(a)) => cmd_compare(a),
            Some(Cmd::Wait(a)) => cmd_wait(a).await,
            Some(Cmd::Cleanup(a)) => cleanup::run(a).await,
            Some(Cmd::Workloads) => cmd_workloads(),
        }
    });
    match res {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("berth-bench: some calls failed (see errors above)");
            std::process::ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
