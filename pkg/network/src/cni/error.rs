//! Errors of the CNI runtime.
//!
//! The variants are split by who can fix the problem, because the CRI layer maps them to gRPC codes:
//! configuration problems are the node admin's (FailedPrecondition), bad requests are the caller's
//! (InvalidArgument), plugin failures and timeouts are the network's (Internal/DeadlineExceeded), and
//! a missing network namespace means the sandbox is gone (NotFound).

use std::path::PathBuf;
use std::time::Duration;

use crate::cni::Command;

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// No file in the conf dir is usable; `reason` says what was wrong with each one, since the admin
    /// only sees this message in the NetworkReady condition or a failed RunPodSandbox.
    #[error("no usable CNI network configuration in {}: {reason}", conf_dir.display())]
    NoConfig { conf_dir: PathBuf, reason: String },
    /// A configuration given explicitly (a file, or the copy persisted with a pod network) is invalid.
    #[error("invalid CNI network configuration {origin}: {reason}")]
    InvalidConfig { origin: String, reason: String },
    /// A configuration file could not be read.
    #[error("invalid CNI network configuration {}: {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin:?} not found in {}", display_dirs(bin_dirs))]
    PluginNotFound {
        plugin: String,
        bin_dirs: Vec<PathBuf>,
    },
    /// The request cannot be expressed to a plugin (e.g. a `;` in a pod name would forge CNI_ARGS).
    #[error("invalid pod network request: {0}")]
    InvalidRequest(String),
    /// ADD and CHECK need the namespace; DEL does not (it passes an empty CNI_NETNS instead).
    #[error("network namespace {} does not exist", path.display())]
    NetnsMissing { path: PathBuf },
    /// The plugin ran and reported a CNI error (spec section "Error"); `code` 1-99 are the spec's
    /// well-known codes (e.g. 1 incompatible version, 7 invalid network config, 11 try again later).
    #[error(
        "CNI plugin {plugin:?} failed {command}: code {code}: {msg}{}",
        details_suffix(details)
    )]
    Plugin {
        plugin: String,
        command: Command,
        code: u32,
        msg: String,
        details: String,
    },
    /// The plugin exited unsuccessfully without a parsable CNI error, or printed something that is
    /// not a result; `output` is an excerpt of what it printed (stderr when stdout was empty).
    #[error("CNI plugin {plugin:?} failed {command}: {reason}: {output}")]
    PluginOutput {
        plugin: String,
        command: Command,
        reason: String,
        output: String,
    },
    #[error("running CNI plugin {} for {command}: {source}", path.display())]
    PluginExec {
        path: PathBuf,
        command: Command,
        #[source]
        source: std::io::Error,
    },
    /// The plugin (and everything it started) was killed after the per-call timeout.
    #[error("CNI plugin {plugin:?} timed out after {timeout:?} during {command}")]
    Timeout {
        plugin: String,
        command: Command,
        timeout: Duration,
    },
    /// A plugin does not support the network's cniVersion (found by a VERSION query before it ran).
    #[error(
        "CNI plugin {plugin:?} does not support cniVersion {version} (it supports {supported:?})"
    )]
    IncompatibleVersion {
        plugin: String,
        version: String,
        supported: Vec<String>,
    },
    /// DEL calls every plugin even after one failed, so that one broken plugin does not leak what
    /// the others hold (IPs, iptables rules); this carries every failure, in call order.
    #[error("CNI DEL failed: {}", join_errors(errors))]
    Teardown { errors: Vec<CniError> },
}

fn display_dirs(dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!("[{}]", dirs.join(", "))
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

fn join_errors(errors: &[CniError]) -> String {
    let parts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    parts.join("; ")
}

/// Plugin output echoed in an error is cut short: messages travel in gRPC headers and kubelet events.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 512;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], bytes.len()),
        None => text.to_string(),
    }
}
