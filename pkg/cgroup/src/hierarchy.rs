//! Which cgroup hierarchies a pod cgroup lives in.
//!
//! The layout (v1 / v2 / hybrid) comes from libcgroups' `get_cgroup_setup_with_root`, which
//! statfs()es the root and `<root>/unified` and does recognise hybrid hosts. The v1 hierarchies
//! themselves are read from `/proc/self/mountinfo` here: libcgroups' v1 manager only knows its
//! fixed controller list (no `name=systemd`, `misc` or `rdma`) and never the unified hierarchy
//! of a hybrid host, while runc's fs manager, which will create the containers under the pod
//! cgroup, uses all of those: every mounted controller, `name=systemd`, `misc`, and on hybrid
//! hosts the cgroup2 mount as well (runc adds a join-only `""` subsystem when
//! `IsCgroup2HybridMode()`). kubelet creates its pod cgroups through that same runc code, so
//! following it keeps Berth-made and kubelet-made pod cgroups alike.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupSetup, GetCgroupSetupError, get_cgroup_setup_with_root};

use crate::{CgroupError, Layout};

/// The v1 subsystems runc's fs manager creates cgroups in (plus its named hierarchies).
const RUNC_V1_SUBSYSTEMS: &[&str] = &[
    "cpuset",
    "devices",
    "memory",
    "cpu",
    "cpuacct",
    "pids",
    "blkio",
    "hugetlb",
    "net_cls",
    "net_prio",
    "perf_event",
    "freezer",
    "rdma",
    "name=systemd",
    "misc",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A cgroup v1 hierarchy with these controllers (or `name=...` for a named one).
    V1 { controllers: Vec<String> },
    /// A cgroup2 hierarchy. `managed` is false for the controller-less unified hierarchy of a
    /// hybrid host, where (like runc) we only create the directory and set nothing.
    V2 { managed: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    pub mount: PathBuf,
    pub kind: Kind,
}

impl Hierarchy {
    pub fn has_controller(&self, name: &str) -> bool {
        matches!(&self.kind, Kind::V1 { controllers } if controllers.iter().any(|c| c == name))
    }
}

pub(crate) fn detect(root: &Path) -> Result<(Layout, Vec<Hierarchy>), CgroupError> {
    let detect_err = |reason: String| CgroupError::Detect {
        root: root.to_path_buf(),
        reason,
    };
    let setup = get_cgroup_setup_with_root(root).map_err(|e| match e {
        GetCgroupSetupError::NonDefault => detect_err("does not exist".into()),
        other => detect_err(other.to_string()),
    })?;
    let layout = match setup {
        CgroupSetup::Unified => {
            return Ok((
                Layout::V2,
                vec![Hierarchy {
                    mount: root.to_path_buf(),
                    kind: Kind::V2 { managed: true },
                }],
            ));
        }
        CgroupSetup::Legacy => Layout::V1,
        CgroupSetup::Hybrid => Layout::Hybrid,
    };
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| CgroupError::io("read", "/proc/self/mountinfo", e))?;
    let mut hierarchies = v1_hierarchies(&mountinfo, root);
    if hierarchies.is_empty() {
        return Err(detect_err("no cgroup v1 hierarchy is mounted there".into()));
    }
    if layout == Layout::Hybrid {
        hierarchies.push(Hierarchy {
            mount: root.join("unified"),
            kind: Kind::V2 { managed: false },
        });
    }
    Ok((layout, hierarchies))
}

/// The cgroup v1 mounts below `root` that runc would use, one per hierarchy (bind mounts of the
/// same hierarchy are skipped), sorted by mount point.
pub(crate) fn v1_hierarchies(mountinfo: &str, root: &Path) -> Vec<Hierarchy> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(dev), Some(mount), Some(fstype), Some(opts)) =
            (pre.get(2), pre.get(4), post.first(), post.get(2))
        else {
            continue;
        };
        if *fstype != "cgroup" {
            continue;
        }
        let mount = PathBuf::from(unescape(mount));
        if !mount.starts_with(root) || mount == root {
            continue;
        }
        let controllers: Vec<String> = opts
            .split(',')
            .filter(|o| RUNC_V1_SUBSYSTEMS.contains(o))
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() || !seen.insert((*dev).to_owned()) {
            continue;
        }
        out.push(Hierarchy {
            mount,
            kind: Kind::V1 { controllers },
        });
    }
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
99 23 0:32 / /mnt/mem\\040bind rw,relatime - cgroup cgroup rw,memory
98 31 0:32 / /sys/fs/cgroup/memory2 rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
42 31 0:39 / /sys/fs/cgroup/other rw,relatime - cgroup cgroup rw,name=other
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_v1_mounts() {
        let h = v1_hierarchies(SAMPLE, Path::new("/sys/fs/cgroup"));
        let mounts: Vec<_> = h.iter().map(|h| h.mount.to_str().unwrap()).collect();
        assert_eq!(
            mounts,
            [
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/cpuset",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/systemd"
            ]
        );
        assert!(h[0].has_controller("cpu") && h[0].has_controller("cpuacct"));
        assert!(h[3].has_controller("name=systemd"));
        let other = v1_hierarchies(SAMPLE, Path::new("/mnt"));
        assert_eq!(other[0].mount, Path::new("/mnt/mem bind"));
    }
}
