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

use anyhow::{Context, Result, bail};

use super::containers::{
    CREATE, READY_TIMEOUT, REMOVE, START, STOP, container_config, marker, wait_trap_installed,
};
use super::floor::{FLOOR, Floor};
use super::in_pod::{OnePod, create_start_untimed};
use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

/// The long-running first container of `container-later`'s pod.
const KEEPER: &str = "keeper";

pub struct StartFloor {
    /// `container-later`: the pod keeps a running container.
    later: bool,
    pod: OnePod,
    floor: Floor,
}

impl StartFloor {
    pub fn new(opts: &WorkloadOpts, later: bool) -> StartFloor {
        let pod = OnePod::new(opts);
        StartFloor {
            floor: Floor::new(&pod.run_id),
            later,
            pod,
        }
    }

    /// `container-later`: create and start the keeper, and wait until its shell runs.
    async fn start_keeper(&self, clients: &mut Clients) -> Result<()> {
        let (pod_id, pod) = self.pod.get().context("no pod for the keeper")?;
        let config = container_config(&self.pod.run_id, &self.pod.image, KEEPER);
        create_start_untimed(clients, &pod_id, &pod, config, "the keeper").await?;
        wait_trap_installed(&marker(&self.pod.run_id, KEEPER), READY_TIMEOUT)
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
            self.pod.setup(clients).await?;
            if self.later {
                self.start_keeper(clients).await?;
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
            let (name, config) = self.pod.container(iter);
            let skip = [START, FLOOR, STOP, REMOVE];
            let Some(id) = self.pod.create(clients, rec, config, &skip).await else {
                return;
            };
            // The floor: same bundle, same rootfs, before the CRI container ever ran; its
            // container is deleted again before StartContainer.
            self.floor.measure(clients, rec, &id, iter).await;
            self.pod.start_stop_remove(clients, rec, id, &name).await;
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            // Floor containers first (they are in the pod's namespaces and below its cgroup).
            let floor = self.floor.teardown().await;
            let run = self.pod.teardown(clients).await;
            match (floor, run) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(e), Ok(())) => Err(e.context("floor containers")),
                (Ok(()), Err(e)) => Err(e),
                (Err(f), Err(e)) => bail!("{e:#}; floor containers: {f:#}"),
            }
        })
    }
}
