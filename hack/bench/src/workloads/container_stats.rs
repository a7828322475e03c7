//! `stats`: the cost of kubelet's CRI stats calls as the node fills up.
//!
//! The population grows in stages to each of `stats_sizes` (default 10, 100, 300) running
//! containers, `stats_pod_containers` (10) per pod: pods as `runp`'s (CNI network), containers as
//! `container`'s (busybox running [`SCRIPT`](super::containers::SCRIPT)); each pod has a pod
//! cgroup as kubelet gives it (see [`pod_cgroups`]). Growing is untimed, a few pods at a time,
//! with progress on stderr; then the runtime idles [`SETTLE`] and each iteration times
//!
//! * `ListContainerStats n=N`: ListContainerStats without a filter (what kubelet's CRI stats
//!   provider calls), at every stage;
//! * at the stage with [`DETAIL_SIZE`] containers (else the largest): `ContainerStats n=N` (one
//!   container, a different one each iteration) and, in one iteration in [`POD_STATS_EVERY`],
//!   `ListPodSandboxStats n=N` (no filter; N containers in N / 10 pods).
//!
//! Every answer is checked: each container (pod) of the run is in it, with CPU and memory usage;
//! a short or empty answer counts as an error. Teardown removes everything the run made. When
//! the runtime answers UNIMPLEMENTED to all three calls (probed in setup) no containers are made
//! and every row is reported unsupported.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use berth_cri_api::v1 as cri;

use super::containers::prepare;
use super::pods::{pod_config, remove_run, run_id};
use super::stats_population::{self as population, Population, Spec};
use super::{BoxFut, Recorder, ScalingOp, Workload, WorkloadOpts, pod_cgroups};
use crate::client::Clients;

/// Idle time after growing the population, before the stage's warm-up.
const SETTLE: Duration = Duration::from_secs(1);

/// The population at which ContainerStats and ListPodSandboxStats are measured.
pub const DETAIL_SIZE: usize = 100;

/// ListPodSandboxStats is called in one iteration in this many (~2 s per call for containerd
/// with 10 pods of 10 containers on the 2-CPU VM).
pub const POD_STATS_EVERY: u64 = 10;

/// A container id that no runtime has (the setup's probe of ContainerStats).
const NO_SUCH_CONTAINER: &str = "berth-bench-no-such-container";

/// What the current stage measures against, taken when it begins.
#[derive(Default)]
struct Stage {
    index: usize,
    containers: Arc<Vec<String>>,
    container_set: Arc<HashSet<String>>,
    pod_set: Arc<HashSet<String>>,
    /// All three calls are UNIMPLEMENTED: make nothing.
    unsupported: bool,
}

pub struct Stats {
    spec: Arc<Spec>,
    sizes: Vec<usize>,
    detail_stage: usize,
    list_ops: Vec<&'static str>,
    container_op: &'static str,
    pod_op: &'static str,
    ops: &'static [&'static str],
    population: Arc<Mutex<Population>>,
    stage: Mutex<Stage>,
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Ascending, without duplicates; the default sizes when none are given.
fn normalize_sizes(sizes: &[usize]) -> Vec<usize> {
    let mut v = sizes.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.is_empty() {
        v = WorkloadOpts::default().stats_sizes;
    }
    v
}

/// The stage of `DETAIL_SIZE` containers, else the last (largest).
fn detail_stage(sizes: &[usize]) -> usize {
    sizes
        .iter()
        .position(|&n| n == DETAIL_SIZE)
        .unwrap_or(sizes.len().saturating_sub(1))
}

/// Every container of the run is in the answer, with CPU and memory usage.
fn check_containers(stats: &[cri::ContainerStats], ours: &HashSet<String>) -> Result<(), String> {
    let (mut seen, mut incomplete) = (0, 0);
    for s in stats {
        if s.attributes.as_ref().is_some_and(|a| ours.contains(&a.id)) {
            seen += 1;
            if s.cpu.is_none() || s.memory.is_none() {
                incomplete += 1;
            }
        }
    }
    if seen != ours.len() {
        return Err(format!(
            "{seen} of the run's {} containers in the answer ({} entries)",
            ours.len(),
            stats.len()
        ));
    }
    if incomplete > 0 {
        return Err(format!(
            "{incomplete} of {seen} entries without CPU or memory usage"
        ));
    }
    Ok(())
}

/// Every pod of the run is in the answer, with Linux CPU and memory usage.
fn check_pods(stats: &[cri::PodSandboxStats], ours: &HashSet<String>) -> Result<(), String> {
    let (mut seen, mut incomplete) = (0, 0);
    for s in stats {
        if s.attributes.as_ref().is_some_and(|a| ours.contains(&a.id)) {
            seen += 1;
            if s.linux
                .as_ref()
                .is_none_or(|l| l.cpu.is_none() || l.memory.is_none())
            {
                incomplete += 1;
            }
        }
    }
    if seen != ours.len() {
        return Err(format!(
            "{seen} of the run's {} pods in the answer ({} entries)",
            ours.len(),
            stats.len()
        ));
    }
    if incomplete > 0 {
        return Err(format!(
            "{incomplete} of {seen} pods without Linux CPU or memory usage"
        ));
    }
    Ok(())
}

