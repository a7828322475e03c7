//! Steps shared by the workloads whose containers all run in one pod made in setup
//! (`container`, `container-seccomp`, `container-floor`, `container-later`,
//! `container-stop-timeout`), and the untimed setup steps of a pod and a container.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use berth_cri_api::v1 as cri;

use super::containers::{
    CREATE, READY_TIMEOUT, REMOVE, STOP, STOP_TIMEOUT_SECS, container_config, create_recorded,
    create_request, discard_container, marker, prepare, start_recorded, wait_trap_installed,
};
use super::pods::{pod_config, remove_run, run_id, run_request};
use super::{Recorder, WorkloadOpts};
use crate::client::Clients;

/// Setup, untimed: pull `image` and make the log directory ([`prepare`]), then RunPodSandbox
/// of the run's pod (`runp`'s config); the pod's (id, config).
pub(super) async fn run_setup_pod(
    clients: &mut Clients,
    run_id: &str,
    image: &str,
) -> Result<(String, cri::PodSandboxConfig)> {
    prepare(clients, run_id, image).await?;
    let config = pod_config(run_id, 0, 0);
    let id = clients
        .runtime
        .run_pod_sandbox(run_request(config.clone()))
        .await
        .context("RunPodSandbox of the workload's pod")?
        .into_inner()
        .pod_sandbox_id;
    Ok((id, config))
}

/// Setup, untimed: CreateContainer and StartContainer of `config` in a pod; the container's id.
/// `what` names the container in errors.
pub(super) async fn create_start_untimed(
    clients: &mut Clients,
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
    what: &str,
) -> Result<String> {
    let id = clients
        .runtime
        .create_container(create_request(pod_id, pod, config))
        .await
        .with_context(|| format!("CreateContainer of {what}"))?
        .into_inner()
        .container_id;
    clients
        .runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .with_context(|| format!("StartContainer of {what}"))?;
    Ok(id)
}

/// A run's image and the one pod its iterations put their containers in.
pub(super) struct OnePod {
    pub(super) run_id: String,
    pub(super) image: String,
    /// The pod made in setup: (id, config).
    pod: Mutex<Option<(String, cri::PodSandboxConfig)>>,
}

impl OnePod {
    pub(super) fn new(opts: &WorkloadOpts) -> OnePod {
        OnePod {
            run_id: run_id(),
            image: opts.container_image.clone(),
            pod: Mutex::new(None),
        }
    }

    pub(super) fn get(&self) -> Option<(String, cri::PodSandboxConfig)> {
        self.pod.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Setup: [`run_setup_pod`], the pod remembered for the iterations.
    pub(super) async fn setup(&self, clients: &mut Clients) -> Result<()> {
        let pod = run_setup_pod(clients, &self.run_id, &self.image).await?;
        *self.pod.lock().unwrap_or_else(|e| e.into_inner()) = Some(pod);
        Ok(())
    }

    /// Teardown: everything of the run goes.
    pub(super) async fn teardown(&self, clients: &mut Clients) -> Result<()> {
        remove_run(clients, &self.run_id).await
    }

    /// Iteration `iter`'s container: its name and [`container_config`].
    pub(super) fn container(&self, iter: u64) -> (String, cri::ContainerConfig) {
        let name = format!("c-{iter}");
        let config = container_config(&self.run_id, &self.image, &name);
        (name, config)
    }

    /// CreateContainer (recorded) of `config` in the pod; the container's id. `None` when there
    /// is no pod (a CreateContainer failure) or CreateContainer failed (then `skip` are
    /// recorded as skipped).
    pub(super) async fn create(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        config: cri::ContainerConfig,
        skip: &[&'static str],
    ) -> Option<String> {
        let Some((pod_id, pod)) = self.get() else {
            rec.fail(CREATE, "no pod (setup failed)");
            return None;
        };
        let id = create_recorded(clients, rec, &pod_id, &pod, config).await;
        if id.is_none() {
            rec.skipped(skip);
        }
        id
    }

    /// StartContainer (recorded) of the container `name` of the run, then wait (untimed) until
    /// its shell has installed its trap. `false`, with the container discarded, when
    /// StartContainer failed (then `skip` are recorded as skipped) or the shell did not get
    /// ready (a StopContainer failure).
    pub(super) async fn start_until_trapped(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        id: &str,
        name: &str,
        skip: &[&'static str],
    ) -> bool {
        if !start_recorded(clients, rec, id).await {
            rec.skipped(skip);
            discard_container(clients, id).await;
            return false;
        }
        let marker = marker(&self.run_id, name);
        if let Err(e) = wait_trap_installed(&marker, READY_TIMEOUT).await {
            rec.fail(STOP, format!("not stopped: {e:#}"));
            discard_container(clients, id).await;
            return false;
        }
        true
    }

    /// `container`'s steps after CreateContainer: [`OnePod::start_until_trapped`], then
    /// [`stop_remove_in_grace`].
    pub(super) async fn start_stop_remove(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        id: String,
        name: &str,
    ) {
        if self
            .start_until_trapped(clients, rec, &id, name, &[STOP])
            .await
        {
            stop_remove_in_grace(clients, rec, id).await;
        }
    }
}

/// StopContainer (recorded) with `timeout` seconds; the instant just before the call. `None`,
/// with the container discarded, when it failed (then `skip` are recorded as skipped).
pub(super) async fn stop_timed(
    clients: &mut Clients,
    rec: &mut Recorder,
    id: &str,
    timeout: i64,
    skip: &[&'static str],
) -> Option<Instant> {
    let stop = cri::StopContainerRequest {
        container_id: id.to_string(),
        timeout,
    };
    let t0 = Instant::now();
    if rec
        .call(STOP, clients.runtime.stop_container(stop))
        .await
        .is_none()
    {
        rec.skipped(skip);
        discard_container(clients, id).await;
        return None;
    }
    Some(t0)
}

/// StopContainer with [`STOP_TIMEOUT_SECS`] (a failure too when it took the whole grace
/// period), then RemoveContainer; each recorded. A failed stop discards the container.
pub(super) async fn stop_remove_in_grace(clients: &mut Clients, rec: &mut Recorder, id: String) {
    let Some(stop_start) = stop_timed(clients, rec, &id, STOP_TIMEOUT_SECS, &[]).await else {
        return;
    };
    if stop_start.elapsed() >= Duration::from_secs(STOP_TIMEOUT_SECS as u64) {
        rec.fail(
            STOP,
            "took the whole grace period: SIGTERM did not end the container",
        );
    }
    let remove = cri::RemoveContainerRequest { container_id: id };
    rec.call(REMOVE, clients.runtime.remove_container(remove))
        .await;
}
