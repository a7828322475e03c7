//! `container-stop-timeout`: stopping a container whose process ignores SIGTERM.
//!
//! In one pod made in setup (`runp`'s config), each iteration creates and starts a container
//! running [`IGNORING_SCRIPT`] (`trap '' TERM`: the shell and its `sleep` ignore SIGTERM), waits
//! (untimed) until the shell has forked its `sleep`, then times StopContainer with a timeout of
//! [`TIMEOUT_SECS`] (the runtime sends SIGTERM, waits the timeout, then SIGKILLs) and
//! RemoveContainer. Besides the raw rows, `StopContainer - 2s` and `Stop+Remove - 2s` are the
//! same samples minus the timeout: what the runtime adds to the grace period it must wait.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_cri::v1 as cri;

use super::containers::{
    CREATE, READY_TIMEOUT, REMOVE, START, STOP, container_config, create_request,
    discard_container, marker, prepare, wait_trap_installed,
};
use super::pods::{pod_config, remove_run, run_id, run_request};
use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

/// The containers' command: ignore SIGTERM (inherited by the `sleep`), sleep forever.
pub const IGNORING_SCRIPT: &str = "trap '' TERM; while :; do sleep 3600 & wait $!; done";

/// StopContainer's timeout, in seconds.
pub const TIMEOUT_SECS: i64 = 2;

const STOP_OVER: &str = "StopContainer - 2s";
const STOP_REMOVE_OVER: &str = "Stop+Remove - 2s";

pub struct StopTimeout {
    run_id: String,
    image: String,
    pod: Mutex<Option<(String, cri::PodSandboxConfig)>>,
}

impl StopTimeout {
    pub fn new(opts: &WorkloadOpts) -> StopTimeout {
        StopTimeout {
            run_id: run_id(),
            image: opts.container_image.clone(),
            pod: Mutex::new(None),
        }
    }

    fn pod(&self) -> Option<(String, cri::PodSandboxConfig)> {
        self.pod.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A container of the run that ignores SIGTERM (same marker scheme as `container`'s).
fn ignoring_config(run_id: &str, image: &str, name: &str) -> cri::ContainerConfig {
    let mut config = container_config(run_id, image, name);
    if let Some(script) = config.command.get_mut(2) {
        *script = IGNORING_SCRIPT.to_string();
    }
    config
}

/// How far past the timeout a stop took; `None` when it returned before the timeout (SIGTERM
/// was not ignored, or the runtime did not wait).
fn over_timeout(elapsed: Duration) -> Option<Duration> {
    elapsed.checked_sub(Duration::from_secs(TIMEOUT_SECS as u64))
}

impl Workload for StopTimeout {
    fn name(&self) -> &'static str {
        "container-stop-timeout"
    }

    fn ops(&self) -> &'static [&'static str] {
        &[CREATE, START, STOP, REMOVE, STOP_OVER, STOP_REMOVE_OVER]
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
            *self.pod.lock().unwrap_or_else(|e| e.into_inner()) = Some((id, config));
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
            let config = ignoring_config(&self.run_id, &self.image, &name);
            let req = create_request(&pod_id, &pod, config);
            let Some(resp) = rec
                .call(CREATE, clients.runtime.create_container(req))
                .await
            else {
                rec.skipped(&[START, STOP, REMOVE, STOP_OVER, STOP_REMOVE_OVER]);
                return;
            };
            let id = resp.container_id;
            let start = cri::StartContainerRequest {
                container_id: id.clone(),
            };
            if rec
                .call(START, clients.runtime.start_container(start))
                .await
                .is_none()
            {
                rec.skipped(&[STOP, STOP_OVER, STOP_REMOVE_OVER]);
                discard_container(clients, &id).await;
                return;
            }
            // The shell runs its script (and ignores SIGTERM) from here on.
            if let Err(e) = wait_trap_installed(&marker(&self.run_id, &name), READY_TIMEOUT).await {
                rec.fail(STOP, format!("not stopped: {e:#}"));
                discard_container(clients, &id).await;
                return;
            }
            let stop = cri::StopContainerRequest {
                container_id: id.clone(),
                timeout: TIMEOUT_SECS,
            };
            let t0 = Instant::now();
            if rec
                .call(STOP, clients.runtime.stop_container(stop))
                .await
                .is_none()
            {
                rec.skipped(&[STOP_OVER, STOP_REMOVE_OVER]);
                discard_container(clients, &id).await;
                return;
            }
            let stopped = t0.elapsed();
            let remove = cri::RemoveContainerRequest {
                container_id: id.clone(),
            };
            let removed = rec
                .call(REMOVE, clients.runtime.remove_container(remove))
                .await
                .is_some();
            let total = t0.elapsed();
            match over_timeout(stopped) {
                Some(over) => {
                    rec.sample(STOP_OVER, over);
                    if removed && let Some(over) = over_timeout(total) {
                        rec.sample(STOP_REMOVE_OVER, over);
                    }
                }
                None => {
                    let msg = format!(
                        "StopContainer returned after {stopped:?}, before its {TIMEOUT_SECS}s \
                         timeout: the process did not ignore SIGTERM or was not waited for"
                    );
                    rec.fail(STOP_OVER, msg.clone());
                    rec.fail(STOP_REMOVE_OVER, msg);
                }
            }
            if !removed {
                discard_container(clients, &id).await;
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(remove_run(clients, &self.run_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_ignores_sigterm_and_keeps_the_marker() {
        let c = ignoring_config("run1", "img", "c-1");
        assert_eq!(c.command[..3], ["sh", "-c", IGNORING_SCRIPT]);
        assert_eq!(c.command[3], "berth-bench-run1-c-1");
        assert_eq!(
            over_timeout(Duration::from_millis(2_004)),
            Some(Duration::from_millis(4))
        );
        assert_eq!(over_timeout(Duration::from_millis(1_999)), None);
    }
}
