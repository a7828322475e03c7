//! Container log files in log directories Berth made itself. kubelet removes the log directories
//! it passes (and the logs in them) on its own, so those are never touched; but a pod made by
//! Berth's CLI gets a directory under Berth's default CLI log root, which nobody else removes when
//! the pod is removed through CRI directly (crictl, another client). Those logs go with their
//! container, and the directory with its pod.

use std::path::{Component, Path, PathBuf};

use berth_sandbox::SandboxRecord;

/// Where Berth's CLI makes pod log directories by default (`berth runp`, `berth run`), as
/// `<root>/<namespace>_<name>_<uid>`; kubelet uses `/var/log/pods` (or its `podLogsDir`).
pub const CLI_LOG_ROOT: &str = "/var/log/berth/pods";
/// The annotation by which Berth's CLI records the log directory it made for a pod.
pub const CLI_LOG_DIR_ANNOTATION: &str = "io.berth.cli/log-directory";

/// The pod's log directory if Berth made it: the CLI's annotation names it, it is the pod's own
/// `<namespace>_<name>_<uid>` directory, and it lies directly under Berth's CLI log root. All three,
/// because annotations come from the pod's author: none of them alone could point Berth at a
/// directory kubelet (or anyone) else owns.
pub(crate) fn berth_owned_dir(sandbox: &SandboxRecord) -> Option<PathBuf> {
    owned_dir(
        &sandbox.log_directory,
        sandbox.annotations.get(CLI_LOG_DIR_ANNOTATION)?,
        &sandbox.metadata.namespace,
        &sandbox.metadata.name,
        &sandbox.metadata.uid,
        Path::new(CLI_LOG_ROOT),
    )
}

fn owned_dir(
    log_directory: &str,
    annotation: &str,
    namespace: &str,
    name: &str,
    uid: &str,
    root: &Path,
) -> Option<PathBuf> {
    let dir = Path::new(log_directory);
    let plain = dir.is_absolute()
        && dir
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let expected = format!("{namespace}_{name}_{uid}");
    let named = dir.file_name().is_some_and(|n| n == expected.as_str());
    (plain && annotation == log_directory && named && dir.parent() == Some(root))
        .then(|| dir.to_path_buf())
}

/// Removes a removed container's log file and its rotated copies (`<file>.<suffix>`, as kubelet
/// names them), if the log lies in a directory Berth made. Best effort: a leftover log file must
/// not make the container unremovable.
pub(crate) fn remove_container_log(sandbox: &SandboxRecord, log_path: Option<&Path>) {
    if let (Some(dir), Some(log)) = (berth_owned_dir(sandbox), log_path) {
        remove_log_in(&dir, log);
    }
}

fn remove_log_in(dir: &Path, log: &Path) {
    // CreateContainer refused log paths with `..`; still, only files inside the directory.
    let (Some(parent), Some(file)) = (log.parent(), log.file_name()) else {
        return;
    };
    if !parent.starts_with(dir) {
        return;
    }
    let file = file.to_string_lossy();
    let rotated = format!("{file}.");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name == file || name.starts_with(&rotated))
            && let Err(e) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(path = %entry.path().display(), error = %e, "removing a container log");
        }
    }
}

/// Removes the log directory of a removed pod, if Berth made it.
pub(crate) fn remove_pod_log_dir(sandbox: &SandboxRecord) {
    let Some(dir) = berth_owned_dir(sandbox) else {
        return;
    };
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %dir.display(), error = %e, "removing the pod log directory")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "/var/log/berth/pods";

    fn owned(dir: &str, annotation: &str) -> bool {
        owned_dir(dir, annotation, "default", "web", "u1", Path::new(ROOT)).is_some()
    }

    #[test]
    fn only_berths_own_pod_directories_count() {
        let dir = "/var/log/berth/pods/default_web_u1";
        assert!(owned(dir, dir));
        // kubelet's directory, even with the CLI's annotation copied into the pod.
        let kubelet = "/var/log/pods/default_web_u1";
        assert!(!owned(kubelet, kubelet));
        // The annotation must name the very directory.
        assert!(!owned(dir, "/var/log/berth/pods/other"));
        // Another pod's directory, the root itself, or a path with `..`.
        let other = "/var/log/berth/pods/default_db_u2";
        assert!(!owned(other, other));
        assert!(!owned(ROOT, ROOT));
        let sneaky = "/var/log/berth/pods/../pods/default_web_u1";
        assert!(!owned(sneaky, sneaky));
        assert!(!owned("", ""));
    }

    #[test]
    fn a_container_log_goes_with_its_rotations_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("default_web_u1");
        std::fs::create_dir(&dir).unwrap();
        for f in [
            "web.log",
            "web.log.20240501-100000",
            "web.log.1.gz",
            "webby.log",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        // A log outside the directory is never touched.
        remove_log_in(&dir, &tmp.path().join("web.log"));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 4);
        remove_log_in(&dir, &dir.join("web.log"));
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["webby.log"]);
    }
}
