//! The streaming RPCs against a test's berthd, and looking for exec processes on the host.

use std::time::Duration;

use berth_cri_api::v1 as cri;
use tonic::Status;

use super::StreamOptions;
use crate::Berthd;
use crate::containers::{gone, poll};

pub async fn exec_url(
    berthd: &Berthd,
    id: &str,
    cmd: &[&str],
    streams: StreamOptions,
) -> Result<String, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    super::cri::exec_url(&mut rt, id, cmd, streams).await
}

pub async fn attach_url(
    berthd: &Berthd,
    id: &str,
    streams: StreamOptions,
) -> Result<String, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    super::cri::attach_url(&mut rt, id, streams).await
}

pub async fn port_forward_url(
    berthd: &Berthd,
    pod_sandbox_id: &str,
    ports: &[i32],
) -> Result<String, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    super::cri::port_forward_url(&mut rt, pod_sandbox_id, ports).await
}

/// ExecSync with a timeout in seconds (0: none).
pub async fn exec_sync(
    berthd: &Berthd,
    id: &str,
    cmd: &[&str],
    timeout_secs: i64,
) -> Result<cri::ExecSyncResponse, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.exec_sync(cri::ExecSyncRequest {
        container_id: id.to_string(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: timeout_secs,
    })
    .await
    .map(|r| r.into_inner())
}

/// The live processes in the PID namespace of `pid` (a container's main process), other than
/// `pid` itself; (pid, command line).
pub fn processes_beside(pid: i32) -> Vec<(i32, String)> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in procs.filter_map(Result::ok) {
        let Ok(other) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // A killed background child is reparented to the container's PID 1, which (here `sleep`)
        // never reaps it: a zombie until the container goes, but not a running process.
        if other == pid || gone(other) || zombie(other) {
            continue;
        }
        if std::fs::read_link(entry.path().join("ns/pid"))
            .ok()
            .as_ref()
            != Some(&ns)
        {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .unwrap_or_default();
        found.push((other, cmdline.trim().to_string()));
    }
    found
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Waits until a process with exactly this command line runs beside `pid`; returns its pid.
pub async fn wait_for_process_beside(pid: i32, cmdline: &str, timeout: Duration) -> i32 {
    poll(
        timeout,
        &format!("a process {cmdline:?} beside {pid}"),
        async || {
            processes_beside(pid)
                .into_iter()
                .find(|(_, c)| c == cmdline)
                .map(|(p, _)| p)
        },
    )
    .await
}

/// Waits until nothing but `pid` is left in its PID namespace; panics listing what is.
pub async fn wait_alone(pid: i32, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let others = processes_beside(pid);
        if others.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "processes still beside container process {pid} after {timeout:?}: {others:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
