//! Pod workloads: what kubelet does to start and tear down pods (no containers).
//!
//! * `runp`: RunPodSandbox, then StopPodSandbox and RemovePodSandbox, each timed. Pods get a
//!   name unique to the run and iteration, own network/IPC/UTS namespaces and the runtime's CNI
//!   network, like a plain kubelet pod.
//! * `runp-burst`: `BURST` pods created at once (kubelet starting a node's pods after a reboot),
//!   timed as one operation until the last one is ready; then all stopped and removed, untimed.

use std::collections::HashMap;

use anyhow::Result;
use berth_cri_api::v1 as cri;

use super::{BoxFut, Recorder, Workload};
use crate::client::Clients;

/// How many pods `runp-burst` starts at once.
pub const BURST: usize = 50;

/// Pods' log directories are `LOG_ROOT/<run id>` (removed by the workloads' teardown).
pub const LOG_ROOT: &str = "/var/tmp/berth-bench/logs";

/// The label every pod and container of a run carries: `berth-bench=<run id>`.
pub const RUN_LABEL: &str = "berth-bench";

pub(super) fn log_directory(run_id: &str) -> String {
    format!("{LOG_ROOT}/{run_id}")
}

pub(super) fn pod_config(run_id: &str, iter: u64, index: usize) -> cri::PodSandboxConfig {
    let name = format!("bench-{iter}-{index}");
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.clone(),
            uid: format!("{run_id}-{iter}-{index}"),
            namespace: "berth-bench".into(),
            attempt: 0,
        }),
        hostname: name,
        log_directory: log_directory(run_id),
        labels: HashMap::from([(RUN_LABEL.into(), run_id.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig {
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

pub(super) fn run_request(config: cri::PodSandboxConfig) -> cri::RunPodSandboxRequest {
    cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    }
}

/// A per-run id for pod names and uids, so reruns never collide with leftovers.
pub(super) fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{:08x}", nanos ^ std::process::id())
}

pub struct RunPod {
    run_id: String,
}

impl RunPod {
    pub fn new() -> RunPod {
        RunPod { run_id: run_id() }
    }
}

impl Workload for RunPod {
    fn name(&self) -> &'static str {
        "runp"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"]
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let req = run_request(pod_config(&self.run_id, iter, 0));
            let Some(resp) = rec
                .call("RunPodSandbox", clients.runtime.run_pod_sandbox(req))
                .await
            else {
                return;
            };
            let id = resp.pod_sandbox_id;
            let stop = cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            };
            rec.call("StopPodSandbox", clients.runtime.stop_pod_sandbox(stop))
                .await;
            let remove = cri::RemovePodSandboxRequest { pod_sandbox_id: id };
            rec.call(
                "RemovePodSandbox",
                clients.runtime.remove_pod_sandbox(remove),
            )
            .await;
        })
    }
    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        // Whatever an error left behind.
        Box::pin(remove_run(clients, &self.run_id))
    }
}

pub struct RunPodBurst {
    run_id: String,
}

impl RunPodBurst {
    pub fn new() -> RunPodBurst {
        RunPodBurst { run_id: run_id() }
    }
}

impl Workload for RunPodBurst {
    fn name(&self) -> &'static str {
        "runp-burst"
    }

    fn ops(&self) -> &'static [&'static str] {
        &["RunPodSandbox x50"]
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let mut set = tokio::task::JoinSet::new();
            for index in 0..BURST {
                let mut runtime = clients.runtime.clone();
                let req = run_request(pod_config(&self.run_id, iter, index));
                set.spawn(async move { runtime.run_pod_sandbox(req).await });
            }
            let all = async move {
                let mut ids = Vec::new();
                let mut first_error = None;
                while let Some(joined) = set.join_next().await {
                    match joined {
                        Ok(Ok(resp)) => ids.push(resp.into_inner().pod_sandbox_id),
                        Ok(Err(status)) => {
                            first_error.get_or_insert(status);
                        }
                        Err(e) => {
                            first_error.get_or_insert(tonic::Status::internal(e.to_string()));
                        }
                    }
                }
                (ids, first_error)
            };
            let mut created = Vec::new();
            rec.call("RunPodSandbox x50", async {
                let (ids, error) = all.await;
                created = ids;
                match error {
                    Some(status) => Err(status),
                    None => Ok(tonic::Response::new(())),
                }
            })
            .await;
            for id in created {
                let _ = clients
                    .runtime
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                let _ = clients
                    .runtime
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await;
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        // Whatever an error left behind.
        Box::pin(remove_run(clients, &self.run_id))
    }
}

/// Stop and remove every container and pod sandbox labelled with `run_id` (containers first, so
/// that the runtime's network teardown runs while the pods' namespaces exist), and the run's log
/// directory. Goes on after a failure; returns the first one. An UNIMPLEMENTED container listing
/// is not a failure (the runtime has no containers then).
pub(super) async fn remove_run(clients: &mut Clients, run_id: &str) -> Result<()> {
    let selector = HashMap::from([(RUN_LABEL.to_string(), run_id.to_string())]);
    let mut first: Option<anyhow::Error> = None;
    let mut keep = |e: anyhow::Error| {
        first.get_or_insert(e);
    };
    let containers = clients
        .runtime
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        })
        .await;
    match containers {
        Ok(list) => {
            for c in list.into_inner().containers {
                let id = c.id;
                if let Err(e) = clients
                    .runtime
                    .stop_container(cri::StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 0,
                    })
                    .await
                {
                    keep(anyhow::anyhow!("StopContainer {id}: {e}"));
                }
                if let Err(e) = clients
                    .runtime
                    .remove_container(cri::RemoveContainerRequest {
                        container_id: id.clone(),
                    })
                    .await
                {
                    keep(anyhow::anyhow!("RemoveContainer {id}: {e}"));
                }
            }
        }
        Err(s) if s.code() == tonic::Code::Unimplemented => {}
        Err(s) => keep(anyhow::anyhow!("ListContainers: {s}")),
    }
    let pods = clients
        .runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await;
    match pods {
        Ok(list) => {
            for pod in list.into_inner().items {
                let id = pod.id;
                if let Err(e) = clients
                    .runtime
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await
                {
                    keep(anyhow::anyhow!("StopPodSandbox {id}: {e}"));
                }
                if let Err(e) = clients
                    .runtime
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await
                {
                    keep(anyhow::anyhow!("RemovePodSandbox {id}: {e}"));
                }
            }
        }
        Err(s) => keep(anyhow::anyhow!("ListPodSandbox: {s}")),
    }
    match std::fs::remove_dir_all(log_directory(run_id)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => keep(anyhow::anyhow!("removing {}: {e}", log_directory(run_id))),
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
