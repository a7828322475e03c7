//! The `stats` workload's population: pods of up to `per_pod` running containers, grown to a
//! target and torn down with [`PARALLEL`] pods at a time (as kubelet's pod workers do; it only
//! shortens the untimed parts on a 2-CPU machine). Within a pod, containers are made one after
//! the other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use anyhow::{Context, Result};
use berth_cri_api::v1 as cri;

use super::containers::{container_config, create_request};
use super::pods::run_request;
use crate::client::Clients;

/// Pods grown or removed at the same time.
pub const PARALLEL: usize = 3;

/// Progress is printed every this many containers made.
const PROGRESS_EVERY: usize = 50;

/// One pod: its config is recorded before RunPodSandbox, its id once it answered.
pub struct PodEntry {
    pub id: Option<String>,
    pub config: cri::PodSandboxConfig,
    pub containers: Vec<String>,
}

#[derive(Default)]
pub struct Population {
    pub pods: Vec<PodEntry>,
}

impl Population {
    pub fn containers(&self) -> usize {
        self.pods.iter().map(|p| p.containers.len()).sum()
    }

    pub fn container_ids(&self) -> Vec<String> {
        self.pods
            .iter()
            .flat_map(|p| p.containers.iter().cloned())
            .collect()
    }

    pub fn pod_ids(&self) -> Vec<String> {
        self.pods.iter().filter_map(|p| p.id.clone()).collect()
    }

    pub fn configs(&self) -> Vec<cri::PodSandboxConfig> {
        self.pods.iter().map(|p| p.config.clone()).collect()
    }

    /// What to make to reach `target` containers: (pod index, containers to add), filling the
    /// last pod first; new pods are appended (config from `config_of(index)`, no id yet).
    fn plan(
        &mut self,
        target: usize,
        per_pod: usize,
        config_of: impl Fn(usize) -> cri::PodSandboxConfig,
    ) -> Vec<(usize, usize)> {
        let per_pod = per_pod.max(1);
        let mut missing = target.saturating_sub(self.containers());
        let mut jobs = Vec::new();
        if let Some((i, last)) = self.pods.iter().enumerate().next_back() {
            let room = per_pod.saturating_sub(last.containers.len()).min(missing);
            if room > 0 {
                jobs.push((i, room));
                missing -= room;
            }
        }
        while missing > 0 {
            let index = self.pods.len();
            self.pods.push(PodEntry {
                id: None,
                config: config_of(index),
                containers: Vec::new(),
            });
            let add = per_pod.min(missing);
            jobs.push((index, add));
            missing -= add;
        }
        jobs
    }
}

/// What the containers are made of, and whose progress is printed.
pub struct Spec {
    pub run_id: String,
    pub image: String,
    pub label: String,
    pub per_pod: usize,
}

type Shared = Arc<Mutex<Population>>;

fn lock(p: &Shared) -> MutexGuard<'_, Population> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

struct Progress {
    made: AtomicUsize,
    target: usize,
    t0: Instant,
}

/// Deal `items` round-robin to `n` lists.
fn deal<T>(items: Vec<T>, n: usize) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..n.max(1)).map(|_| Vec::new()).collect();
    let len = out.len();
    for (i, item) in items.into_iter().enumerate() {
        out[i % len].push(item);
    }
    out.retain(|v| !v.is_empty());
    out
}

async fn grow_pods(
    mut clients: Clients,
    pop: Shared,
    spec: Arc<Spec>,
    progress: Arc<Progress>,
    jobs: Vec<(usize, usize)>,
) -> Result<()> {
    for (index, add) in jobs {
        let (id, config) = {
            let p = lock(&pop);
            (p.pods[index].id.clone(), p.pods[index].config.clone())
        };
        let pod_id = match id {
            Some(id) => id,
            None => {
                let id = clients
                    .runtime
                    .run_pod_sandbox(run_request(config.clone()))
                    .await
                    .with_context(|| format!("RunPodSandbox of pod {}", index + 1))?
                    .into_inner()
                    .pod_sandbox_id;
                lock(&pop).pods[index].id = Some(id.clone());
                id
            }
        };
        for _ in 0..add {
            let name = format!("s-{index}-{}", lock(&pop).pods[index].containers.len());
            let req = create_request(
                &pod_id,
                &config,
                container_config(&spec.run_id, &spec.image, &name),
            );
            let id = clients
                .runtime
                .create_container(req)
                .await
                .with_context(|| format!("CreateContainer {name}"))?
                .into_inner()
                .container_id;
            lock(&pop).pods[index].containers.push(id.clone());
            clients
                .runtime
                .start_container(cri::StartContainerRequest { container_id: id })
                .await
                .with_context(|| format!("StartContainer {name}"))?;
            let made = progress.made.fetch_add(1, Ordering::Relaxed) + 1;
            if made.is_multiple_of(PROGRESS_EVERY) || made == progress.target {
                eprintln!(
                    "berth-bench: {} stats: {made}/{} containers running ({:.1}s)",
                    spec.label,
                    progress.target,
                    progress.t0.elapsed().as_secs_f64()
                );
            }
        }
    }
    Ok(())
}

