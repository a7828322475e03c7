//! What a test must not leave behind: mounts under its dirs, network namespaces, cgroups, processes
//! (berth-monitors among them), OCI runtime state, and IP reservations in its CNI IPAM store.

use std::path::Path;

/// Checks everything; `Err` lists every leak found, one per line.
pub fn check(dir: &Path, test_id: &str) -> Result<(), String> {
    let mut leaks = Vec::new();
    leaks.extend(mounts_under(dir));
    leaks.extend(netns_named(test_id));
    leaks.extend(cgroups_named(test_id));
    leaks.extend(processes_using(dir));
    leaks.extend(monitors_for(dir));
    leaks.extend(runtime_state(&dir.join("state")));
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

/// cgroups whose name carries the test's id, in every mounted hierarchy. Container cgroups are
/// children of their pod's cgroup, which carries the test id (`pod-<test id>-<name>`), so a leaked
/// container cgroup shows up as its pod cgroup (a cgroup with children cannot be removed); so does
/// the pod's `berth-monitor` child cgroup. (v1 controllers, the v2/unified
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

/// berth-monitor processes still tied to the test: named `berth-monitor` (by `comm` or argv[0]) and
/// naming the test dir in their command line or environment, working or rooted below it, or holding
/// a file below it open (its logs, exit files, socket dir). A monitor that only holds sockets and log
/// files open would escape [`processes_using`].
///
/// A zombie whose parent is PID 1 counts as gone: on this machine PID 1 does not reap orphans, so a
/// monitor (or container) that exited after its parent is a zombie of PID 1 forever. A zombie with
/// another parent is reported when that parent belongs to the test (its berthd failed to reap it);
/// a zombie has no command line of its own, so its parent's is what ties it to a test.
pub fn monitors_for(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    let under = |p: &Path| {
        let p = p.to_string_lossy();
        p == prefix.as_str() || p.starts_with(&format!("{prefix}/"))
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return vec!["cannot read /proc".to_string()];
    };
    let mut found = Vec::new();
    for entry in procs.filter_map(Result::ok) {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let base = entry.path();
        let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(base.join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        let argv0 = cmdline.split(' ').next().unwrap_or_default();
        if comm.trim() != "berth-monitor" && !argv0.ends_with("berth-monitor") {
            continue;
        }
        let Some((state, ppid)) = stat_state(&base) else {
            continue;
        };
        if state == 'Z' && ppid == 1 {
            continue;
        }
        let environ = std::fs::read(base.join("environ"))
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .unwrap_or_default();
        let links = ["cwd", "root"]
            .into_iter()
            .filter_map(|l| std::fs::read_link(base.join(l)).ok());
        let fds = std::fs::read_dir(base.join("fd"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|fd| std::fs::read_link(fd.path()).ok());
        let mut ties = links.chain(fds).filter(|p| under(p));
        let parent_is_ours = || {
            std::fs::read(format!("/proc/{ppid}/cmdline"))
                .map(|raw| String::from_utf8_lossy(&raw).contains(&prefix))
                .unwrap_or(false)
        };
        if (state == 'Z' && parent_is_ours())
            || cmdline.contains(&prefix)
            || environ.contains(&prefix)
            || ties.next().is_some()
        {
            let what = if state == 'Z' { " (zombie)" } else { "" };
            found.push(format!(
                "berth-monitor {pid}{what} (parent {ppid}): {}",
                cmdline.trim()
            ));
        }
    }
    found
}

/// State letter and parent pid from `<proc dir>/stat` (`pid (comm) S ppid ...`).
fn stat_state(proc_dir: &Path) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = after.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Containers the OCI runtime still knows: runc (and crun) keep one directory per container,
/// holding `state.json`, under their `--root`, which berthd puts at `<state>/runtime/<handler>`
/// (what `runc --root <dir> list` reads).
pub fn runtime_state(state_dir: &Path) -> Vec<String> {
    let Ok(handlers) = std::fs::read_dir(state_dir.join("runtime")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for handler in handlers.filter_map(Result::ok) {
        let Ok(containers) = std::fs::read_dir(handler.path()) else {
            continue;
        };
        for container in containers.filter_map(Result::ok) {
            if container.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(format!("OCI runtime state: {}", container.path().display()));
            }
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