fn is_unimplemented<T>(r: &Result<T, tonic::Status>) -> bool {
    matches!(r, Err(s) if s.code() == tonic::Code::Unimplemented)
}

impl Stats {
    pub fn new(opts: &WorkloadOpts) -> Stats {
        let sizes = normalize_sizes(&opts.stats_sizes);
        let detail_stage = detail_stage(&sizes);
        let list_ops: Vec<&'static str> = sizes
            .iter()
            .map(|n| leak(format!("ListContainerStats n={n}")))
            .collect();
        let container_op = leak(format!("ContainerStats n={}", sizes[detail_stage]));
        let pod_op = leak(format!("ListPodSandboxStats n={}", sizes[detail_stage]));
        let mut ops = list_ops.clone();
        ops.extend([container_op, pod_op]);
        Stats {
            spec: Arc::new(Spec {
                run_id: run_id(),
                image: opts.container_image.clone(),
                label: opts.label.clone(),
                per_pod: opts.stats_pod_containers.max(1),
            }),
            sizes,
            detail_stage,
            list_ops,
            container_op,
            pod_op,
            ops: Box::leak(ops.into_boxed_slice()),
            population: Arc::default(),
            stage: Mutex::default(),
        }
    }

    fn stage(&self) -> std::sync::MutexGuard<'_, Stage> {
        self.stage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn population(&self) -> std::sync::MutexGuard<'_, Population> {
        self.population.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn progress(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("berth-bench: {} stats: {msg}", self.spec.label);
    }

    /// Untimed: whether the runtime answers UNIMPLEMENTED to all three calls.
    async fn all_unimplemented(clients: &mut Clients) -> bool {
        let list = clients
            .runtime
            .list_container_stats(cri::ListContainerStatsRequest { filter: None })
            .await;
        let one = clients
            .runtime
            .container_stats(cri::ContainerStatsRequest {
                container_id: NO_SUCH_CONTAINER.into(),
            })
            .await;
        let pods = clients
            .runtime
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter: None })
            .await;
        is_unimplemented(&list) && is_unimplemented(&one) && is_unimplemented(&pods)
    }

    async fn list_containers(&self, clients: &mut Clients, rec: &mut Recorder, stage: usize) {
        let op = self.list_ops[stage];
        let ours = Arc::clone(&self.stage().container_set);
        let req = cri::ListContainerStatsRequest { filter: None };
        if let Some(resp) = rec
            .call(op, clients.runtime.list_container_stats(req))
            .await
            && let Err(msg) = check_containers(&resp.stats, &ours)
        {
            rec.fail(op, msg);
        }
    }

    async fn one_container(&self, clients: &mut Clients, rec: &mut Recorder, iter: u64) {
        let op = self.container_op;
        let id = {
            let ids = Arc::clone(&self.stage().containers);
            match ids.len() as u64 {
                0 => NO_SUCH_CONTAINER.to_string(),
                // Below ids.len(), so it fits.
                n => ids[usize::try_from(iter % n).unwrap_or(0)].clone(),
            }
        };
        let req = cri::ContainerStatsRequest {
            container_id: id.clone(),
        };
        if let Some(resp) = rec.call(op, clients.runtime.container_stats(req)).await {
            let one: HashSet<String> = HashSet::from([id]);
            let stats: Vec<cri::ContainerStats> = resp.stats.into_iter().collect();
            if let Err(msg) = check_containers(&stats, &one) {
                rec.fail(op, msg);
            }
        }
    }

    async fn list_pods(&self, clients: &mut Clients, rec: &mut Recorder) {
        let op = self.pod_op;
        let ours = Arc::clone(&self.stage().pod_set);
        let req = cri::ListPodSandboxStatsRequest { filter: None };
        if let Some(resp) = rec
            .call(op, clients.runtime.list_pod_sandbox_stats(req))
            .await
            && let Err(msg) = check_pods(&resp.stats, &ours)
        {
            rec.fail(op, msg);
        }
    }
}