/// Untimed: create and start containers (and pods) until `target` containers run.
pub async fn grow(
    pop: &Shared,
    clients: &Clients,
    spec: &Arc<Spec>,
    target: usize,
    config_of: impl Fn(usize) -> cri::PodSandboxConfig,
) -> Result<()> {
    let (from, jobs) = {
        let mut p = lock(pop);
        (p.containers(), p.plan(target, spec.per_pod, config_of))
    };
    if jobs.is_empty() {
        return Ok(());
    }
    eprintln!(
        "berth-bench: {} stats: growing from {from} to {target} containers, {PARALLEL} pods at a time",
        spec.label
    );
    let progress = Arc::new(Progress {
        made: AtomicUsize::new(from),
        target,
        t0: Instant::now(),
    });
    let mut set = tokio::task::JoinSet::new();
    for jobs in deal(jobs, PARALLEL) {
        set.spawn(grow_pods(
            clients.clone(),
            Arc::clone(pop),
            Arc::clone(spec),
            Arc::clone(&progress),
            jobs,
        ));
    }
    let mut first: Option<anyhow::Error> = None;
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined.context("growing task panicked").and_then(|r| r) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

async fn remove_pods(mut clients: Clients, pods: Vec<(Option<String>, Vec<String>)>) -> Result<()> {
    let mut first: Option<anyhow::Error> = None;
    let mut keep = |e: anyhow::Error| {
        first.get_or_insert(e);
    };
    for (pod, containers) in pods {
        for id in containers {
            let stop = clients
                .runtime
                .stop_container(cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: 0,
                })
                .await;
            let remove = clients
                .runtime
                .remove_container(cri::RemoveContainerRequest {
                    container_id: id.clone(),
                })
                .await;
            if let Err(e) = stop.and(remove) {
                keep(anyhow::anyhow!("removing container {id}: {e}"));
            }
        }
        let Some(id) = pod else { continue };
        let stop = clients
            .runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        let remove = clients
            .runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.clone(),
            })
            .await;
        if let Err(e) = stop.and(remove) {
            keep(anyhow::anyhow!("removing pod {id}: {e}"));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Stop and remove every container (SIGKILL) and then its pod, [`PARALLEL`] pods at a time; the
/// population is empty afterwards (a label sweep catches whatever a failed call left).
pub async fn remove(pop: &Shared, clients: &Clients) -> Result<()> {
    let pods: Vec<(Option<String>, Vec<String>)> = lock(pop)
        .pods
        .iter()
        .map(|p| (p.id.clone(), p.containers.clone()))
        .collect();
    let mut set = tokio::task::JoinSet::new();
    for pods in deal(pods, PARALLEL) {
        set.spawn(remove_pods(clients.clone(), pods));
    }
    let mut first: Option<anyhow::Error> = None;
    while let Some(joined) = set.join_next().await {
        if let Err(e) = joined.context("teardown task panicked").and_then(|r| r) {
            first.get_or_insert(e);
        }
    }
    for p in &mut lock(pop).pods {
        p.id = None;
        p.containers.clear();
    }
    first.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(i: usize) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            hostname: format!("p{i}"),
            ..Default::default()
        }
    }

    #[test]
    fn plan_fills_the_last_pod_then_adds_pods() {
        let mut p = Population::default();
        assert_eq!(p.plan(10, 10, config), [(0, 10)]);
        for _ in 0..10 {
            p.pods[0].containers.push("c".into());
        }
        assert_eq!(p.plan(35, 10, config), [(1, 10), (2, 10), (3, 5)]);
        assert_eq!(p.pods.len(), 4);
        assert_eq!(p.pods[3].config.hostname, "p3");
        for i in 1..4 {
            let n = if i == 3 { 5 } else { 10 };
            p.pods[i].containers.extend((0..n).map(|_| "c".to_string()));
        }
        assert_eq!(p.containers(), 35);
        assert_eq!(p.plan(42, 10, config), [(3, 5), (4, 2)]);
        assert_eq!(p.plan(3, 10, config), []);
    }

    #[test]
    fn deal_round_robin() {
        assert_eq!(
            deal(vec![1, 2, 3, 4, 5], 3),
            [vec![1, 4], vec![2, 5], vec![3]]
        );
        assert_eq!(deal(vec![1], 3), [vec![1]]);
        assert!(deal(Vec::<u8>::new(), 3).is_empty());
    }
}
