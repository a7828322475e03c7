//! CRI `LinuxContainerResources` as OCI `LinuxResources`, for the spec and for `runc update`.

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

use crate::{Resources, SpecError};

/// The OCI resources for CRI resources. Zero (or empty) means unset, as in CRI, and leaves the
/// field out so runc keeps the cgroup's default; negative values are
/// [`SpecError::InvalidResources`].
/// Hugepage limits are kept even when zero: kubelet sends 0 for every page size the node has,
/// meaning "none allowed". But they are dropped when the host has no hugetlb cgroup controller,
/// as containerd does by default (`tolerate_missing_hugetlb_controller`): kubelet sends them
/// anyway and runc would fail the create or update. Swap is set only when given.
/// `oom_score_adj` is not part of it (it is a process attribute, see
/// [`crate::oom_score_adj_clamped`]); device rules are added by [`crate::build`].
pub fn linux_resources(r: &Resources) -> Result<LinuxResources, SpecError> {
    resources_for(r, hugetlb_available())
}

/// Whether the host has the hugetlb controller: listed in the v2 root's `cgroup.controllers`,
/// or mounted as a v1 hierarchy.
fn hugetlb_available() -> bool {
    let root = std::path::Path::new("/sys/fs/cgroup");
    match std::fs::read_to_string(root.join("cgroup.controllers")) {
        Ok(controllers) => controllers.split_whitespace().any(|c| c == "hugetlb"),
        Err(_) => root.join("hugetlb").is_dir(),
    }
}

fn resources_for(r: &Resources, hugetlb: bool) -> Result<LinuxResources, SpecError> {
    let shares = positive_u64(r.cpu_shares, "cpu_shares")?;
    let quota = positive_i64(r.cpu_quota, "cpu_quota")?;
    let period = positive_u64(r.cpu_period, "cpu_period")?;
    let cpus = non_empty(&r.cpuset_cpus);
    let mems = non_empty(&r.cpuset_mems);
    let cpu = if shares.is_some()
        || quota.is_some()
        || period.is_some()
        || cpus.is_some()
        || mems.is_some()
    {
        let mut b = LinuxCpuBuilder::default();
        if let Some(v) = shares {
            b = b.shares(v);
        }
        if let Some(v) = quota {
            b = b.quota(v);
        }
        if let Some(v) = period {
            b = b.period(v);
        }
        if let Some(v) = cpus {
            b = b.cpus(v);
        }
        if let Some(v) = mems {
            b = b.mems(v);
        }
        Some(b.build()?)
    } else {
        None
    };

    let limit = positive_i64(r.memory_limit_in_bytes, "memory_limit_in_bytes")?;
    let swap = positive_i64(r.memory_swap_limit_in_bytes, "memory_swap_limit_in_bytes")?;
    let memory = if limit.is_some() || swap.is_some() {
        let mut b = LinuxMemoryBuilder::default();
        if let Some(v) = limit {
            b = b.limit(v);
        }
        if let Some(v) = swap {
            b = b.swap(v);
        }
        Some(b.build()?)
    } else {
        None
    };

    let mut hugepages = Vec::with_capacity(r.hugepage_limits.len());
    for (page_size, limit) in &r.hugepage_limits {
        if page_size.is_empty() {
            return Err(SpecError::InvalidResources(
                "hugepage limit without a page size".into(),
            ));
        }
        let limit = i64::try_from(*limit).map_err(|_| {
            SpecError::InvalidResources(format!(
                "hugepage limit {limit} for {page_size} is too large"
            ))
        })?;
        hugepages.push(
            LinuxHugepageLimitBuilder::default()
                .page_size(page_size.clone())
                .limit(limit)
                .build()?,
        );
    }

    let mut b = LinuxResourcesBuilder::default();
    if let Some(cpu) = cpu {
        b = b.cpu(cpu);
    }
    if let Some(memory) = memory {
        b = b.memory(memory);
    }
    if hugetlb && !hugepages.is_empty() {
        b = b.hugepage_limits(hugepages);
    }
    if !r.unified.is_empty() {
        b = b.unified(
            r.unified
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    Ok(b.build()?)
}

fn positive_i64(v: i64, what: &str) -> Result<Option<i64>, SpecError> {
    match v {
        0 => Ok(None),
        v if v < 0 => Err(SpecError::InvalidResources(format!(
            "{what} must not be negative, got {v}"
        ))),
        v => Ok(Some(v)),
    }
}

fn positive_u64(v: i64, what: &str) -> Result<Option<u64>, SpecError> {
    Ok(positive_i64(v, what)?.map(|v| v as u64))
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unset() {
        let r = linux_resources(&Resources::default()).unwrap();
        assert_eq!(r.cpu(), &None);
        assert_eq!(r.memory(), &None);
        assert_eq!(r.hugepage_limits(), &None);
        assert_eq!(r.unified(), &None);
        assert_eq!(r.devices(), &None);
    }

    #[test]
    fn values_map_through() {
        let r = Resources {
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            memory_limit_in_bytes: 64 << 20,
            memory_swap_limit_in_bytes: 128 << 20,
            oom_score_adj: 500,
            cpuset_cpus: "0-1".into(),
            cpuset_mems: "0".into(),
            hugepage_limits: vec![("2MB".into(), 0), ("1GB".into(), 1 << 30)],
            unified: [("memory.high".to_string(), "1000000".to_string())].into(),
        };
        let o = resources_for(&r, true).unwrap();
        let cpu = o.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(512));
        assert_eq!(cpu.quota(), Some(50_000));
        assert_eq!(cpu.period(), Some(100_000));
        assert_eq!(cpu.cpus().as_deref(), Some("0-1"));
        assert_eq!(cpu.mems().as_deref(), Some("0"));
        let mem = o.memory().as_ref().unwrap();
        assert_eq!(mem.limit(), Some(64 << 20));
        assert_eq!(mem.swap(), Some(128 << 20));
        let huge = o.hugepage_limits().as_ref().unwrap();
        assert_eq!(huge.len(), 2);
        assert_eq!((huge[0].page_size().as_str(), huge[0].limit()), ("2MB", 0));
        assert_eq!(o.unified().as_ref().unwrap()["memory.high"], "1000000");

        // No hugetlb controller: no hugepage limits (but they are still validated).
        assert_eq!(resources_for(&r, false).unwrap().hugepage_limits(), &None);
        let ok = linux_resources(&r).unwrap();
        assert_eq!(ok.hugepage_limits().is_some(), hugetlb_available());

        // Only a limit: no swap.
        let o = linux_resources(&Resources {
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(o.memory().as_ref().unwrap().swap(), None);
        assert_eq!(o.cpu(), &None);
    }

    #[test]
    fn negative_values_are_invalid() {
        let cases = [
            Resources {
                cpu_period: -1,
                ..Default::default()
            },
            Resources {
                cpu_quota: -1,
                ..Default::default()
            },
            Resources {
                cpu_shares: -2,
                ..Default::default()
            },
            Resources {
                memory_limit_in_bytes: -1,
                ..Default::default()
            },
            Resources {
                memory_swap_limit_in_bytes: -1,
                ..Default::default()
            },
            Resources {
                hugepage_limits: vec![("2MB".into(), u64::MAX)],
                ..Default::default()
            },
            Resources {
                hugepage_limits: vec![(String::new(), 1)],
                ..Default::default()
            },
        ];
        for r in cases {
            assert!(
                matches!(linux_resources(&r), Err(SpecError::InvalidResources(_))),
                "{r:?}"
            );
        }
    }
}
