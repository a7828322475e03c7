//! Helpers shared by the integration tests (real kernel, needs root).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Mount points at or below `dir`, from /proc/self/mountinfo (one entry per mount, so a
/// duplicated propagation shows up twice).
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| {
            l.split(' ')
                .nth(4)
                .map(|m| PathBuf::from(m.replace("\\040", " ")))
        })
        .filter(|m| m.starts_with(&dir))
        .collect()
}

/// Runs `nsenter <args>` and returns trimmed stdout; panics with stderr on failure.
pub fn nsenter(args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .args(args)
        .output()
        .expect("spawn nsenter");
    assert!(
        out.status.success(),
        "nsenter {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).expect(path).trim().to_owned()
}

/// Inode of a namespace (the nsfs inode is the namespace id).
pub fn ns_inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).expect("stat ns").ino()
}

/// Interface names listed in a /proc/<...>/net/dev file.
pub fn interfaces(net_dev: &str) -> Vec<String> {
    net_dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_owned())
        .collect()
}

/// A value different from `current` for a numeric sysctl.
pub fn other_value(current: &str, preferred: u64) -> String {
    if current == preferred.to_string() {
        (preferred + 1).to_string()
    } else {
        preferred.to_string()
    }
}
