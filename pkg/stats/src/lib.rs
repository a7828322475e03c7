//! Container and pod usage for CRI's stats and metrics RPCs.
//!
//! Everything is read from the kernel at call time: cgroups through `berth-cgroup` (youki's
//! libcgroups on v1, v2 and hybrid hosts), network counters inside the pod's network namespace,
//! writable layers by walking their upper dirs. The only state kept is the previous CPU sample
//! of each cgroup, for `usage_nano_cores`.
//!
//! All methods block (they read files): call them from `spawn_blocking` in async code.

mod catalogue;
mod net;
mod rates;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use berth_cgroup::{CgroupStats, Cgroups, MemoryStats, PodCgroup};
use berth_container::{ContainerFilter, ContainerRecord, ContainerService, ContainerState};
use berth_sandbox::{SandboxFilter, SandboxRecord, SandboxService, SandboxState};

pub use catalogue::{
    MetricDescriptor, MetricKind, MetricSample, PodMetrics, descriptors, pod_metrics,
};
pub use net::{DEFAULT_INTERFACE, InterfaceUsage, NetworkUsage};

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("pod sandbox {0} not found")]
    SandboxNotFound(String),
    /// Boxed, as their own errors are large and every `Result` here would carry them.
    #[error(transparent)]
    Container(Box<berth_container::ContainerError>),
    #[error(transparent)]
    Sandbox(Box<berth_sandbox::SandboxError>),
    /// The pod's network namespace could not be entered to read its counters.
    #[error("network counters: entering {netns}: {source}")]
    EnterNetns {
        netns: PathBuf,
        #[source]
        source: berth_namespace::NamespaceError,
    },
    #[error("network counters: reading /proc/net/dev in {netns}: {source}")]
    ReadNetDev {
        netns: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("network counters: bad /proc/net/dev line {line:?}: {source}")]
    NetDevNumber {
        line: String,
        #[source]
        source: std::num::ParseIntError,
    },
    #[error("network counters: bad /proc/net/dev line {line:?}: {fields} fields")]
    NetDevFields { line: String, fields: usize },
}

/// CPU usage: the cgroup's cumulative counters and the rate since the previous sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuUsage {
    pub usage_core_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// Nanocores over the interval since the previous sample; `None` on the first.
    pub usage_nano_cores: Option<u64>,
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// A writable layer's footprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsUsage {
    /// The filesystem it lives on, named as ImageFsInfo names it (kubelet matches the two).
    pub mountpoint: PathBuf,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

#[derive(Debug, Clone)]
pub struct ContainerUsage {
    pub record: ContainerRecord,
    /// Unix nanoseconds of the reading.
    pub timestamp_ns: i64,
    /// Only while the container runs (its cgroup exists only then).
    pub cpu: Option<CpuUsage>,
    pub memory: Option<MemoryStats>,
    pub processes: Option<u64>,
    pub writable_layer: Option<FsUsage>,
    /// Pressure stall information of the container's cgroup.
    pub pressure: Option<berth_cgroup::Pressure>,
}

#[derive(Debug, Clone)]
pub struct PodUsage {
    pub record: SandboxRecord,
    pub timestamp_ns: i64,
    pub cpu: Option<CpuUsage>,
    pub memory: Option<MemoryStats>,
    /// `None` for host-network pods and pods that are not ready.
    pub network: Option<NetworkUsage>,
    /// Processes of the pod's containers (the pod's monitor not counted).
    pub processes: Option<u64>,
    pub containers: Vec<ContainerUsage>,
    /// Pressure stall information of the pod's cgroup.
    pub pressure: Option<berth_cgroup::Pressure>,
}

pub struct StatsService {
    containers: ContainerService,
    sandboxes: SandboxService,
    cgroups: Cgroups,
    mountpoint: PathBuf,
    rates: rates::CpuRates,
}

impl StatsService {
    /// `mountpoint` is the directory ImageFsInfo reports, on whose filesystem the writable
    /// layers live.
    pub fn new(
        containers: ContainerService,
        sandboxes: SandboxService,
        cgroups: Cgroups,
        mountpoint: PathBuf,
    ) -> StatsService {
        StatsService {
            containers,
            sandboxes,
            cgroups,
            mountpoint,
            rates: rates::CpuRates::default(),
        }
    }

    /// ContainerStats. NOT_FOUND for an unknown container.
    pub fn container(&self, id: &str) -> Result<ContainerUsage, StatsError> {
        let record = self.containers.get(id).map_err(|e| match e {
            berth_container::ContainerError::NotFound(_) => {
                StatsError::ContainerNotFound(id.to_string())
            }
            other => StatsError::Container(Box::new(other)),
        })?;
        let cgroup = self
            .sandboxes
            .get(&record.sandbox_id)
            .ok()
            .and_then(|s| s.cgroup);
        Ok(self.container_usage(record, cgroup.as_ref()))
    }

