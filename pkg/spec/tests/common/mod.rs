//! What the runc tests share: a busybox rootfs and whether this machine can run runc at all.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

/// A minimal rootfs in `dir`: the usual top-level dirs, a static busybox with `tools` linked to
/// it (none when `tools` is empty), and the given /etc/passwd and /etc/group.
pub fn busybox_rootfs(dir: &Path, tools: &[&str], passwd: &str, group: &str) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(dir.join(d)).unwrap();
    }
    if !tools.is_empty() {
        fs::copy("/usr/bin/busybox", dir.join("bin/busybox")).unwrap();
        for tool in tools {
            symlink("busybox", dir.join("bin").join(tool)).unwrap();
        }
    }
    fs::write(dir.join("etc/passwd"), passwd).unwrap();
    fs::write(dir.join("etc/group"), group).unwrap();
}

/// Whether this machine can run the tests; prints why not.
pub fn runnable() -> bool {
    let root = effective_uid() == 0;
    let runc = Command::new("runc").arg("--version").output().is_ok();
    let busybox = Path::new("/usr/bin/busybox").is_file();
    if !(root && runc && busybox) {
        eprintln!("skipping: needs root ({root}), runc ({runc}) and /usr/bin/busybox ({busybox})");
    }
    root && runc && busybox
}

/// The effective uid from /proc, to keep these tests free of extra dependencies.
fn effective_uid() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}
