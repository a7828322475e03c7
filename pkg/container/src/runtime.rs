//! The OCI runtime's command line (runc, crun, youki, runsc all take these): berthd runs `kill`,
//! `delete` and `update` itself; `run` is done by the pod's monitor, which must be the
//! container's parent.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::ContainerError;

/// How long one runtime command may take before it is killed and reported as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub path: PathBuf,
    /// The runtime's state dir (`--root`).
    pub root: PathBuf,
    /// `--systemd-cgroup`, when runc is to ask systemd for the container's scope.
    pub systemd_cgroup: bool,
}

impl OciRuntime {
    /// Global options, placed before the subcommand.
    pub fn global_args(&self) -> Vec<String> {
        let mut args = vec!["--root".to_string(), self.root.display().to_string()];
        if self.systemd_cgroup {
            args.push("--systemd-cgroup".to_string());
        }
        args
    }

    /// Sends `signal` to the container's process. A container that is already gone is not an
    /// error: the caller waits for its exit either way.
    pub async fn kill(&self, id: &str, signal: i32) -> Result<(), ContainerError> {
        match self.run("kill", &[id, &signal.to_string()], None).await {
            Ok(()) => Ok(()),
            Err(ContainerError::Runtime { message, .. }) if gone(&message) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the runtime's state (and the container's cgroup), killing what still runs.
    /// Idempotent.
    pub async fn delete(&self, id: &str) -> Result<(), ContainerError> {
        match self.run("delete", &["--force", id], None).await {
            Ok(()) => Ok(()),
            Err(ContainerError::Runtime { message, .. }) if gone(&message) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Applies new resource limits to a running container (`update --resources -`).
    pub async fn update(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), ContainerError> {
        let json =
            serde_json::to_vec(resources).map_err(ContainerError::json("encoding resources"))?;
        self.run("update", &["--resources", "-", id], Some(json))
            .await
    }

    /// Whether the runtime still has state for `id`.
    pub fn has_state(&self, id: &str) -> bool {
        self.root.join(id).join("state.json").exists()
    }

    /// Runs the runtime's subcommand `op` with `args`.
    async fn run(
        &self,
        op: &'static str,
        args: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<(), ContainerError> {
        let mut cmd = Command::new(&self.path);
        cmd.args(self.global_args())
            .arg(op)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(ContainerError::io("run", &self.path))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(&input)
                .await
                .map_err(ContainerError::io("write to", &self.path))?;
            drop(pipe);
        }
        let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| ContainerError::RuntimeTimedOut {
                command: format!("{} {op} {}", self.path.display(), args.join(" ")),
                after: COMMAND_TIMEOUT,
            })?
            .map_err(ContainerError::io("wait for", &self.path))?;
        if output.status.success() {
            return Ok(());
        }
        Err(ContainerError::Runtime {
            op,
            message: error_text(&output.stderr),
        })
    }
}

/// The runtime's message: runc prints `time=... level=error msg="..."` lines (or plain text).
pub(crate) fn error_text(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    match last.find("msg=") {
        Some(i) => last[i + 4..].trim().trim_matches('"').to_string(),
        None => last.trim().to_string(),
    }
}

/// Messages that mean the container is already stopped or gone.
fn gone(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("not exist")
        || m.contains("not found")
        || m.contains("not running")
        || m.contains("process already finished")
        || m.contains("no such process")
}

/// The runtime dir for `handler` when the configuration names none.
pub fn default_root(state_dir: &Path, handler: &str) -> PathBuf {
    state_dir.join("runtime").join(handler)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_error_lines() {
        let stderr =
            b"time=\"2026-12-01T10:00:00Z\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        let text = error_text(stderr);
        assert!(text.contains("does not exist"), "{text}");
        assert!(gone(&text));
        assert_eq!(error_text(b"plain failure\n"), "plain failure");
        assert!(!gone("permission denied"));
    }
}