    /// ListContainerStats: every container the filter matches.
    pub fn containers(&self, filter: &ContainerFilter) -> Vec<ContainerUsage> {
        let records = self.containers.list(filter);
        let cgroups = self.pod_cgroups();
        let usage: Vec<ContainerUsage> = records
            .into_iter()
            .map(|r| {
                let cgroup = cgroups.get(&r.sandbox_id).cloned().flatten();
                self.container_usage(r, cgroup.as_ref())
            })
            .collect();
        // Unfiltered, the answer holds every container and `cgroups` every pod: whatever else
        // has a CPU sample is gone.
        if filter.list.id.is_none() && filter.sandbox_id.is_none() && filter.list.labels.is_empty()
        {
            let containers: HashSet<&str> = usage.iter().map(|u| u.record.id.as_str()).collect();
            self.rates.retain(|k| match k.strip_prefix("pod/") {
                Some(pod) => cgroups.contains_key(pod),
                None => containers.contains(k),
            });
        }
        usage
    }

    /// PodSandboxStats. NOT_FOUND for an unknown pod.
    pub fn pod(&self, id: &str) -> Result<PodUsage, StatsError> {
        let record = self.sandboxes.get(id).map_err(|e| match e {
            berth_sandbox::SandboxError::NotFound(_) => StatsError::SandboxNotFound(id.to_string()),
            other => StatsError::Sandbox(Box::new(other)),
        })?;
        Ok(self.pod_usage(record))
    }

    /// ListPodSandboxStats: every pod the filter matches.
    pub fn pods(&self, filter: &SandboxFilter) -> Vec<PodUsage> {
        self.sandboxes
            .list(filter)
            .into_iter()
            .map(|r| self.pod_usage(r))
            .collect()
    }

    fn pod_cgroups(&self) -> HashMap<String, Option<PodCgroup>> {
        self.sandboxes
            .list(&SandboxFilter::default())
            .into_iter()
            .map(|s| (s.id, s.cgroup))
            .collect()
    }

    fn pod_usage(&self, record: SandboxRecord) -> PodUsage {
        let timestamp_ns = berth_clock::now_ns();
        let ready = record.state() == SandboxState::Ready;
        let filter = ContainerFilter {
            sandbox_id: Some(record.id.clone()),
            ..Default::default()
        };
        let containers: Vec<ContainerUsage> = self
            .containers
            .list(&filter)
            .into_iter()
            .filter(|c| c.sandbox_id == record.id)
            .map(|c| self.container_usage(c, record.cgroup.as_ref()))
            .collect();
        let stats = match (&record.cgroup, ready) {
            (Some(cgroup), true) => self.cgroups.pod_stats(cgroup).ok(),
            _ => None,
        };
        let network = match (&record.netns, ready) {
            (Some(netns), true) => match net::read(netns) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::debug!(sandbox_id = %record.id, error = %e, "pod network counters");
                    None
                }
            },
            _ => None,
        };
        let processes = containers
            .iter()
            .filter_map(|c| c.processes)
            .reduce(|a, b| a + b);
        let key = format!("pod/{}", record.id);
        let (cpu, memory, pressure) = match stats {
            Some(s) => (self.cpu_usage(&key, timestamp_ns, &s), s.memory, s.pressure),
            None => (None, None, None),
        };
        PodUsage {
            record,
            timestamp_ns,
            cpu,
            memory,
            network,
            processes,
            containers,
            pressure,
        }
    }

    fn container_usage(
        &self,
        record: ContainerRecord,
        cgroup: Option<&PodCgroup>,
    ) -> ContainerUsage {
        let timestamp_ns = berth_clock::now_ns();
        let stats = match cgroup {
            Some(cgroup) if record.state() == ContainerState::Running => {
                match self.cgroups.container_stats(cgroup, &record.id) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        // The container may have exited between the record read and this one.
                        tracing::debug!(container_id = %record.id, error = %e, "container cgroup stats");
                        None
                    }
                }
            }
            _ => None,
        };
        let writable_layer = match berth_snapshot::dir_usage(&record.writable_layer()) {
            Ok(u) => Some(FsUsage {
                mountpoint: self.mountpoint.clone(),
                used_bytes: u.bytes,
                inodes_used: u.inodes,
            }),
            Err(e) => {
                tracing::debug!(container_id = %record.id, error = %e, "writable layer usage");
                None
            }
        };
        let (cpu, memory, processes, pressure) = match stats {
            Some(s) => (
                self.cpu_usage(&record.id, timestamp_ns, &s),
                s.memory,
                s.pids.map(|p| p.current),
                s.pressure,
            ),
            None => (None, None, None, None),
        };
        ContainerUsage {
            record,
            timestamp_ns,
            cpu,
            memory,
            processes,
            writable_layer,
            pressure,
        }
    }

    fn cpu_usage(&self, key: &str, at_ns: i64, stats: &CgroupStats) -> Option<CpuUsage> {
        let cpu = stats.cpu.as_ref()?;
        Some(CpuUsage {
            usage_core_ns: cpu.usage_ns,
            user_ns: cpu.user_ns,
            system_ns: cpu.system_ns,
            usage_nano_cores: self.rates.rate(key, at_ns, cpu.usage_ns),
            periods: cpu.periods,
            throttled_periods: cpu.throttled_periods,
            throttled_ns: cpu.throttled_ns,
        })
    }
}
