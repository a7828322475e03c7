//! Pods with a container under load: many at a time, as kubelet's pod workers and `critest
//! -benchmark` (`podsNumberParallel`) make them.
//!
//! * `cycles-par4`, `cycles-par16`: pod+container cycles, 4 (16) at a time (the workload's own
//!   concurrency, whatever `--concurrency` says). One cycle: RunPodSandbox, CreateContainer,
//!   StartContainer, ContainerStatus until RUNNING, StopPodSandbox, RemovePodSandbox (which
//!   removes the pod's container, in both runtimes), timed as `cycle`; every call also on its own
//!   row. The rate table has the successful cycles per second of the measured phase's wall clock.
//! * `pod-container-burst`: `--burst-pods` (100) pods, each RunPodSandbox + CreateContainer +
//!   StartContainer + ContainerStatus until RUNNING, all started at once; timed from the first
//!   request until the last container is RUNNING (`pod+container xN`); `pod+container each` has
//!   the time from the burst's start until each pod's container was RUNNING. Then every pod is
//!   stopped and removed, untimed, [`TEARDOWN_PARALLEL`] at a time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use berth_cri_api::v1 as cri;

use super::containers::{
    CREATE, REMOVEP, RUNP, START, STATUS, STOPP, container_config, pod_with_container, prepare,
    stop_remove_pod,
};
use super::pods::{pod_config, remove_run, run_id};
use super::{BoxFut, RateOp, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

const CYCLE: &str = "cycle";

/// Pods a burst's untimed teardown stops and removes at a time.
pub const TEARDOWN_PARALLEL: usize = 4;

/// `cycles-parN`.
pub struct Cycles {
    run_id: String,
    image: String,
    parallel: usize,
}

impl Cycles {
    pub fn new(opts: &WorkloadOpts, parallel: usize) -> Cycles {
        Cycles {
            run_id: run_id(),
            image: opts.container_image.clone(),
            parallel,
        }
    }
}

impl Workload for Cycles {
    fn name(&self) -> &'static str {
        match self.parallel {
            4 => "cycles-par4",
            16 => "cycles-par16",
            _ => "cycles",
        }
    }

    fn ops(&self) -> &'static [&'static str] {
        &[CYCLE, RUNP, CREATE, START, STATUS, STOPP, REMOVEP]
    }

    fn concurrency(&self) -> Option<usize> {
        Some(self.parallel)
    }

    fn rate(&self) -> Option<RateOp> {
        Some(RateOp {
            op: CYCLE,
            unit: "cycles",
        })
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(prepare(clients, &self.run_id, &self.image))
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let pod = pod_config(&self.run_id, iter, 0);
            let container = container_config(&self.run_id, &self.image, &format!("c-{iter}"));
            let t0 = Instant::now();
            let (pod_id, running) = pod_with_container(clients, rec, pod, || container).await;
            let Some(pod_id) = pod_id else {
                rec.sequence_failed(CYCLE, "RunPodSandbox failed");
                return;
            };
            let removed = stop_remove_pod(clients, rec, &pod_id).await;
            match (running, removed) {
                (Ok(()), true) => rec.sample(CYCLE, t0.elapsed()),
                (Err(msg), _) => rec.sequence_failed(CYCLE, msg),
                (Ok(()), false) => {
                    rec.sequence_failed(CYCLE, "StopPodSandbox/RemovePodSandbox failed")
                }
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(remove_run(clients, &self.run_id))
    }
}

/// `pod-container-burst`.
pub struct PodContainerBurst {
    run_id: String,
    image: String,
    pods: usize,
    /// `pod+container x<pods>` (leaked once: op names are static).
    burst_op: &'static str,
    ops: &'static [&'static str],
}

const EACH: &str = "pod+container each";

