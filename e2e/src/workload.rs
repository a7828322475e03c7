//! Helpers for the stats and events tests: a berthd that removes its pods when a test fails (a
//! CPU burner or memory hog left running would disturb every later test on the host), the stats
//! RPCs, GetContainerEvents streams, and single values of `/metrics`.

use std::collections::HashMap;
use std::ops::Deref;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use tonic::Status;
use tonic::codec::Streaming;

use crate::Berthd;

/// A [`Berthd`] for one test. [`Rig::finish`] is `Berthd::finish` (stop, leak check); if the test
/// panics before it, dropping the rig stops and removes every pod (and so their containers and
/// monitors) before berthd is killed, then keeps the test dir and log as `Berthd` does.
pub struct Rig {
    berthd: Option<Berthd>,
}

impl Rig {
    pub async fn start(name: &str) -> Rig {
        let berthd = Berthd::start(name).await.expect("starting berthd");
        Rig {
            berthd: Some(berthd),
        }
    }

    /// Stops berthd, which must exit 0, and asserts nothing is left behind.
    pub fn finish(mut self) {
        if let Some(berthd) = self.berthd.take() {
            berthd.finish();
        }
    }
}

impl Deref for Rig {
    type Target = Berthd;

    fn deref(&self) -> &Berthd {
        self.berthd.as_ref().expect("berthd already finished")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let Some(berthd) = self.berthd.take() else {
            return;
        };
        // Only a failed test gets here. Its runtime may be the one unwinding, so the cleanup runs
        // on a runtime of its own, on a thread of its own.
        std::thread::scope(|s| {
            s.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(rt) => rt.block_on(async {
                        let cleanup = remove_all_pods(&berthd);
                        if tokio::time::timeout(Duration::from_secs(60), cleanup)
                            .await
                            .is_err()
                        {
                            eprintln!("cleanup of {}: timed out removing pods", berthd.name);
                        }
                    }),
                    Err(e) => eprintln!("cleanup of {}: no runtime: {e}", berthd.name),
                }
            });
        });
    }
}

async fn remove_all_pods(berthd: &Berthd) {
    let Ok(mut rt) = berthd.runtime().await else {
        return;
    };
    let pods = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items)
        .unwrap_or_default();
    for pod in pods {
        let stopped = rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await;
        let removed = rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await;
        if let Err(e) = stopped.and(removed) {
            eprintln!("cleanup of {}: pod {}: {e:?}", berthd.name, pod.id);
        }
    }
}

/// `key=value` pairs as a label map.
pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A ListContainerStats filter; empty strings match everything.
pub fn stats_filter(
    id: &str,
    pod: &str,
    selector: &[(&str, &str)],
) -> Option<cri::ContainerStatsFilter> {
    Some(cri::ContainerStatsFilter {
        id: id.to_string(),
        pod_sandbox_id: pod.to_string(),
        label_selector: labels(selector),
    })
}

/// A ListPodSandboxStats filter; an empty id matches every pod.
pub fn pod_filter(id: &str, selector: &[(&str, &str)]) -> Option<cri::PodSandboxStatsFilter> {
    Some(cri::PodSandboxStatsFilter {
        id: id.to_string(),
        label_selector: labels(selector),
    })
}

/// User plus system CPU time of one process, in nanoseconds (`/proc/<pid>/stat`, clock ticks).
// sysconf(_SC_CLK_TCK) to turn clock ticks into nanoseconds.
#[allow(unsafe_code)]
pub fn process_cpu_ns(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // After `pid (comm) `: state is field 3, utime and stime are fields 14 and 15.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = after
        .split(' ')
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("utime/stime"))
        .collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    (fields[0] + fields[1]) * 1_000_000_000 / ticks
}

/// The value of an optional CRI `UInt64Value`.
pub fn value(v: &Option<cri::UInt64Value>) -> Option<u64> {
    v.as_ref().map(|v| v.value)
}

pub async fn container_stats(berthd: &Berthd, id: &str) -> Result<cri::ContainerStats, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    let response = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.to_string(),
        })
        .await?
        .into_inner();
    Ok(response
        .stats
        .expect("ContainerStats answered without stats"))
}

pub async fn list_container_stats(
    berthd: &Berthd,
    filter: Option<cri::ContainerStatsFilter>,
) -> Vec<cri::ContainerStats> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.list_container_stats(cri::ListContainerStatsRequest { filter })
        .await
        .expect("ListContainerStats")
        .into_inner()
        .stats
}

fn sorted(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.collect();
    ids.sort();
    ids
}

/// The container ids of `stats`, sorted.
pub fn container_ids(stats: &[cri::ContainerStats]) -> Vec<String> {
    sorted(stats.iter().map(|s| {
        s.attributes
            .as_ref()
            .map(|a| a.id.clone())
            .unwrap_or_default()
    }))
}

pub async fn pod_stats(berthd: &Berthd, id: &str) -> Result<cri::PodSandboxStats, Status> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    let response = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await?
        .into_inner();
    Ok(response
        .stats
        .expect("PodSandboxStats answered without stats"))
}

pub async fn list_pod_stats(
    berthd: &Berthd,
    filter: Option<cri::PodSandboxStatsFilter>,
) -> Vec<cri::PodSandboxStats> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest { filter })
        .await
        .expect("ListPodSandboxStats")
        .into_inner()
        .stats
}

/// The pod ids of `stats`, sorted.
pub fn pod_ids(stats: &[cri::PodSandboxStats]) -> Vec<String> {
    sorted(stats.iter().map(|s| {
        s.attributes
            .as_ref()
            .map(|a| a.id.clone())
            .unwrap_or_default()
    }))
}

/// ImageFsInfo's image filesystem: (mountpoint, used bytes).
pub async fn image_fs(berthd: &Berthd) -> (String, u64) {
    let mut images = berthd.images().await.expect("image client");
    let response = images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    let fs = response
        .image_filesystems
        .first()
        .unwrap_or_else(|| panic!("ImageFsInfo has no image filesystem: {response:?}"));
    let mountpoint = fs.fs_id.as_ref().map(|f| f.mountpoint.clone());
    (
        mountpoint.unwrap_or_default(),
        value(&fs.used_bytes).unwrap_or_default(),
    )
}

/// A GetContainerEvents stream; berthd has subscribed it when this returns.
pub async fn container_events(berthd: &Berthd) -> Streaming<cri::ContainerEventResponse> {
    let mut rt = berthd.runtime().await.expect("runtime client");
    rt.get_container_events(cri::GetEventsRequest {})
        .await
        .expect("GetContainerEvents")
        .into_inner()
}

/// The next event of `stream`, failing after `timeout` or if the stream ends or errs.
pub async fn next_event(
    stream: &mut Streaming<cri::ContainerEventResponse>,
    timeout: Duration,
) -> cri::ContainerEventResponse {
    match tokio::time::timeout(timeout, stream.message()).await {
        Ok(Ok(Some(event))) => event,
        Ok(Ok(None)) => panic!("the event stream ended"),
        Ok(Err(e)) => panic!("the event stream failed: {e:?}"),
        Err(_) => panic!("no container event within {timeout:?}"),
    }
}

/// The value of an unlabelled series (`name value`) in a `/metrics` text.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        (parts.next()? == name).then_some(())?;
        parts.next()?.parse().ok()
    })
}
