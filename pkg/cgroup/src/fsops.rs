//! Creating and removing cgroup directories.
//!
//! Written directly rather than through libcgroups: its managers create a cgroup only as a side
//! effect of `add_task(pid)` (Berth puts no process in the pod cgroup, there is no pause
//! container), and their `remove()` SIGKILLs whatever is inside, while Berth must kill nothing
//! and report a non-empty pod cgroup instead.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use crate::CgroupError;
use crate::hierarchy::{Hierarchy, Kind};

/// How often creation restarts after a concurrent removal of a shared ancestor (another pod's
/// `remove` rmdir-ing an empty `/berth` between our `exists()` and `mkdir`).
const CREATE_ATTEMPTS: usize = 3;

/// Creates `path` in hierarchy `h`, ancestors included; returns the directories it made, in
/// order. On cgroup v2 the available controllers are enabled in every ancestor's
/// `cgroup.subtree_control` (as runc and kubelet do, so the pod cgroup gets them); on a v1
/// cpuset hierarchy empty `cpuset.cpus`/`cpuset.mems` are filled from the parent, without which
/// no task could ever join.
pub(crate) fn create_in(h: &Hierarchy, path: &str) -> Result<Vec<PathBuf>, CgroupError> {
    let mut created = Vec::new();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match create_once(h, path, &mut created) {
            Err(CgroupError::Io { source, .. })
                if source.kind() == ErrorKind::NotFound && attempt < CREATE_ATTEMPTS =>
            {
                continue;
            }
            Err(e) => {
                rollback(&created);
                return Err(e);
            }
            Ok(()) => return Ok(created),
        }
    }
}

/// The directories [`create_in`] would make in `h` for `path` right now: each component from
/// the first missing one down.
pub(crate) fn missing_in(h: &Hierarchy, path: &str) -> Vec<PathBuf> {
    let mut current = h.mount.clone();
    let mut missing = Vec::new();
    for c in Path::new(path).components() {
        if let Component::Normal(name) = c {
            current.push(name);
            if !missing.is_empty() || !current.is_dir() {
                missing.push(current.clone());
            }
        }
    }
    missing
}

fn create_once(h: &Hierarchy, path: &str, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
    let components: Vec<_> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let mut current = h.mount.clone();
    for name in components {
        if matches!(h.kind, Kind::V2 { managed: true }) {
            enable_controllers(&current);
        }
        let parent = current.clone();
        current.push(name);
        match std::fs::create_dir(&current) {
            Ok(()) => created.push(current.clone()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CgroupError::io("mkdir", &current, e)),
        }
        if h.has_controller("cpuset") {
            inherit(&parent, &current, "cpuset.cpus")?;
            inherit(&parent, &current, "cpuset.mems")?;
        }
    }
    Ok(())
}

/// Copies `file` from `parent` into `child` when the child's is empty (v1 cpuset only).
fn inherit(parent: &Path, child: &Path, file: &str) -> Result<(), CgroupError> {
    let child_file = child.join(file);
    let current = read(&child_file)?;
    if !current.trim().is_empty() {
        return Ok(());
    }
    let parent_file = parent.join(file);
    let value = read(&parent_file)?;
    if value.trim().is_empty() {
        return Ok(());
    }
    std::fs::write(&child_file, value.trim()).map_err(|e| CgroupError::io("write", child_file, e))
}

fn read(p: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(p).map_err(|e| CgroupError::io("read", p, e))
}

/// Best effort, like libcgroups' v2 manager: a controller that cannot be enabled (a threaded
/// subtree, an ancestor with processes) only matters if a limit needs it, and then applying the
/// limit fails with the file missing, which names it.
fn enable_controllers(dir: &Path) {
    let Ok(available) = std::fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let enabled: Vec<&str> = enabled.split_whitespace().collect();
    for c in available.split_whitespace() {
        if enabled.contains(&c) {
            continue;
        }
        let file = dir.join("cgroup.subtree_control");
        if let Err(e) = std::fs::write(&file, format!("+{c}")) {
            tracing::debug!(controller = c, path = %file.display(), error = %e, "cannot enable cgroup controller");
        }
    }
}

/// Removes freshly created directories again, deepest first, ignoring errors: used when a
/// later step of `ensure` failed, so a failed RunPodSandbox leaves nothing behind.
pub(crate) fn rollback(created: &[PathBuf]) {
    for dir in sorted_deepest_first(created) {
        if let Err(e) = std::fs::remove_dir(&dir)
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(path = %dir.display(), error = %e, "cannot roll back cgroup directory");
        }
    }
}

pub(crate) fn sorted_deepest_first(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut v = dirs.to_vec();
    v.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    v
}

/// Why `dir` cannot be removed without killing or removing something, or `None` if it is empty
/// (or already gone).
pub(crate) fn busy_reason(dir: &Path) -> Result<Option<String>, CgroupError> {
    let procs_file = dir.join("cgroup.procs");
    let procs = match std::fs::read_to_string(&procs_file) {
        Ok(p) => p,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CgroupError::io("read", procs_file, e)),
    };
    let pids: Vec<&str> = procs.split_whitespace().collect();
    if !pids.is_empty() {
        return Ok(Some(format!("processes {}", pids.join(","))));
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CgroupError::io("read directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| CgroupError::io("read directory", dir, e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            return Ok(Some(format!(
                "child cgroup {}",
                entry.file_name().to_string_lossy()
            )));
        }
    }
    Ok(None)
}
