//! `pod-memory`: what a running pod costs in memory, beyond its containers' own processes.
//!
//! Each iteration starts `memory_pods` pods (same config and CNI network as `runp`), each with one
//! running container ([`SCRIPT`](super::containers::SCRIPT)), idles `memory_settle`, and reads
//! from /proc the runtime's *helper* processes that appeared: processes whose comm is one of
//! `pod_process_names` (Berth: `berth-monitor`, `berth-init`; containerd: the
//! `containerd-shim-runc-v2` shims and their `pause` children), found below the daemon or below a
//! helper whose command line names the runtime (`cmdline_filter`). It reports per pod: the sum of
//! their VmRSS, the sum of their PSS (`/proc/PID/smaps_rollup`, shared pages divided among
//! sharers, which is what N pods really add), and the daemon's own RSS growth. The daemon itself
//! and the containers' processes (`sh`, `sleep`) are not counted. Then the pods go, and one pod
//! with `memory_containers` containers is measured the same way.
//!
//! Timed on the way: `pod+container` (RunPodSandbox + CreateContainer + StartContainer, one pod
//! at a time) and `teardown` (StopPodSandbox + RemovePodSandbox). The figures of the last
//! iteration are reported (use `-n 1 --warmup 0`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;

use super::containers::{container_config, prepare, start_container_running, stop_remove_pod};
use super::pods::{pod_config, remove_run, run_id, run_request};
use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;
use crate::report::MemoryRow;
use crate::rss::{self, ProcMem};
use crate::stats::fmt_kib;

pub struct PodMemory {
    run_id: String,
    image: String,
    pods: usize,
    containers: usize,
    settle: std::time::Duration,
    daemon_pids: Vec<u32>,
    names: Vec<String>,
    filter: Option<String>,
    rows: Mutex<Vec<MemoryRow>>,
}

/// Helper process names by runtime, when not given: containerd's shims and pause processes, or
/// Berth's monitors and pod init processes.
pub fn default_helper_names(runtime_name: Option<&str>) -> Vec<String> {
    let names: &[&str] = if runtime_name.is_some_and(|n| n.contains("containerd")) {
        &["containerd-shim-runc-v2", "pause"]
    } else {
        &["berth-monitor", "berth-init"]
    };
    names.iter().map(|s| s.to_string()).collect()
}

const POD_CONTAINER: &str = "pod+container";
const TEARDOWN: &str = "teardown";

/// The helpers that are new since `before`.
fn new_helpers(all: Vec<ProcMem>, before: &BTreeSet<u32>) -> Vec<ProcMem> {
    all.into_iter()
        .filter(|p| !before.contains(&p.pid))
        .collect()
}

