//! Workloads: what the driver does against a CRI endpoint, one module each.
//!
//! A workload implements [`Workload`]: an optional untimed `setup`, an
//! `iteration` that performs and times one or more CRI calls through the
//! [`Recorder`], and an optional untimed `teardown`. The runner in
//! [`runner`] drives warm-up and measured iterations over `concurrency`
//! tasks sharing one channel.
//!
//! Adding a workload:
//! 1. create `src/workloads/NAME.rs` with a type implementing [`Workload`];
//! 2. add `mod NAME;` below, a variant to [`WorkloadKind`] and an arm to
//!    [`WorkloadKind::build`] (and, if it needs knobs such as an image
//!    reference, a field in [`WorkloadOpts`] and a flag in `main.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::ValueEnum;
use tonic::Code;

use crate::client::Clients;
use crate::report::MemoryRow;

pub mod runner;

mod container_stats;
// kill(2) of the grandchildren a stopped workload leaves behind.
#[allow(unsafe_code)]
mod containers;
mod cycles;
mod floor;
mod images;
mod in_pod;
mod list;
mod memory;
mod pod_cgroups;
mod pods;
mod spdystream;
mod start_floor;
mod stats_population;
mod status;
mod stop_timeout;
mod streaming;
mod version;

/// A boxed, sendable future (workloads are used as `dyn Workload`).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Options shared by every workload. Workloads that create objects (pods,
/// containers) should also get a per-run unique id here to put in their names.
#[derive(Debug, Clone)]
pub struct WorkloadOpts {
    /// The image `pull-cold` and `pull-warm` pull.
    pub image: String,
    /// Repository of the images `image-queries` works on (`<repo>:img-<i>`).
    pub many_repo: String,
    /// How many of them.
    pub many_count: usize,
    /// The image of the container workloads' containers (needs `sh` and `sleep`).
    pub container_image: String,
    /// `pod-memory`: how many pods (one container each) it starts.
    pub memory_pods: usize,
    /// `pod-memory`: containers in the one pod whose runtime processes it measures separately.
    pub memory_containers: usize,
    /// `pod-memory`: idle time between starting the pods and measuring.
    pub memory_settle: Duration,
    /// `pod-memory`: the daemon's pids (for its RSS growth; also roots of the process walk).
    pub daemon_pids: Vec<u32>,
    /// `pod-memory`: `/proc/PID/comm` names of the runtime's per-pod processes (e.g.
    /// `berth-monitor`, `berth-init`; `containerd-shim-runc-v2`, `pause`). Empty: chosen by the
    /// runtime name the endpoint reports.
    pub pod_process_names: Vec<String>,
    /// `pod-memory`: per-pod processes must descend from a daemon pid or from a per-pod process
    /// whose command line contains this (e.g. containerd's socket path in a shim's `-address`).
    pub cmdline_filter: Option<String>,
    /// The runtime name the endpoint reported (Version), if any.
    pub runtime_name: Option<String>,
    /// `port-forward-throughput`: the image of the pod's HTTP server (serves `/bytes/N` on 8080).
    pub httpd_image: String,
    /// `port-forward-throughput`: bytes per transfer.
    pub forward_bytes: u64,
    /// `stats`: the running-container counts it measures at, growing (ascending).
    pub stats_sizes: Vec<usize>,
    /// `stats`: containers per pod.
    pub stats_pod_containers: usize,
    /// `pod-container-burst`: pods (one container each) started at once.
    pub burst_pods: usize,
    /// Name of the runtime in progress messages (the report label).
    pub label: String,
}

impl Default for WorkloadOpts {
    fn default() -> Self {
        WorkloadOpts {
            image: "127.0.0.1:5000/berth-test/big:latest".into(),
            many_repo: "127.0.0.1:5000/berth-bench/many".into(),
            many_count: 200,
            container_image: "127.0.0.1:5000/berth-test/busybox:latest".into(),
            memory_pods: 10,
            memory_containers: 5,
            memory_settle: Duration::from_millis(1000),
            daemon_pids: Vec::new(),
            pod_process_names: Vec::new(),
            cmdline_filter: None,
            runtime_name: None,
            httpd_image: "127.0.0.1:5000/berth-test/httpd:latest".into(),
            forward_bytes: 100_000_000,
            stats_sizes: vec![10, 100, 300],
            stats_pod_containers: 10,
            burst_pods: 100,
            label: "runtime".into(),
        }
    }
}

