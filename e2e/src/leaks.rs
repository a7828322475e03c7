//! What a test must not leave behind: mounts under its dirs, network namespaces, cgroups, processes,
//! and IP reservations in its CNI IPAM store.

use std::path::Path;

/// Checks everything; `Err` lists every leak found, one per line.
pub fn check(dir: &Path, test_id: &str) -> Result<(), String> {
    let mut leaks = Vec::new();
    leaks.extend(mounts_under(dir));
    leaks.extend(netns_named(test_id));
    leaks.extend(cgroups_named(test_id));
    leaks.extend(processes_using(dir));
    leaks.extend(cni_reservations(&dir.join("cni/ipam")));
    if leaks.is_empty() {
        Ok(())
    } else {
        Err(leaks.join("\n"))
    }
}

/// Mount points at or below `dir` (bind mounts, overlays, pinned namespaces, /dev/shm tmpfs...).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return vec!["cannot read /proc/self/mountinfo".to_string()];
    };
    let prefix = dir.to_string_lossy();
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|mount_point| {
            mount_point == prefix.as_ref() || mount_point.starts_with(&format!("{prefix}/"))
        })
        .map(|mount_point| format!("mount: {mount_point}"))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("0");
            out.push(u8::from_str_radix(octal, 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Named network namespaces (`ip netns`) carrying the test's id.
pub fn netns_named(test_id: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/run/netns") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(test_id))
        .map(|name| format!("network namespace: /run/netns/{name}"))
        .collect()
}

/// cgroups whose name carries the test's id, in every mounted hierarchy (v1 controllers, the v2/unified
/// mount, named hierarchies), down to a depth that covers kubelet's `/kubepods/<qos>/pod<uid>/<ctr>`.
pub fn cgroups_named(test_id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return found;
    };
    let mut roots: Vec<_> = hierarchies
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    roots.push("/sys/fs/cgroup".into());
    for root in roots {
        walk_cgroups(&root, test_id, 5, &mut found);
    }
    found.sort();
    found.dedup();
    found
}

fn walk_cgroups(dir: &Path, test_id: &str, depth: u32, found: &mut Vec<String>) {
    if depth == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        // cgroup dirs are real directories; symlinks (cpu,cpuacct) would double-count.
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let path = entry.path();
        if entry.file_name().to_string_lossy().contains(test_id) {
            found.push(format!("cgroup: {}", path.display()));
        } else {
            walk_cgroups(&path, test_id, depth - 1, found);
        }
    }
}

/// Processes whose command line, executable, working dir or root lies under `dir` (containers run in
/// rootfs under the state dir; monitors name it in their arguments).
pub fn processes_using(dir: &Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let prefix = dir.to_string_lossy().into_owned();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec!["cannot read /proc".to_string()];
    };
    let mut found = Vec::new();
    for entry in procs.filter_map(Result::ok) {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let base = entry.path();
        let cmdline = std::fs::read(base.join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        let links = ["exe", "cwd", "root"].map(|l| {
            std::fs::read_link(base.join(l))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        if cmdline.contains(&prefix) || links.iter().any(|l| l.starts_with(&prefix)) {
            found.push(format!("process {pid}: {}", cmdline.trim()));
        }
    }
    found
}

/// host-local IPAM keeps one file per reserved IP under `<dataDir>/<network>/`.
pub fn cni_reservations(ipam_dir: &Path) -> Vec<String> {
    let Ok(networks) = std::fs::read_dir(ipam_dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for network in networks.filter_map(Result::ok) {
        let Ok(files) = std::fs::read_dir(network.path()) else {
            continue;
        };
        for file in files.filter_map(Result::ok) {
            let name = file.file_name().to_string_lossy().into_owned();
            // Bookkeeping files, not reservations.
            if name == "lock" || name.starts_with("last_reserved_ip") {
                continue;
            }
            found.push(format!("CNI IP reservation: {}", file.path().display()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mountinfo_paths() {
        assert_eq!(unescape_mount_path("/a\\040b"), "/a b");
        assert_eq!(unescape_mount_path("/plain"), "/plain");
    }
}