/// "10x berth-monitor (avg 620 KiB RSS, 410 KiB PSS)", one entry per comm.
fn breakdown(procs: &[ProcMem]) -> String {
    let mut by: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new();
    for p in procs {
        let e = by.entry(&p.comm).or_default();
        e.0 += 1;
        e.1 += p.rss_kib;
        e.2 += p.pss_kib;
    }
    if by.is_empty() {
        return "no helper processes".into();
    }
    by.iter()
        .map(|(comm, (n, rss, pss))| {
            format!(
                "{n}x {comm} (avg {} RSS, {} PSS)",
                fmt_kib(rss / n),
                fmt_kib(pss / n)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn sum(procs: &[ProcMem], pick: fn(&ProcMem) -> u64) -> u64 {
    procs.iter().map(pick).sum()
}

impl PodMemory {
    pub fn new(opts: &WorkloadOpts) -> PodMemory {
        let names = if opts.pod_process_names.is_empty() {
            default_helper_names(opts.runtime_name.as_deref())
        } else {
            opts.pod_process_names.clone()
        };
        PodMemory {
            run_id: run_id(),
            image: opts.container_image.clone(),
            pods: opts.memory_pods.max(1),
            containers: opts.memory_containers,
            settle: opts.memory_settle,
            daemon_pids: opts.daemon_pids.clone(),
            names,
            filter: opts.cmdline_filter.clone(),
            rows: Mutex::new(Vec::new()),
        }
    }

    fn helpers(&self) -> Vec<ProcMem> {
        rss::helper_processes(&self.names, &self.daemon_pids, self.filter.as_deref())
    }

    fn helper_pids(&self) -> BTreeSet<u32> {
        self.helpers().into_iter().map(|p| p.pid).collect()
    }

    fn daemon_rss(&self) -> u64 {
        self.daemon_pids
            .iter()
            .filter_map(|&p| rss::rss_kib(p))
            .sum()
    }

    fn row(&self, what: &str) -> String {
        format!("pod-memory: {what}")
    }

    /// Rows for a measurement that did not happen.
    fn missing(&self, names: &[String], why: &str) -> Vec<MemoryRow> {
        names
            .iter()
            .map(|n| MemoryRow {
                name: n.clone(),
                kib: None,
                delta: false,
                note: Some(why.to_string()),
            })
            .collect()
    }

    fn pods_rows(&self) -> [String; 3] {
        let n = self.pods;
        [
            self.row(&format!("helpers RSS per pod ({n} pods)")),
            self.row(&format!("helpers PSS per pod ({n} pods)")),
            self.row(&format!("daemon RSS growth per pod ({n} pods)")),
        ]
    }

    fn multi_rows(&self) -> [String; 2] {
        let c = self.containers;
        [
            self.row(&format!("helpers RSS, 1 pod x {c} containers")),
            self.row(&format!("helpers PSS, 1 pod x {c} containers")),
        ]
    }

    /// Start one pod with `containers` running containers (index `index` of iteration `iter`);
    /// its id once the pod exists (also when a container failed: `ok` false).
    async fn start_pod(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        iter: u64,
        index: usize,
        containers: usize,
    ) -> (Option<String>, bool) {
        let pod = pod_config(&self.run_id, iter, index);
        let t0 = Instant::now();
        let Some(resp) = rec
            .call(
                "RunPodSandbox",
                clients.runtime.run_pod_sandbox(run_request(pod.clone())),
            )
            .await
        else {
            rec.sequence_failed(POD_CONTAINER, "RunPodSandbox failed");
            return (None, false);
        };
        let id = resp.pod_sandbox_id;
        for c in 0..containers {
            let name = format!("m-{iter}-{index}-{c}");
            let config = container_config(&self.run_id, &self.image, &name);
            if let Err(msg) = start_container_running(clients, rec, &id, &pod, config, false).await
            {
                rec.sequence_failed(POD_CONTAINER, msg);
                return (Some(id), false);
            }
        }
        if containers == 1 {
            rec.sample(POD_CONTAINER, t0.elapsed());
        }
        (Some(id), true)
    }

    async fn remove_pods(&self, clients: &mut Clients, rec: &mut Recorder, ids: &[String]) {
        for id in ids {
            let t = Instant::now();
            if stop_remove_pod(clients, rec, id).await {
                rec.sample(TEARDOWN, t.elapsed());
            } else {
                rec.sequence_failed(TEARDOWN, "StopPodSandbox/RemovePodSandbox failed");
            }
        }
    }

    /// N pods with one container each: the per-pod rows.
    async fn measure_pods(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        iter: u64,
    ) -> Vec<MemoryRow> {
        let names = self.pods_rows();
        let before = self.helper_pids();
        let daemon_before = self.daemon_rss();
        let mut ids = Vec::new();
        let mut failure = None;
        for index in 0..self.pods {
            let (id, ok) = self.start_pod(clients, rec, iter, index, 1).await;
            ids.extend(id);
            if !ok {
                failure = Some(if rec.last_was_unsupported() {
                    "unsupported"
                } else {
                    "failed"
                });
                break;
            }
        }
        let rows = match failure {
            Some(why) => self.missing(&names, why),
            None => {
                tokio::time::sleep(self.settle).await;
                let helpers = new_helpers(self.helpers(), &before);
                let daemon_after = self.daemon_rss();
                let n = self.pods as u64;
                let made_of = breakdown(&helpers);
                vec![
                    MemoryRow {
                        name: names[0].clone(),
                        kib: Some((sum(&helpers, |p| p.rss_kib) / n) as i64),
                        delta: false,
                        note: Some(made_of),
                    },
                    MemoryRow {
                        name: names[1].clone(),
                        kib: Some((sum(&helpers, |p| p.pss_kib) / n) as i64),
                        delta: false,
                        note: None,
                    },
                    MemoryRow {
                        name: names[2].clone(),
                        kib: Some((daemon_after as i64 - daemon_before as i64) / n as i64),
                        delta: true,
                        note: None,
                    },
                ]
            }
        };
        self.remove_pods(clients, rec, &ids).await;
        rows
    }

    /// One pod with `containers` containers: the helpers' totals.
    async fn measure_multi(
        &self,
        clients: &mut Clients,
        rec: &mut Recorder,
        iter: u64,
    ) -> Vec<MemoryRow> {
        let names = self.multi_rows();
        let before = self.helper_pids();
        let (id, ok) = self
            .start_pod(clients, rec, iter, self.pods, self.containers)
            .await;
        let rows = if !ok {
            let why = if rec.last_was_unsupported() {
                "unsupported"
            } else {
                "failed"
            };
            self.missing(&names, why)
        } else {
            tokio::time::sleep(self.settle).await;
            let helpers = new_helpers(self.helpers(), &before);
            vec![
                MemoryRow {
                    name: names[0].clone(),
                    kib: Some(sum(&helpers, |p| p.rss_kib) as i64),
                    delta: false,
                    note: Some(breakdown(&helpers)),
                },
                MemoryRow {
                    name: names[1].clone(),
                    kib: Some(sum(&helpers, |p| p.pss_kib) as i64),
                    delta: false,
                    note: None,
                },
            ]
        };
        let ids: Vec<String> = id.into_iter().collect();
        self.remove_pods(clients, rec, &ids).await;
        rows
    }
}

impl Workload for PodMemory {
    fn name(&self) -> &'static str {
        "pod-memory"
    }

    fn ops(&self) -> &'static [&'static str] {
        &[POD_CONTAINER, TEARDOWN]
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
            let mut rows = self.measure_pods(clients, rec, iter).await;
            if self.containers > 0 {
                rows.extend(self.measure_multi(clients, rec, iter).await);
            }
            *self.rows.lock().unwrap_or_else(|e| e.into_inner()) = rows;
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(remove_run(clients, &self.run_id))
    }

    fn memory(&self) -> Vec<MemoryRow> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: u32, comm: &str, rss: u64, pss: u64) -> ProcMem {
        ProcMem {
            pid,
            comm: comm.into(),
            rss_kib: rss,
            pss_kib: pss,
        }
    }

    #[test]
    fn breakdown_groups_by_comm() {
        let procs = [
            p(1, "containerd-shim", 10240, 8192),
            p(2, "pause", 512, 100),
            p(3, "containerd-shim", 10240, 8192),
            p(4, "pause", 512, 100),
        ];
        assert_eq!(
            breakdown(&procs),
            "2x containerd-shim (avg 10.0 MiB RSS, 8.0 MiB PSS), 2x pause (avg 512 KiB RSS, 100 KiB PSS)"
        );
        assert_eq!(breakdown(&[]), "no helper processes");
        let before: BTreeSet<u32> = [1, 2].into_iter().collect();
        let new: Vec<u32> = new_helpers(procs.to_vec(), &before)
            .iter()
            .map(|p| p.pid)
            .collect();
        assert_eq!(new, vec![3, 4]);
    }

    #[test]
    fn default_names_follow_the_runtime() {
        assert_eq!(
            default_helper_names(Some("containerd")),
            ["containerd-shim-runc-v2", "pause"]
        );
        assert_eq!(
            default_helper_names(Some("berth")),
            ["berth-monitor", "berth-init"]
        );
        assert_eq!(default_helper_names(None), ["berth-monitor", "berth-init"]);
    }
}