/// One benchmark workload.
pub trait Workload: Send + Sync + 'static {
    /// Name as used on the command line and in reports.
    fn name(&self) -> &'static str;

    /// The operations this workload times, in report order. Operations that
    /// never produced a sample are still reported (as unsupported/failed).
    fn ops(&self) -> &'static [&'static str];

    /// Untimed preparation before warm-up (e.g. pre-pull an image for a warm
    /// pull, remove it for a cold one).
    fn setup<'a>(&'a self, _clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// One iteration: perform the timed calls through `rec`. `iter` is a
    /// unique index (warm-up iterations come first) for naming objects.
    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()>;

    /// Untimed cleanup after the measured iterations. The runner calls it after a failed setup
    /// and after failed iterations too: it must remove whatever the workload created.
    fn teardown<'a>(&'a self, _clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Memory figures the workload measured (e.g. `pod-memory`), for the memory table.
    fn memory(&self) -> Vec<MemoryRow> {
        Vec::new()
    }

    /// Operations that each move a known number of bytes (op, bytes): the runner turns their
    /// times into the throughput table (MB/s at the median, fastest and slowest sample).
    fn transfers(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// How many stages the workload is measured in (e.g. growing populations). For each stage
    /// the runner calls [`Workload::enter_stage`] (untimed), then runs the warm-up and measured
    /// iterations; setup and teardown run once around all stages.
    fn stages(&self) -> usize {
        1
    }

    /// Untimed preparation of stage `stage` (0-based), after the previous stage's iterations.
    /// On an error the runner measures no further stages (the error is reported, the figures of
    /// the earlier stages are kept) and tears down.
    fn enter_stage<'a>(
        &'a self,
        _clients: &'a mut Clients,
        _stage: usize,
    ) -> BoxFut<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Operations measured with a known number of items present: the runner turns their
    /// latencies into the cost-per-item table (p50 / N and the growth per added item).
    fn scaling(&self) -> Vec<ScalingOp> {
        Vec::new()
    }

    /// How many iterations run at a time, overriding `--concurrency` (e.g. `cycles-par4`).
    fn concurrency(&self) -> Option<usize> {
        None
    }

    /// An operation whose successful samples are the units of the rate table: units per second of
    /// the measured phase's wall clock (e.g. pod+container cycles per second).
    fn rate(&self) -> Option<RateOp> {
        None
    }
}

/// The operation counted by the rate table and what one of its samples is, plural (`cycles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateOp {
    pub op: &'static str,
    pub unit: &'static str,
}

/// An operation timed with `n` items present, one point of the series `series` (e.g.
/// `ListContainerStats` at n = 10, 100, 300 running containers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalingOp {
    pub op: &'static str,
    pub series: &'static str,
    pub n: u64,
    /// What is counted, singular (`container`).
    pub item: &'static str,
}

/// The registry of workloads the driver knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum WorkloadKind {
    /// RuntimeService.Version, N times.
    Version,
    /// RuntimeService.Status (verbose=false), N times.
    Status,
    /// ListPodSandbox + ListContainers + ListImages, each N times.
    List,
    /// PullImage of an absent image (removed, untimed, before each pull).
    PullCold,
    /// PullImage of an image whose layers are all present.
    PullWarm,
    /// ImageStatus by tag + ListImages with --many-count images present.
    ImageQueries,
    /// RunPodSandbox + StopPodSandbox + RemovePodSandbox of one pod (no containers).
    Runp,
    /// 50 RunPodSandbox at once, timed until the last pod is ready.
    RunpBurst,
    /// In one pod: CreateContainer, StartContainer, StopContainer (timeout 10, the process exits
    /// on SIGTERM), RemoveContainer.
    Container,
    /// `container` with the RuntimeDefault seccomp profile on every container: what the
    /// filter adds to CreateContainer and StartContainer (compare with `container` in one run).
    ContainerSeccomp,
    /// From nothing: RunPodSandbox + CreateContainer + StartContainer until RUNNING, then
    /// StopPodSandbox + RemovePodSandbox.
    PodContainer,
    /// Memory of the runtime's per-pod processes with --memory-pods running pods (and of one
    /// pod with --memory-containers containers); the daemon's RSS growth per pod.
    PodMemory,
    /// In one running busybox container: ExecSync of `true` (timeout 10 s).
    ExecSync,
    /// In one running busybox container: Exec of `true` + connect + SPDY/3.1 upgrade (v4) +
    /// streams + Status, as one operation and by phase.
    ExecSession,
    /// PortForward over SPDY to an httpd in a pod: time and MB/s of one --forward-bytes GET.
    PortForwardThroughput,
    /// ListContainerStats (no filter) with --stats-sizes running containers (10 per pod), grown
    /// in stages; ContainerStats and ListPodSandboxStats at 100 containers.
    Stats,
    /// `container` (each container its pod's only one) plus a bare `runc run --detach` of a copy
    /// of the same bundle (the OCI runtime's floor for StartContainer; Berth only).
    ContainerFloor,
    /// `container-floor` in a pod that keeps another container running: a pod's later container.
    ContainerLater,
    /// Create, start, StopContainer (timeout 2 s) and remove a container that ignores SIGTERM.
    ContainerStopTimeout,
    /// Pod+container cycles, 4 at a time: RunPodSandbox, CreateContainer, StartContainer (until
    /// RUNNING), StopPodSandbox, RemovePodSandbox; latency and cycles per second.
    #[value(name = "cycles-par4")]
    CyclesPar4,
    /// `cycles-par4` with 16 cycles at a time.
    #[value(name = "cycles-par16")]
    CyclesPar16,
    /// --burst-pods (100) pods with one container each started at once, timed until the last
    /// container is RUNNING (then all removed, untimed).
    PodContainerBurst,
}

