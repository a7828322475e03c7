//! Pod-level resources (CRI `LinuxPodSandboxConfig.resources` and `overhead`) and their
//! translation into the OCI `LinuxResources` that libcgroups applies.

use std::collections::{BTreeMap, HashMap};

use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};
use serde::{Deserialize, Serialize};

use crate::CgroupError;

/// CFS period the kernel (and kubelet) use when none is given, in microseconds.
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;

/// Pod-level resources. `None` (or an empty collection) means "leave the kernel default".
///
/// As in CRI, a zero is treated like `None` (kubelet sends 0 for "not set"), and a negative
/// `cpu_quota`/`memory_limit` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodResources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    /// `(page size as in "2MB" or "1GB", limit in bytes)`.
    pub hugepage_limits: Vec<(String, u64)>,
    /// cgroup v2 files and values written verbatim (cgroup v2 only, like runc).
    pub unified: BTreeMap<String, String>,
}

fn nonzero_u(v: Option<u64>) -> Option<u64> {
    v.filter(|v| *v != 0)
}

fn nonzero_i(v: Option<i64>) -> Option<i64> {
    v.filter(|v| *v != 0)
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

/// Adds two limits where `None`/negative means unlimited: unlimited stays unlimited, as kubelet
/// does when it adds pod overhead to a pod without a limit.
fn add_limit(pod: Option<i64>, overhead: Option<i64>) -> Option<i64> {
    match (nonzero_i(pod), nonzero_i(overhead)) {
        (Some(p), Some(o)) if p > 0 && o > 0 => Some(p.saturating_add(o)),
        (pod, _) => pod,
    }
}

impl PodResources {
    /// The resources with pod `overhead` added on top, the way kubelet sizes a pod cgroup:
    /// shares (a request) add up, present or not; quota and memory limits add up only when the
    /// pod is limited (an unlimited pod stays unlimited); hugepage limits add up per page size
    /// the pod limits. The overhead quota is rescaled to the pod's CFS period if they differ.
    /// cpusets and `unified` values are the pod's own: they are not quantities.
    pub fn with_overhead(self, overhead: &PodResources) -> PodResources {
        let mut out = self;
        out.cpu_shares = match (nonzero_u(out.cpu_shares), nonzero_u(overhead.cpu_shares)) {
            (Some(p), Some(o)) => Some(p.saturating_add(o)),
            (p, o) => p.or(o),
        };
        let period = nonzero_u(out.cpu_period).unwrap_or(DEFAULT_CPU_PERIOD);
        let overhead_period = nonzero_u(overhead.cpu_period).unwrap_or(DEFAULT_CPU_PERIOD);
        let overhead_quota = nonzero_i(overhead.cpu_quota).map(|q| {
            if q > 0 && overhead_period != period {
                let scaled = i128::from(q) * i128::from(period) / i128::from(overhead_period);
                i64::try_from(scaled).unwrap_or(i64::MAX)
            } else {
                q
            }
        });
        out.cpu_quota = add_limit(out.cpu_quota, overhead_quota);
        out.memory_limit = add_limit(out.memory_limit, overhead.memory_limit);
        for (size, limit) in &mut out.hugepage_limits {
            if let Some((_, extra)) = overhead.hugepage_limits.iter().find(|(s, _)| s == size) {
                *limit = limit.saturating_add(*extra);
            }
        }
        out
    }

    /// True when applying these resources would write nothing.
    pub fn is_empty(&self) -> bool {
        nonzero_u(self.cpu_shares).is_none()
            && nonzero_i(self.cpu_quota).is_none()
            && nonzero_u(self.cpu_period).is_none()
            && nonzero_i(self.memory_limit).is_none()
            && nonempty(&self.cpuset_cpus).is_none()
            && nonempty(&self.cpuset_mems).is_none()
            && self.hugepage_limits.is_empty()
            && self.unified.is_empty()
    }

    /// The OCI form libcgroups takes. Zeros are dropped (libcgroups v2 would turn a zero quota
    /// into "max" and a zero memory limit into an error).
    pub(crate) fn to_oci(&self) -> Result<LinuxResources, CgroupError> {
        let mut res = LinuxResources::default();
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(nonzero_u(self.cpu_shares));
        cpu.set_quota(nonzero_i(self.cpu_quota));
        cpu.set_period(nonzero_u(self.cpu_period));
        cpu.set_cpus(nonempty(&self.cpuset_cpus));
        cpu.set_mems(nonempty(&self.cpuset_mems));
        if cpu != LinuxCpu::default() {
            res.set_cpu(Some(cpu));
        }
        if let Some(limit) = nonzero_i(self.memory_limit) {
            let mut mem = LinuxMemory::default();
            // libcgroups (like runc) reads -1 as "unlimited"; other negatives are invalid there.
            mem.set_limit(Some(if limit < 0 { -1 } else { limit }));
            res.set_memory(Some(mem));
        }
        if !self.hugepage_limits.is_empty() {
            let mut limits = Vec::with_capacity(self.hugepage_limits.len());
            for (size, bytes) in &self.hugepage_limits {
                let valid = size.len() > 2
                    && size.ends_with('B')
                    && size[..size.len() - 2].bytes().all(|b| b.is_ascii_digit())
                    && matches!(&size[size.len() - 2..], "KB" | "MB" | "GB");
                if !valid {
                    return Err(CgroupError::InvalidResources {
                        reason: format!("hugepage size {size:?} is not like \"2MB\" or \"1GB\""),
                    });
                }
                let bytes = i64::try_from(*bytes).map_err(|_| CgroupError::InvalidResources {
                    reason: format!("hugepage limit {bytes} for {size} exceeds i64::MAX"),
                })?;
                let mut l = LinuxHugepageLimit::default();
                l.set_page_size(size.clone());
                l.set_limit(bytes);
                limits.push(l);
            }
            res.set_hugepage_limits(Some(limits));
        }
        if !self.unified.is_empty() {
            for key in self.unified.keys() {
                if key.is_empty() || key.contains('/') || key.starts_with('.') {
                    return Err(CgroupError::InvalidResources {
                        reason: format!("unified key {key:?} is not a cgroup file name"),
                    });
                }
            }
            let map: HashMap<String, String> = self
                .unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            res.set_unified(Some(map));
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(shares: u64, quota: i64, period: u64, mem: i64) -> PodResources {
        PodResources {
            cpu_shares: Some(shares),
            cpu_quota: Some(quota),
            cpu_period: Some(period),
            memory_limit: Some(mem),
            ..Default::default()
        }
    }

    #[test]
    fn overhead_adds_up() {
        let sum = res(512, 50_000, 100_000, 100 << 20).with_overhead(&res(
            102,
            10_000,
            100_000,
            20 << 20,
        ));
        assert_eq!(sum.cpu_shares, Some(614));
        assert_eq!(sum.cpu_quota, Some(60_000));
        assert_eq!(sum.cpu_period, Some(100_000));
        assert_eq!(sum.memory_limit, Some(120 << 20));
    }

    #[test]
    fn overhead_keeps_unlimited_unlimited() {
        let pod = PodResources {
            cpu_shares: Some(2),
            ..Default::default()
        };
        let sum = pod.with_overhead(&res(100, 10_000, 100_000, 1 << 20));
        assert_eq!(sum.cpu_shares, Some(102));
        assert_eq!(sum.cpu_quota, None);
        assert_eq!(sum.memory_limit, None);
        let unlimited = res(2, -1, 100_000, -1).with_overhead(&res(1, 5, 100_000, 5));
        assert_eq!(unlimited.cpu_quota, Some(-1));
        assert_eq!(unlimited.memory_limit, Some(-1));
    }

    #[test]
    fn overhead_quota_rescaled_and_hugepages() {
        let mut pod = res(2, 50_000, 50_000, 0);
        pod.hugepage_limits = vec![("2MB".into(), 4 << 20)];
        let mut ovh = res(0, 20_000, 100_000, 0);
        ovh.hugepage_limits = vec![("2MB".into(), 2 << 20), ("1GB".into(), 1 << 30)];
        let sum = pod.with_overhead(&ovh);
        assert_eq!(sum.cpu_quota, Some(60_000));
        assert_eq!(sum.hugepage_limits, vec![("2MB".to_owned(), 6 << 20)]);
    }

    #[test]
    fn emptiness_and_zeroes() {
        assert!(PodResources::default().is_empty());
        assert!(res(0, 0, 0, 0).is_empty());
        let oci = res(0, 0, 0, 0).to_oci().unwrap();
        assert!(oci.cpu().is_none() && oci.memory().is_none());
        assert!(!res(2, 0, 0, 0).is_empty());
    }

    #[test]
    fn oci_translation() {
        let mut r = res(1024, 20_000, 100_000, 64 << 20);
        r.cpuset_cpus = Some("0".into());
        r.hugepage_limits = vec![("2MB".into(), 0)];
        r.unified.insert("memory.high".into(), "max".into());
        let oci = r.to_oci().unwrap();
        let cpu = oci.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(1024));
        assert_eq!(cpu.quota(), Some(20_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0"));
        assert_eq!(oci.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(oci.hugepage_limits().as_ref().unwrap().len(), 1);
        assert_eq!(oci.unified().as_ref().unwrap()["memory.high"], "max");

        for bad in ["2M", "MB", "2mb", "x2MB"] {
            let r = PodResources {
                hugepage_limits: vec![(bad.into(), 1)],
                ..Default::default()
            };
            assert!(
                matches!(r.to_oci(), Err(CgroupError::InvalidResources { .. })),
                "{bad}"
            );
        }
        let r = PodResources {
            hugepage_limits: vec![("2MB".into(), u64::MAX)],
            ..Default::default()
        };
        assert!(r.to_oci().is_err());
        let mut r = PodResources::default();
        r.unified.insert("../x".into(), "1".into());
        assert!(r.to_oci().is_err());
    }
}