impl Workload for Stats {
    fn name(&self) -> &'static str {
        "stats"
    }

    fn ops(&self) -> &'static [&'static str] {
        self.ops
    }

    fn setup<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            if Self::all_unimplemented(clients).await {
                self.progress(format_args!(
                    "ListContainerStats, ContainerStats and ListPodSandboxStats are all \
                     UNIMPLEMENTED: no containers made, every row unsupported"
                ));
                self.stage().unsupported = true;
                return Ok(());
            }
            prepare(clients, &self.spec.run_id, &self.spec.image).await
        })
    }

    fn stages(&self) -> usize {
        self.sizes.len()
    }

    fn enter_stage<'a>(&'a self, clients: &'a mut Clients, stage: usize) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            let target = self.sizes[stage];
            let unsupported = self.stage().unsupported;
            if !unsupported {
                let before = self.population().containers();
                let run_id = self.spec.run_id.clone();
                population::grow(&self.population, clients, &self.spec, target, |i| {
                    pod_cgroups::with_cgroup_parent(pod_config(&run_id, 0, i))
                })
                .await?;
                if self.population().containers() != before {
                    tokio::time::sleep(SETTLE).await;
                }
            }
            let (containers, pods) = {
                let p = self.population();
                (p.container_ids(), p.pod_ids())
            };
            if !unsupported && containers.len() != target {
                bail!("{} containers instead of {target}", containers.len());
            }
            {
                let mut st = self.stage();
                st.index = stage;
                st.container_set = Arc::new(containers.iter().cloned().collect());
                st.containers = Arc::new(containers);
                st.pod_set = Arc::new(pods.into_iter().collect());
            }
            self.progress(format_args!("measuring with {target} containers"));
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
            let stage = self.stage().index;
            self.list_containers(clients, rec, stage).await;
            if stage == self.detail_stage {
                self.one_container(clients, rec, iter).await;
                if iter.is_multiple_of(POD_STATS_EVERY) {
                    self.list_pods(clients, rec).await;
                }
            }
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(async move {
            let (containers, pods, configs) = {
                let p = self.population();
                (p.containers(), p.pod_ids().len(), p.configs())
            };
            let t0 = Instant::now();
            if containers + pods > 0 {
                self.progress(format_args!(
                    "removing {containers} containers and {pods} pods, {} pods at a time",
                    population::PARALLEL
                ));
            }
            let mut res = population::remove(&self.population, clients).await;
            // Whatever a failed call left (by label), then the pod cgroups runc left.
            res = res.and(remove_run(clients, &self.spec.run_id).await);
            if let Err(e) = pod_cgroups::remove(&configs) {
                res = res.and(Err(anyhow::anyhow!(e)));
            }
            if containers + pods > 0 {
                self.progress(format_args!(
                    "removed in {:.1}s",
                    t0.elapsed().as_secs_f64()
                ));
            }
            res
        })
    }

    fn scaling(&self) -> Vec<ScalingOp> {
        self.sizes
            .iter()
            .zip(&self.list_ops)
            .map(|(&n, &op)| ScalingOp {
                op,
                series: "ListContainerStats",
                n: n as u64,
                item: "container",
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(id: &str, complete: bool) -> cri::ContainerStats {
        cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: id.into(),
                ..Default::default()
            }),
            cpu: complete.then(Default::default),
            memory: complete.then(Default::default),
            ..Default::default()
        }
    }

    #[test]
    fn sizes_and_ops() {
        assert_eq!(normalize_sizes(&[300, 10, 100, 10]), [10, 100, 300]);
        assert_eq!(normalize_sizes(&[]), [10, 100, 300]);
        assert_eq!(detail_stage(&[10, 100, 300]), 1);
        assert_eq!(detail_stage(&[2, 5]), 1);
        let w = Stats::new(&WorkloadOpts::default());
        assert_eq!(
            w.ops(),
            [
                "ListContainerStats n=10",
                "ListContainerStats n=100",
                "ListContainerStats n=300",
                "ContainerStats n=100",
                "ListPodSandboxStats n=100"
            ]
        );
        assert_eq!(w.stages(), 3);
        let s = w.scaling();
        assert_eq!((s[2].op, s[2].n), ("ListContainerStats n=300", 300));
    }

    #[test]
    fn container_answers_are_checked() {
        let ours: HashSet<String> = ["a", "b"].into_iter().map(String::from).collect();
        let all = [stats("a", true), stats("b", true), stats("other", false)];
        assert_eq!(check_containers(&all, &ours), Ok(()));
        let short = check_containers(&all[..1], &ours).unwrap_err();
        assert!(short.contains("1 of the run's 2"), "{short}");
        let partial = check_containers(&[stats("a", true), stats("b", false)], &ours).unwrap_err();
        assert!(partial.contains("without CPU or memory"), "{partial}");
    }

    #[test]
    fn pod_answers_are_checked() {
        let pod = |id: &str, linux: bool| cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: id.into(),
                ..Default::default()
            }),
            linux: linux.then(|| cri::LinuxPodSandboxStats {
                cpu: Some(Default::default()),
                memory: Some(Default::default()),
                ..Default::default()
            }),
            windows: None,
        };
        let ours: HashSet<String> = HashSet::from(["p".to_string()]);
        assert_eq!(check_pods(&[pod("p", true)], &ours), Ok(()));
        assert!(check_pods(&[pod("p", false)], &ours).is_err());
        assert!(check_pods(&[pod("q", true)], &ours).is_err());
    }
}
