//! Shared helpers for the real-cgroup integration tests: unique names and a Drop guard that
//! removes every test directory (and kills test processes) even when an assertion failed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub const ROOT: &str = "/sys/fs/cgroup";

/// A fresh token; test cgroups are named `berth-cgtest-<token>...` or `berth-cgtest<token>...`.
pub fn token() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}x{nanos:x}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every directory a cgroup hierarchy may be mounted on: the root (pure v2) and each mount
/// below it (v1 controllers, name=systemd, unified).
pub fn hierarchy_mounts() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from(ROOT)];
    if let Ok(entries) = std::fs::read_dir(ROOT) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.push(e.path());
            }
        }
    }
    out
}

/// Cleans up on drop: kills `children`, removes each `trees` entry (relative to every hierarchy
/// mount) bottom-up, then rmdirs each `parents_if_empty` entry if it is empty, and runs `finally`.
#[derive(Default)]
pub struct Guard {
    pub trees: Vec<String>,
    pub parents_if_empty: Vec<String>,
    pub children: Vec<Child>,
    pub finally: Vec<Box<dyn FnOnce()>>,
}

impl Guard {
    pub fn new(tree: impl Into<String>) -> Guard {
        let mut g = Guard::default();
        g.trees.push(tree.into());
        g
    }
}

fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

impl Drop for Guard {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for mount in hierarchy_mounts() {
            for t in &self.trees {
                let p = mount.join(t);
                if p.exists() {
                    remove_tree(&p);
                }
            }
            for p in &self.parents_if_empty {
                let _ = std::fs::remove_dir(mount.join(p));
            }
        }
        for f in self.finally.drain(..) {
            f();
        }
    }
}

pub fn read_trim(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_owned()
}

/// The pod directory inside the hierarchy mounted at `<root>/<name>`, if the pod uses it.
pub fn dir_in(paths: &[PathBuf], name: &str) -> Option<PathBuf> {
    let mount = Path::new(ROOT).join(name);
    paths.iter().find(|p| p.starts_with(&mount)).cloned()
}

pub fn is_root() -> bool {
    // SAFETY-free check: /proc/self/status Uid line.
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The cgroup2 root of a pure v2 host, or the unified mount of a hybrid one; `None` without one.
pub fn v2_root() -> Option<&'static str> {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Some("/sys/fs/cgroup")
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        Some("/sys/fs/cgroup/unified")
    } else {
        None
    }
}

/// Enabling controllers below `root` touches its `cgroup.subtree_control`: have `guard` disable
/// again whatever the test enabled there.
pub fn restore_subtree_control(guard: &mut Guard, root: &str) {
    let subtree = Path::new(root).join("cgroup.subtree_control");
    let before = std::fs::read_to_string(&subtree).unwrap_or_default();
    guard.finally.push(Box::new(move || {
        let after = std::fs::read_to_string(&subtree).unwrap_or_default();
        for c in after.split_whitespace() {
            if !before.split_whitespace().any(|b| b == c) {
                let _ = std::fs::write(&subtree, format!("-{c}"));
            }
        }
    }));
}
