//! Running one plugin binary (spec section "Execution protocol"), behind [`PluginExecutor`]: the
//! seam between the CNI runtime's protocol logic (chaining, rollback of a failed ADD, DEL with
//! the persisted result) and the processes it starts, so that logic is testable without plugins.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::cni::error::excerpt;
use crate::cni::result::PluginError;
use crate::cni::{CniError, Command};

/// A plugin printing more than this is broken; the cap keeps it from filling berthd's memory.
const MAX_OUTPUT: u64 = 16 << 20;

/// One plugin call: what to run and what to hand it.
#[derive(Clone, Copy)]
pub struct PluginCall<'a> {
    /// The plugin binary, found in the bin dirs.
    pub path: &'a Path,
    /// The plugin's type (its binary's name), for errors and logs.
    pub plugin: &'a str,
    pub command: Command,
    pub env: &'a [(String, String)],
    pub stdin: &'a [u8],
    pub timeout: Duration,
}

/// Runs CNI plugins: returns the plugin's stdout when it succeeded, its error otherwise.
pub trait PluginExecutor: Send + Sync {
    fn run<'a>(
        &'a self,
        call: PluginCall<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, CniError>> + Send + 'a>>;
}

/// The real executor: runs the plugin binary as a child process (see [`run`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessExecutor;

impl PluginExecutor for ProcessExecutor {
    fn run<'a>(
        &'a self,
        call: PluginCall<'a>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u8>, CniError>> + Send + 'a>> {
        Box::pin(run(call))
    }
}

/// Runs the plugin and returns its stdout when it exits 0.
///
/// The plugin runs in a process group of its own so that on timeout the whole group is killed: a
/// plugin that hangs is usually waiting on a child (bridge runs host-local as one), and killing only
/// the direct child would leave that holding the stdout pipe open.
async fn run(call: PluginCall<'_>) -> Result<Vec<u8>, CniError> {
    let mut child = tokio::process::Command::new(call.path)
        .env_clear()
        .envs(call.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| CniError::PluginExec {
            path: call.path.to_path_buf(),
            command: call.command,
            source,
        })?;
    let pid = child.id();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let io = async {
        let write = async {
            if let Some(mut pipe) = stdin {
                // A plugin may exit without reading (VERSION does): its exit status tells what
                // happened, so a broken pipe here is not an error of its own.
                if let Err(e) = pipe.write_all(call.stdin).await {
                    tracing::debug!(plugin = call.plugin, error = %e, "writing plugin stdin");
                }
            }
        };
        let (_, out, err, status) =
            tokio::join!(write, read_all(stdout), read_all(stderr), child.wait());
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(call.timeout, io).await {
        Ok(done) => done,
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) {
                // SAFETY: kill(2) takes no pointers. The group id is our child's pid, which stays
                // reserved until the child is reaped below, so no unrelated group can be hit.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.wait().await;
            return Err(CniError::Timeout {
                plugin: call.plugin.to_string(),
                command: call.command,
                timeout: call.timeout,
            });
        }
    };
    let status = status.map_err(|source| CniError::PluginExec {
        path: call.path.to_path_buf(),
        command: call.command,
        source,
    })?;
    let out = out.unwrap_or_default();
    let err = err.unwrap_or_default();
    if !err.is_empty() {
        tracing::debug!(
            plugin = call.plugin,
            command = %call.command,
            stderr = %excerpt(&err),
            "CNI plugin stderr"
        );
    }
    if status.success() {
        return Ok(out);
    }
    Err(failure(&call, status, &out, &err))
}

async fn read_all<R: AsyncRead + Unpin>(pipe: Option<R>) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    pipe?.take(MAX_OUTPUT).read_to_end(&mut buf).await.ok()?;
    Some(buf)
}

fn failure(call: &PluginCall<'_>, status: ExitStatus, out: &[u8], err: &[u8]) -> CniError {
    if let Ok(e) = serde_json::from_slice::<PluginError>(out) {
        return CniError::Plugin {
            plugin: call.plugin.to_string(),
            command: call.command,
            code: e.code,
            msg: e.msg,
            details: e.details,
        };
    }
    CniError::PluginOutput {
        plugin: call.plugin.to_string(),
        command: call.command,
        reason: format!("{status} without a CNI error on stdout"),
        output: excerpt(if out.trim_ascii().is_empty() {
            err
        } else {
            out
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("plugin");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// `run`, retried while the kernel says "text file busy": another test thread may fork while
    /// a script is being written, and its child holds the write fd until it execs.
    async fn run(call: PluginCall<'_>) -> Result<Vec<u8>, CniError> {
        for _ in 0..100 {
            match super::run(call).await {
                Err(CniError::PluginExec { source, .. })
                    if source.raw_os_error() == Some(libc::ETXTBSY) =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => return other,
            }
        }
        super::run(call).await
    }

    fn call<'a>(path: &'a Path, env: &'a [(String, String)], timeout: Duration) -> PluginCall<'a> {
        PluginCall {
            path,
            plugin: "plugin",
            command: Command::Add,
            env,
            stdin: b"{\"hello\":1}",
            timeout,
        }
    }

    #[tokio::test]
    async fn passes_stdin_and_env_and_returns_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), r#"printf '%s|' "$CNI_COMMAND" "$HOME"; cat"#);
        let env = vec![("CNI_COMMAND".to_string(), "ADD".to_string())];
        let out = run(call(&path, &env, Duration::from_secs(10)))
            .await
            .unwrap();
        assert_eq!(out, b"ADD||{\"hello\":1}");
    }

    #[tokio::test]
    async fn reports_cni_errors_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            r#"echo '{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"later"}'; exit 1"#,
        );
        let err = run(call(&path, &[], Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CniError::Plugin { code: 11, msg, .. } if msg == "busy"),
            "{err}"
        );
        let path = script(dir.path(), "echo oops >&2; exit 3");
        let err = run(call(&path, &[], Duration::from_secs(10)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CniError::PluginOutput { output, .. } if output == "oops"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn kills_the_whole_group_on_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The grandchild holds stdout open: without a group kill, the read would never finish.
        let path = script(
            dir.path(),
            &format!("(sleep 3; touch {}) & sleep 30", marker.display()),
        );
        let started = std::time::Instant::now();
        let err = run(call(&path, &[], Duration::from_millis(300)))
            .await
            .unwrap_err();
        assert!(matches!(err, CniError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(!marker.exists(), "the plugin's child outlived the timeout");
    }
}
