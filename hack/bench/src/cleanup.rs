//! `berth-bench cleanup`: stop and remove every container and pod sandbox of a runtime through
//! the CRI, so that its network teardown runs. Only for bench-private runtimes.

use anyhow::{Result, bail};
use clap::Args;

use crate::client::{self, Clients};

#[derive(Args, Debug)]
pub struct CleanupArgs {
    #[arg(long)]
    pub endpoint: String,
    /// Per-call timeout in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub call_timeout: f64,
}

pub async fn run(a: CleanupArgs) -> Result<bool> {
    use berth_cri_api::v1::{
        ListContainersRequest, ListPodSandboxRequest, RemoveContainerRequest,
        RemovePodSandboxRequest, StopContainerRequest, StopPodSandboxRequest,
    };
    let timeout = crate::secs(a.call_timeout, "--call-timeout")?;
    let channel = client::connect(&a.endpoint, timeout).await?;
    let mut c = Clients::new(channel);
    let unimplemented = |s: &tonic::Status| s.code() == tonic::Code::Unimplemented;
    let mut ok = true;
    let (mut containers, mut pods) = (0, 0);
    match c
        .runtime
        .list_containers(ListContainersRequest { filter: None })
        .await
    {
        Ok(r) => {
            for ctr in r.into_inner().containers {
                let id = ctr.id;
                let stop = c
                    .runtime
                    .stop_container(StopContainerRequest {
                        container_id: id.clone(),
                        timeout: 0,
                    })
                    .await;
                let rm = c
                    .runtime
                    .remove_container(RemoveContainerRequest {
                        container_id: id.clone(),
                    })
                    .await;
                if let Err(e) = stop.and(rm) {
                    eprintln!("cleanup: container {id}: {e}");
                    ok = false;
                } else {
                    containers += 1;
                }
            }
        }
        Err(e) if unimplemented(&e) => {}
        Err(e) => bail!("ListContainers: {e}"),
    }
    match c
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
    {
        Ok(r) => {
            for pod in r.into_inner().items {
                let id = pod.id;
                let stop = c
                    .runtime
                    .stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                let rm = c
                    .runtime
                    .remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                if let Err(e) = stop.and(rm) {
                    eprintln!("cleanup: pod sandbox {id}: {e}");
                    ok = false;
                } else {
                    pods += 1;
                }
            }
        }
        Err(e) if unimplemented(&e) => {}
        Err(e) => bail!("ListPodSandbox: {e}"),
    }
    eprintln!(
        "cleanup: removed {containers} container(s) and {pods} pod sandbox(es) from {}",
        a.endpoint
    );
    Ok(ok)
}