impl PodContainerBurst {
    pub fn new(opts: &WorkloadOpts) -> PodContainerBurst {
        let pods = opts.burst_pods.max(1);
        let burst_op: &'static str = Box::leak(format!("pod+container x{pods}").into_boxed_str());
        let ops: &'static [&'static str] =
            Box::leak(vec![burst_op, EACH, RUNP, CREATE, START, STATUS].into_boxed_slice());
        PodContainerBurst {
            run_id: run_id(),
            image: opts.container_image.clone(),
            pods,
            burst_op,
            ops,
        }
    }
}

/// Stop and remove `ids`, `parallel` at a time, untimed; errors are left to the label sweep.
async fn remove_pods(clients: &Clients, ids: Vec<String>, parallel: usize) {
    let queue = Arc::new(Mutex::new(ids));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..parallel.max(1) {
        let queue = Arc::clone(&queue);
        let mut runtime = clients.runtime.clone();
        set.spawn(async move {
            loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(id) = next else { break };
                let _ = runtime
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await;
                let _ = runtime
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await;
            }
        });
    }
    while set.join_next().await.is_some() {}
}

impl Workload for PodContainerBurst {
    fn name(&self) -> &'static str {
        "pod-container-burst"
    }

    fn ops(&self) -> &'static [&'static str] {
        self.ops
    }

    fn concurrency(&self) -> Option<usize> {
        // The burst is the concurrency.
        Some(1)
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(prepare(clients, &self.run_id, &self.image))
    }

    fn iteration<'a>(
        &'a self,
        clients: &'a mut Clients,
        iter: u64,
        rec: &'a mut Recorder,
    ) -> BoxFut<'a, ()> {
        Box::pin(async move {
            let timeout = rec.call_timeout;
            let mut set = tokio::task::JoinSet::new();
            let t0 = Instant::now();
            for index in 0..self.pods {
                let mut clients = clients.clone();
                let pod = pod_config(&self.run_id, iter, index);
                let container =
                    container_config(&self.run_id, &self.image, &format!("c-{iter}-{index}"));
                set.spawn(async move {
                    let mut rec = Recorder::new(timeout);
                    let (pod_id, running) =
                        pod_with_container(&mut clients, &mut rec, pod, || container).await;
                    let at = t0.elapsed();
                    (rec, pod_id, running.map(|()| at))
                });
            }
            let mut pods = Vec::new();
            let mut each: Vec<Duration> = Vec::new();
            let mut first_error: Option<String> = None;
            let mut unsupported = false;
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok((task_rec, pod_id, running)) => {
                        unsupported |= task_rec.last_was_unsupported();
                        rec.merge(task_rec);
                        pods.extend(pod_id);
                        match running {
                            Ok(at) => each.push(at),
                            Err(msg) => {
                                first_error.get_or_insert(msg);
                            }
                        }
                    }
                    Err(e) => {
                        first_error.get_or_insert(format!("pod task failed: {e}"));
                    }
                }
            }
            let all = t0.elapsed();
            for at in each {
                rec.sample(EACH, at);
            }
            match first_error {
                None => rec.sample(self.burst_op, all),
                Some(_) if unsupported => rec.unsupported(self.burst_op),
                Some(msg) => rec.fail(self.burst_op, format!("not every pod ran: {msg}")),
            }
            // Untimed: the burst's pods go (with their containers) before the next iteration.
            remove_pods(clients, pods, TEARDOWN_PARALLEL).await;
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
    fn burst_op_names_the_pod_count() {
        let opts = WorkloadOpts {
            burst_pods: 7,
            ..Default::default()
        };
        let w = PodContainerBurst::new(&opts);
        assert_eq!(w.ops()[0], "pod+container x7");
        assert_eq!(w.ops()[1], EACH);
        let c = Cycles::new(&opts, 16);
        assert_eq!((c.name(), c.concurrency()), ("cycles-par16", Some(16)));
        assert_eq!(c.rate().map(|r| r.op), Some(CYCLE));
    }
}
