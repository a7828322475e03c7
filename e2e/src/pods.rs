//! Helpers for pod sandbox tests: configs kubelet would send, and looking inside pods with
//! `nsenter` on their pinned namespace files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;

use berth_cri_api::v1 as cri;

use crate::Berthd;

/// The pod cgroup parent every test's pods share, as kubelet's pods share `/kubepods/burstable`.
pub const CGROUP_PARENT: &str = "berth-e2e.kubepods";

/// A pod config as kubelet sends it for a plain pod: own network, IPC and UTS, PID per container,
/// a pod cgroup named after the test (so the leak check finds it if it stays) under a parent all
/// tests share, as kubelet's pods share `/kubepods/burstable`.
pub fn pod_config(berthd: &Berthd, name: &str) -> cri::PodSandboxConfig {
    let uid = format!("{}-{name}", berthd.test_id());
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: uid.clone(),
            namespace: "e2e".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: berthd
            .dir
            .join("logs")
            .join(name)
            .to_string_lossy()
            .into_owned(),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        annotations: HashMap::from([("e2e/test".to_string(), berthd.name.clone())]),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: format!("/{CGROUP_PARENT}/pod-{uid}"),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod's namespace options, to change a mode.
pub fn namespace_options(config: &mut cri::PodSandboxConfig) -> &mut cri::NamespaceOption {
    config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default)
}

pub async fn run_pod(
    berthd: &Berthd,
    config: cri::PodSandboxConfig,
) -> Result<String, tonic::Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.run_pod_sandbox(cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    })
    .await
    .map(|r| r.into_inner().pod_sandbox_id)
}

pub async fn pod_status(
    berthd: &Berthd,
    id: &str,
) -> Result<cri::PodSandboxStatusResponse, tonic::Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.pod_sandbox_status(cri::PodSandboxStatusRequest {
        pod_sandbox_id: id.to_string(),
        verbose: true,
    })
    .await
    .map(|r| r.into_inner())
}

/// The verbose info's JSON.
pub async fn pod_info(berthd: &Berthd, id: &str) -> serde_json::Value {
    let status = pod_status(berthd, id).await.expect("PodSandboxStatus");
    serde_json::from_str(&status.info["info"]).expect("verbose info is JSON")
}

pub async fn pod_ip(berthd: &Berthd, id: &str) -> String {
    let status = pod_status(berthd, id).await.expect("PodSandboxStatus");
    status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default()
}

pub async fn stop_pod(berthd: &Berthd, id: &str) -> Result<(), tonic::Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .map(|_| ())
}

pub async fn remove_pod(berthd: &Berthd, id: &str) -> Result<(), tonic::Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    })
    .await
    .map(|_| ())
}

pub async fn list_pods(
    berthd: &Berthd,
    filter: Option<cri::PodSandboxFilter>,
) -> Vec<cri::PodSandbox> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.list_pod_sandbox(cri::ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
}

/// A pinned namespace file from the verbose info ("netns", "utsns", "ipcns").
pub fn ns_path(info: &serde_json::Value, key: &str) -> PathBuf {
    PathBuf::from(
        info[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {info}")),
    )
}

/// Runs a command inside namespaces with `nsenter` (e.g. `["--net=/x/net"]`); returns (ok, stdout+stderr).
pub fn nsenter(namespaces: &[String], command: &[&str]) -> (bool, String) {
    let out = Command::new("nsenter")
        .args(namespaces)
        .arg("--")
        .args(command)
        .output()
        .expect("nsenter");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

pub fn ping(from_netns: Option<&PathBuf>, ip: &str) -> bool {
    let ping = ["busybox", "ping", "-c", "1", "-W", "2", ip];
    match from_netns {
        Some(ns) => nsenter(&[format!("--net={}", ns.display())], &ping).0,
        None => Command::new(ping[0])
            .args(&ping[1..])
            .output()
            .is_ok_and(|o| o.status.success()),
    }
}