impl WorkloadKind {
    pub fn build(self, opts: &WorkloadOpts) -> Box<dyn Workload> {
        match self {
            WorkloadKind::Version => Box::new(version::Version),
            WorkloadKind::Status => Box::new(status::Status),
            WorkloadKind::List => Box::new(list::List),
            WorkloadKind::PullCold => Box::new(images::Pull::cold(opts)),
            WorkloadKind::PullWarm => Box::new(images::Pull::warm(opts)),
            WorkloadKind::ImageQueries => Box::new(images::ImageQueries::new(opts)),
            WorkloadKind::Runp => Box::new(pods::RunPod::new()),
            WorkloadKind::RunpBurst => Box::new(pods::RunPodBurst::new()),
            WorkloadKind::Container => Box::new(containers::ContainerLifecycle::new(opts, false)),
            WorkloadKind::ContainerSeccomp => {
                Box::new(containers::ContainerLifecycle::new(opts, true))
            }
            WorkloadKind::PodContainer => Box::new(containers::PodContainer::new(opts)),
            WorkloadKind::PodMemory => Box::new(memory::PodMemory::new(opts)),
            WorkloadKind::ExecSync => Box::new(streaming::ExecSync::new(opts)),
            WorkloadKind::ExecSession => Box::new(streaming::ExecSessionSetup::new(opts)),
            WorkloadKind::PortForwardThroughput => {
                Box::new(streaming::PortForwardThroughput::new(opts))
            }
            WorkloadKind::Stats => Box::new(container_stats::Stats::new(opts)),
            WorkloadKind::ContainerFloor => Box::new(start_floor::StartFloor::new(opts, false)),
            WorkloadKind::ContainerLater => Box::new(start_floor::StartFloor::new(opts, true)),
            WorkloadKind::ContainerStopTimeout => Box::new(stop_timeout::StopTimeout::new(opts)),
            WorkloadKind::CyclesPar4 => Box::new(cycles::Cycles::new(opts, 4)),
            WorkloadKind::CyclesPar16 => Box::new(cycles::Cycles::new(opts, 16)),
            WorkloadKind::PodContainerBurst => Box::new(cycles::PodContainerBurst::new(opts)),
        }
    }

    pub fn all() -> &'static [WorkloadKind] {
        WorkloadKind::value_variants()
    }

    pub fn cli_name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    pub fn help(self) -> String {
        self.to_possible_value()
            .and_then(|v| v.get_help().map(|h| h.to_string()))
            .unwrap_or_default()
    }
}

/// Samples and outcome counts of one operation.
#[derive(Debug, Default, Clone)]
pub struct OpRecord {
    pub samples: Vec<Duration>,
    /// Calls answered UNIMPLEMENTED.
    pub unsupported: u64,
    /// Calls that failed otherwise (including timeouts).
    pub errors: u64,
    pub first_error: Option<String>,
}

