//! StartContainer against the OCI runtime's floor, for a pod's first container and a later one.
//!
//! * `container-floor`: `container`'s iteration (CreateContainer, StartContainer, StopContainer
//!   with timeout 10 s, RemoveContainer, in one pod made in setup: each container is its pod's
//!   only one, so for Berth every StartContainer starts the pod's berth-monitor and every
//!   RemoveContainer sees it go), plus, between CreateContainer and StartContainer, the floor: a
//!   bare `runc run --detach` of a copy of the same bundle ([`super::floor`]), deleted again
//!   (untimed) before StartContainer.
//! * `container-later`: the same in a pod whose first container (`keeper`, started in setup)
//!   keeps running, so the pod's per-pod processes (berth-monitor; containerd's shim) already
//!   exist: the cost of a pod's later container.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_cri::v1 as cri;

use super::containers::{
    CREATE, READY_TIMEOUT, REMOVE, START, STOP, STOP_TIMEOUT_SECS, container_config,
    create_request, discard_container, marker, prepare, wait_trap_installed,
};
use super::floor::{FLOOR, Floor};
use super::pods::{pod_config, remove_run, run_id, run_request};
use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

/// The long-running first container of `container-later`'s pod.
const KEEPER: &str = "keeper";

pub struct StartFloor {
    run_id: String,
    image: String,
    /// `container-later`: the pod keeps a running container.
    later: bool,
    /// The pod made in setup: (id, config).
    pod: Mutex<Option<(String, cri::PodSandboxConfig)>>,
    floor: Floor,
}

impl StartFloor {
    pub fn new(opts: &WorkloadOpts, later: bool) -> StartFloor {
        let run_id = run_id();
        StartFloor {
            floor: Floor::new(&run_id),
            run_id,
            image: opts.container_image.clone(),
            later,
            pod: Mutex::new(None),
        }
    }

    fn pod(&self) -> Option<(String, cri::PodSandboxConfig)> {
        self.pod.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `container-later`: create and start the keeper, and wait until its shell runs.
    async fn start_keeper(
        &self,
        clients: &mut Clients,
        pod_id: &str,
        pod: &cri::PodSandboxConfig,
    ) -> Result<()> {
        let config = container_config(&self.run_id, &self.image, KEEPER);
        let id = clients
            .runtime
            .create_container(create_request(pod_id, pod, config))
            .await
            .context("CreateContainer of the keeper")?
            .into_inner()
            .container_id;
        clients
            .runtime
            .start_container(cri::StartContainerRequest { container_id: id })
            .await
            .context("StartContainer of the keeper")?;
        wait_trap_installed(&marker(&self.run_id, KEEPER), READY_TIMEOUT)
            .await
            .context("the keeper container")
    }
}

impl Workload for StartFloor {
    fn name(&self) -> &'static str {
        if self.later {
            "container-later"
        } else {
            "container-floor"
        }
    }

    fn ops(&self) -> &'static [&'static str] {
        &[CREATE, START, FLOOR, STOP, REMOVE]
    }

    fn concurrency(&self) -> Option<usize> {
        // One pod; `later` is about exactly one other container in it.
        Some(1)
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            prepare(clients, &self.run_id, &self.image).await?;
            let config = pod_config(&self.run_id, 0, 0);
            let id = clients
                .runtime
                .run_pod_sandbox(run_request(config.clone()))
                .await
                .context("RunPodSandbox of the workload's pod")?
                .into_inner()
                .pod_sandbox_id;
            *self.pod.lock().unwrap_or_else(|e| e.into_inner()) =
                Some((id.clone(), config.clone()));
            if self.later {
                self.start_keeper(clients, &id, &config).await?;
            }
            Ok(())
        })
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let Some((pod_id, pod)) = self.pod() else {
                rec.fail(CREATE, "no pod (setup failed)");
                return;
            };
            let name = format!("c-{iter}");
            let config = container_config(&self.run_id, &self.image, &name);
            let req = create_request(&pod_id, &pod, config);
            let Some(resp) = rec
                .call(CREATE, clients.runtime.create_container(req))
                .await
            else {
                rec.skipped(&[START, FLOOR, STOP, REMOVE]);
                return;
            };
            let id = resp.container_id;
            // The floor: same bundle, same rootfs, before the CRI container ever ran; its
            // container is deleted again before StartContainer.
            self.floor.measure(clients, rec, &id, iter).await;
            let start = cri::StartContainerRequest {
                container_id: id.clone(),
            };
            if rec
                .call(START, clients.runtime.start_container(start))
                .await
                .is_none()
            {
                rec.skipped(&[STOP]);
                discard_container(clients, &id).await;
                return;
            }
            if let Err(e) = wait_trap_installed(&marker(&self.run_id, &name), READY_TIMEOUT).await {
                rec.fail(STOP, format!("not stopped: {e:#}"));
                discard_container(clients, &id).await;
                return;
            }
            let stop = cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: STOP_TIMEOUT_SECS,
            };
            let stop_start = Instant::now();
            if rec
                .call(STOP, clients.runtime.stop_container(stop))
                .await
                .is_none()
            {
                discard_container(clients, &id).await;
                return;
            }
            if stop_start.elapsed() >= Duration::from_secs(STOP_TIMEOUT_SECS as u64) {
                rec.fail(
                    STOP,
                    "took the whole grace period: SIGTERM did not end the container",
                );
            }
            let remove = cri::RemoveContainerRequest { container_id: id };
            rec.call(REMOVE, clients.runtime.remove_container(remove))
                .await;
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            // Floor containers first (they are in the pod's namespaces and below its cgroup).
            let floor = self.floor.teardown().await;
            let run = remove_run(clients, &self.run_id).await;
            match (floor, run) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(e), Ok(())) => Err(e.context("floor containers")),
                (Ok(()), Err(e)) => Err(e),
                (Err(f), Err(e)) => bail!("{e:#}; floor containers: {f:#}"),
            }
        })
    }
}
