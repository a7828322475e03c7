//! `container-stop-timeout`: stopping a container whose process ignores SIGTERM.
//!
//! In one pod made in setup (`runp`'s config), each iteration creates and starts a container
//! running [`IGNORING_SCRIPT`] (`trap '' TERM`: the shell and its `sleep` ignore SIGTERM), waits
//! (untimed) until the shell has forked its `sleep`, then times StopContainer with a timeout of
//! [`TIMEOUT_SECS`] (the runtime sends SIGTERM, waits the timeout, then SIGKILLs) and
//! RemoveContainer. Besides the raw rows, `StopContainer - 2s` and `Stop+Remove - 2s` are the
//! same samples minus the timeout: what the runtime adds to the grace period it must wait.

use std::time::Duration;

use anyhow::Result;
use berth_cri_api::v1 as cri;

use super::containers::{CREATE, REMOVE, START, STOP, discard_container};
use super::in_pod::{OnePod, stop_timed};
use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

/// The containers' command: ignore SIGTERM (inherited by the `sleep`), sleep forever.
pub const IGNORING_SCRIPT: &str = "trap '' TERM; while :; do sleep 3600 & wait $!; done";

/// StopContainer's timeout, in seconds.
pub const TIMEOUT_SECS: i64 = 2;

const STOP_OVER: &str = "StopContainer - 2s";
const STOP_REMOVE_OVER: &str = "Stop+Remove - 2s";

pub struct StopTimeout {
    pod: OnePod,
}

impl StopTimeout {
    pub fn new(opts: &WorkloadOpts) -> StopTimeout {
        StopTimeout {
            pod: OnePod::new(opts),
        }
    }
}

/// Make a container of the run ignore SIGTERM (same marker scheme as `container`'s).
fn ignore_sigterm(config: &mut cri::ContainerConfig) {
    if let Some(script) = config.command.get_mut(2) {
        *script = IGNORING_SCRIPT.to_string();
    }
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
        Box::pin(self.pod.setup(clients))
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let (name, mut config) = self.pod.container(iter);
            ignore_sigterm(&mut config);
            let skip = [START, STOP, REMOVE, STOP_OVER, STOP_REMOVE_OVER];
            let Some(id) = self.pod.create(clients, rec, config, &skip).await else {
                return;
            };
            // Once ready, the shell runs its script (and ignores SIGTERM).
            let skip = [STOP, STOP_OVER, STOP_REMOVE_OVER];
            if !self
                .pod
                .start_until_trapped(clients, rec, &id, &name, &skip)
                .await
            {
                return;
            }
            let skip = [STOP_OVER, STOP_REMOVE_OVER];
            let Some(t0) = stop_timed(clients, rec, &id, TIMEOUT_SECS, &skip).await else {
                return;
            };
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
        Box::pin(self.pod.teardown(clients))
    }
}

#[cfg(test)]
mod tests {
    use super::super::containers::container_config;
    use super::*;

    #[test]
    fn config_ignores_sigterm_and_keeps_the_marker() {
        let mut c = container_config("run1", "img", "c-1");
        ignore_sigterm(&mut c);
        assert_eq!(c.command[..3], ["sh", "-c", IGNORING_SCRIPT]);
        assert_eq!(c.command[3], "berth-bench-run1-c-1");
        assert_eq!(
            over_timeout(Duration::from_millis(2_004)),
            Some(Duration::from_millis(4))
        );
        assert_eq!(over_timeout(Duration::from_millis(1_999)), None);
    }
}