impl OpRecord {
    fn merge(&mut self, other: OpRecord) {
        self.samples.extend(other.samples);
        self.unsupported += other.unsupported;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Times calls and records their outcome per operation name.
#[derive(Debug)]
pub struct Recorder {
    call_timeout: Duration,
    ops: BTreeMap<&'static str, OpRecord>,
    last_unsupported: bool,
}

impl Recorder {
    pub fn new(call_timeout: Duration) -> Recorder {
        Recorder {
            call_timeout,
            ops: BTreeMap::new(),
            last_unsupported: false,
        }
    }

    /// Time one gRPC call. Returns the response message on success; `None`
    /// when the call was unsupported (UNIMPLEMENTED), failed or timed out
    /// (each counted under `op`). The clock covers exactly the awaited call:
    /// request encoding, the round trip and response decoding.
    pub async fn call<T, F>(&mut self, op: &'static str, fut: F) -> Option<T>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = Instant::now();
        let res = tokio::time::timeout(self.call_timeout, fut).await;
        let elapsed = start.elapsed();
        self.last_unsupported = matches!(&res, Ok(Err(s)) if s.code() == Code::Unimplemented);
        let rec = self.ops.entry(op).or_default();
        match res {
            Ok(Ok(resp)) => {
                rec.samples.push(elapsed);
                Some(resp.into_inner())
            }
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                rec.unsupported += 1;
                None
            }
            Ok(Err(status)) => {
                rec.errors += 1;
                if rec.first_error.is_none() {
                    rec.first_error = Some(format!("{:?}: {}", status.code(), status.message()));
                }
                None
            }
            Err(_) => {
                rec.errors += 1;
                if rec.first_error.is_none() {
                    rec.first_error = Some(format!("timed out after {:?}", self.call_timeout));
                }
                None
            }
        }
    }

    /// Record a sample measured by the workload itself (e.g. a sequence of calls timed as one
    /// operation, each call also recorded under its own name).
    pub fn sample(&mut self, op: &'static str, elapsed: Duration) {
        self.ops.entry(op).or_default().samples.push(elapsed);
    }

    /// Whether the last [`Recorder::call`] was answered UNIMPLEMENTED.
    pub fn last_was_unsupported(&self) -> bool {
        self.last_unsupported
    }

    /// Count `op` as unsupported without calling anything (e.g. the later steps of an iteration
    /// whose first call was unsupported).
    pub fn unsupported(&mut self, op: &'static str) {
        self.ops.entry(op).or_default().unsupported += 1;
    }

    /// After a failed [`Recorder::call`]: when that call was unsupported, count the operations
    /// that depended on it as unsupported too (a failure is counted once, under the failed call).
    pub fn skipped(&mut self, ops: &[&'static str]) {
        if self.last_unsupported {
            for &op in ops {
                self.unsupported(op);
            }
        }
    }

    /// After a failed [`Recorder::call`] within a sequence timed as `op`: `op` is unsupported if
    /// that call was, else failed with `msg`.
    pub fn sequence_failed(&mut self, op: &'static str, msg: impl Into<String>) {
        if self.last_unsupported {
            self.unsupported(op);
        } else {
            self.fail(op, msg);
        }
    }

    /// Record a failure that is not a timed call (e.g. a response that does
    /// not satisfy the workload's expectations).
    pub fn fail(&mut self, op: &'static str, msg: impl Into<String>) {
        let rec = self.ops.entry(op).or_default();
        rec.errors += 1;
        if rec.first_error.is_none() {
            rec.first_error = Some(msg.into());
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (op, rec) in other.ops {
            self.ops.entry(op).or_default().merge(rec);
        }
    }

    pub fn into_ops(self) -> BTreeMap<&'static str, OpRecord> {
        self.ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn recorder_classifies_outcomes() {
        let mut rec = Recorder::new(Duration::from_millis(50));
        let ok = rec
            .call("Op", async { Ok(tonic::Response::new(5u32)) })
            .await;
        assert_eq!(ok, Some(5));
        let un: Option<u32> = rec
            .call("Op", async { Err(tonic::Status::unimplemented("nope")) })
            .await;
        assert_eq!(un, None);
        let err: Option<u32> = rec
            .call("Op", async { Err(tonic::Status::internal("boom")) })
            .await;
        assert_eq!(err, None);
        let slow: Option<u32> = rec
            .call("Op", async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(tonic::Response::new(1u32))
            })
            .await;
        assert_eq!(slow, None);
        rec.fail("Other", "bad response");

        let ops = rec.into_ops();
        let op = &ops["Op"];
        assert_eq!(op.samples.len(), 1);
        assert_eq!(op.unsupported, 1);
        assert_eq!(op.errors, 2);
        assert_eq!(op.first_error.as_deref(), Some("Internal: boom"));
        assert_eq!(ops["Other"].errors, 1);
    }

    #[test]
    fn registry_names_are_unique_and_buildable() {
        let opts = WorkloadOpts::default();
        let mut names: Vec<&str> = WorkloadKind::all()
            .iter()
            .map(|k| k.build(&opts).name())
            .collect();
        for k in WorkloadKind::all() {
            assert_eq!(k.cli_name(), k.build(&opts).name());
            assert!(!k.build(&opts).ops().is_empty());
        }
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
