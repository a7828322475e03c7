//! The pods' monitors: one berth-monitor per pod with started containers, spawned with the first
//! one, found again after a berthd restart, and reaped when it exits after its last container.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_monitor_api::{Exit, Monitor, MonitorError, proto};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::ContainerError;
use crate::seams::{BoxFuture, MonitorConn, PodMonitors};

/// How much of the sandbox ID names the monitor's directory: unix socket paths are limited to
/// 108 bytes, and 128 bits are as unique as the full ID in practice.
const DIR_ID_LEN: usize = 32;

pub(crate) struct Monitors {
    binary: PathBuf,
    dir: PathBuf,
    pods: std::sync::Mutex<HashMap<String, Arc<PodMonitor>>>,
}

/// One pod's monitor, locked per pod: spawning one pod's monitor (milliseconds: a process, and a
/// cgroup migration per hierarchy) never holds up another pod's.
#[derive(Default)]
struct PodMonitor {
    /// The monitor, once spawned or found. Locked while it is spawned, so a start waits for a
    /// spawn already in flight (CreateContainer begins one) instead of making a second.
    slot: tokio::sync::Mutex<Option<Entry>>,
}

struct Entry {
    monitor: Monitor,
    /// Set when this berthd spawned it (then berthd reaps it).
    child: Option<Child>,
}

impl Entry {
    /// The monitor if it is alive; a dead one is reaped (a zombie would keep the pod's monitor
    /// cgroup busy) and `None`.
    fn alive(&mut self) -> Option<Monitor> {
        if self.monitor.alive() {
            return Some(self.monitor.clone());
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.try_wait();
        }
        None
    }
}

impl Monitors {
    pub(crate) fn new(binary: PathBuf, dir: PathBuf) -> Monitors {
        Monitors {
            binary,
            dir,
            pods: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn dir_for(&self, sandbox_id: &str) -> PathBuf {
        let short = &sandbox_id[..sandbox_id.len().min(DIR_ID_LEN)];
        self.dir.join(short)
    }

    fn pod(&self, sandbox_id: &str) -> Arc<PodMonitor> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sandbox_id.to_string())
            .or_default()
            .clone()
    }

    /// The pod's monitor, started if it has none (or its monitor died).
    pub(crate) async fn get_or_spawn(
        &self,
        sandbox_id: &str,
        cgroup_procs: Vec<PathBuf>,
    ) -> Result<Monitor, ContainerError> {
        let pod = self.pod(sandbox_id);
        let mut slot = pod.slot.lock().await;
        if let Some(entry) = slot.as_mut() {
            if let Some(monitor) = entry.alive() {
                return Ok(monitor);
            }
            tracing::warn!(
                sandbox_id,
                pid = entry.monitor.pid(),
                "pod monitor died; starting a new one"
            );
            *slot = None;
        }
        let dir = self.dir_for(sandbox_id);
        let found = tokio::task::spawn_blocking({
            let dir = dir.clone();
            move || Monitor::open(&dir)
        })
        .await
        .map_err(ContainerError::task("opening the pod monitor"))?;
        let entry = match found {
            Ok(monitor) => Entry {
                monitor,
                child: None,
            },
            Err(_) => {
                let binary = self.binary.clone();
                let began = Instant::now();
                let (monitor, child) = tokio::task::spawn_blocking(move || {
                    Monitor::spawn(&binary, &dir, &cgroup_procs)
                })
                .await
                .map_err(ContainerError::task("spawning the pod monitor"))??;
                tracing::debug!(sandbox_id, pid = monitor.pid(), took = ?began.elapsed(), "pod monitor started");
                Entry {
                    monitor,
                    child: Some(child),
                }
            }
        };
        let monitor = entry.monitor.clone();
        *slot = Some(entry);
        Ok(monitor)
    }

    /// The pod's running monitor, if any (found on disk after a restart).
    pub(crate) async fn get(&self, sandbox_id: &str) -> Option<Monitor> {
        let pod = self.pod(sandbox_id);
        let mut slot = pod.slot.lock().await;
        if let Some(entry) = slot.as_mut() {
            if let Some(monitor) = entry.alive() {
                return Some(monitor);
            }
            *slot = None;
        }
        let dir = self.dir_for(sandbox_id);
        let monitor = tokio::task::spawn_blocking(move || Monitor::open(&dir).ok())
            .await
            .ok()
            .flatten()?;
        *slot = Some(Entry {
            monitor: monitor.clone(),
            child: None,
        });
        Some(monitor)
    }

    /// The monitors known to be alive, for metrics. Never waits: a pod whose monitor is being
    /// spawned right now is left out of this scrape.
    pub(crate) fn live(&self) -> Vec<Monitor> {
        let pods: Vec<Arc<PodMonitor>> = self
            .pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        pods.iter()
            .filter_map(|pod| {
                let slot = pod.slot.try_lock().ok()?;
                slot.as_ref()
                    .filter(|e| e.monitor.alive())
                    .map(|e| e.monitor.clone())
            })
            .collect()
    }

    /// Tells the monitor a container is gone. With `last`, the monitor exits after answering:
    /// wait for it, reap it, and remove its directory. `only_if_known`: for a container berthd
    /// never started, which the monitor knows only if a start was interrupted; asking an idle
    /// monitor to forget an unknown one would make it exit under a concurrent start.
    pub(crate) async fn forget(
        &self,
        sandbox_id: &str,
        container_id: &str,
        last: bool,
        only_if_known: bool,
    ) -> Result<(), ContainerError> {
        if let Some(monitor) = self.get(sandbox_id).await {
            let id = container_id.to_string();
            let m = monitor.clone();
            let forgot = tokio::task::spawn_blocking(move || {
                if only_if_known && !m.list()?.iter().any(|c| c.container_id == id) {
                    return Ok(false);
                }
                m.forget(&id, !last).map(|()| true)
            })
            .await
            .map_err(ContainerError::task(
                "telling the pod monitor to forget a container",
            ))?;
            match forgot {
                Ok(true) | Err(MonitorError::UnknownContainer(_)) => {}
                // Nothing asked of the monitor, nothing changed: it stays as it is.
                Ok(false) => return Ok(()),
                Err(MonitorError::NotRunning(_)) => {}
                Err(e) => return Err(e.into()),
            }
            if !last {
                return Ok(());
            }
            let pod = self.pod(sandbox_id);
            let entry = pod.slot.lock().await.take();
            let pid = monitor.pid();
            let (gone, child) = tokio::task::spawn_blocking(move || {
                let mut child = entry.and_then(|e| e.child);
                let gone = wait_gone(pid, child.as_mut(), EXIT_WAIT);
                (gone, child)
            })
            .await
            .map_err(ContainerError::task("waiting for the pod monitor to exit"))?;
            if !gone {
                // It still knows containers berthd does not (or is wedged): its directory holds
                // what it needs, so it stays; RemovePodSandbox retires the monitor.
                tracing::warn!(
                    sandbox_id,
                    pid,
                    "pod monitor did not exit after its last container"
                );
                *pod.slot.lock().await = Some(Entry { monitor, child });
                return Ok(());
            }
        }
        if last {
            remove_dir(&self.dir_for(sandbox_id))?;
        }
        Ok(())
    }

    /// RemovePodSandbox, after all the pod's containers were removed: the pod's monitor goes, by
    /// SIGKILL if it did not exit by itself (wedged, or knowing containers berthd does not), and
    /// so does everything left in its cgroup (a runtime it was running). Only then is its
    /// directory removed: an error leaves it, so a retry (also by a restarted berthd) finds the
    /// monitor again and finishes the job.
    pub(crate) async fn retire(
        &self,
        sandbox_id: &str,
        cgroup: Option<&berth_cgroup::PodCgroup>,
    ) -> Result<(), ContainerError> {
        let dir = self.dir_for(sandbox_id);
        let pod = self.pod(sandbox_id);
        let entry = pod.slot.lock().await.take();
        let procs: Vec<PathBuf> = cgroup
            .map(|cg| {
                cg.fs_paths()
                    .into_iter()
                    .map(|d| d.join(berth_cgroup::MONITOR_CGROUP))
                    .collect()
            })
            .unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let (monitor, mut child) = match entry {
                Some(e) => (Some(e.monitor), e.child),
                None => (Monitor::find(&dir), None),
            };
            if let Some(monitor) = monitor {
                let pid = monitor.pid();
                // A monitor told to forget its last container may be exiting right now.
                if !wait_gone(pid, child.as_mut(), RETIRE_GRACE) {
                    tracing::warn!(sandbox_id = %monitor.dir().display(), pid, "pod monitor still running at pod removal; killing it");
                    if monitor.alive() {
                        // Its exit is waited for next; a monitor already gone is fine.
                        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                    }
                    if !wait_gone(pid, child.as_mut(), KILL_WAIT) {
                        return Err(ContainerError::SurvivedSigkill {
                            what: format!("pod monitor {pid}"),
                            after: KILL_WAIT,
                        });
                    }
                }
            }
            for cgroup in &procs {
                empty_cgroup(cgroup)?;
            }
            remove_dir(&dir)
        })
        .await
        .map_err(ContainerError::task("retiring the pod monitor"))??;
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sandbox_id);
        Ok(())
    }
}

impl PodMonitors for Monitors {
    fn dir_for(&self, sandbox_id: &str) -> PathBuf {
        Monitors::dir_for(self, sandbox_id)
    }

    fn get_or_spawn<'a>(
        &'a self,
        sandbox_id: &'a str,
        cgroup_procs: Vec<PathBuf>,
    ) -> BoxFuture<'a, Result<Arc<dyn MonitorConn>, ContainerError>> {
        Box::pin(async move {
            let monitor = Monitors::get_or_spawn(self, sandbox_id, cgroup_procs).await?;
            Ok(Arc::new(monitor) as Arc<dyn MonitorConn>)
        })
    }

    fn get<'a>(&'a self, sandbox_id: &'a str) -> BoxFuture<'a, Option<Arc<dyn MonitorConn>>> {
        Box::pin(async move {
            let monitor = Monitors::get(self, sandbox_id).await?;
            Some(Arc::new(monitor) as Arc<dyn MonitorConn>)
        })
    }

    fn live(&self) -> Vec<Arc<dyn MonitorConn>> {
        Monitors::live(self)
            .into_iter()
            .map(|m| Arc::new(m) as Arc<dyn MonitorConn>)
            .collect()
    }

    fn forget<'a>(
        &'a self,
        sandbox_id: &'a str,
        container_id: &'a str,
        last: bool,
        only_if_known: bool,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(Monitors::forget(
            self,
            sandbox_id,
            container_id,
            last,
            only_if_known,
        ))
    }

    fn retire<'a>(
        &'a self,
        sandbox_id: &'a str,
        cgroup: Option<&'a berth_cgroup::PodCgroup>,
    ) -> BoxFuture<'a, Result<(), ContainerError>> {
        Box::pin(Monitors::retire(self, sandbox_id, cgroup))
    }

    fn wait_exit<'a>(
        &'a self,
        monitor_dir: &'a Path,
        container_id: &'a str,
    ) -> BoxFuture<'a, Result<Exit, ContainerError>> {
        Box::pin(wait_exit(monitor_dir, container_id))
    }

    fn read_exit_file(
        &self,
        monitor_dir: &Path,
        container_id: &str,
    ) -> Result<Option<Exit>, MonitorError> {
        berth_monitor_api::read_exit_file(monitor_dir, container_id)
    }
}

/// How long a monitor gets to exit after its last container was forgotten.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// At pod removal every container is forgotten already: a monitor still there after this is not
/// going to exit by itself.
const RETIRE_GRACE: Duration = Duration::from_secs(1);
/// How long SIGKILLed processes may take to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Waits up to `limit` until the monitor process is gone (reaped, if it is our child); whether it
/// is.
fn wait_gone(pid: i32, child: Option<&mut Child>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    if let Some(child) = child {
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return true,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Ok(None) => return false,
            }
        }
    }
    loop {
        if !Path::new(&format!("/proc/{pid}")).exists() || zombie(pid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kills whatever is left in the pod monitor's cgroup `dir` (the monitor's children: a runtime
/// still creating a container) and waits until it is empty, so the pod's cgroups can go.
fn empty_cgroup(dir: &Path) -> Result<(), ContainerError> {
    let procs_file = dir.join("cgroup.procs");
    let read = || -> Result<Vec<i32>, ContainerError> {
        match std::fs::read_to_string(&procs_file) {
            Ok(s) => Ok(s.lines().filter_map(|l| l.trim().parse().ok()).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(ContainerError::io("read", &procs_file)(e)),
        }
    };
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids = read()?;
        if pids.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(ContainerError::SurvivedSigkill {
                what: format!("processes {pids:?} in {}", dir.display()),
                after: KILL_WAIT,
            });
        }
        // cgroup v2 kills the whole cgroup atomically; v1 (and v2 before 5.14) pid by pid.
        if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
            for pid in pids {
                // A process already gone is fine: the cgroup is read again.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

pub(crate) fn remove_dir(dir: &Path) -> Result<(), ContainerError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(ContainerError::io("remove", dir)(e)),
    }
}

/// Waits for a container's exit without holding a thread: one `Wait` request on its own
/// connection, answered by the monitor once the exit is on disk.
pub(crate) async fn wait_exit(
    monitor_dir: &Path,
    container_id: &str,
) -> Result<Exit, ContainerError> {
    let socket = monitor_dir.join(berth_monitor_api::SOCKET);
    let mut stream = tokio::net::UnixStream::connect(&socket)
        .await
        .map_err(ContainerError::io("connect to", &socket))?;
    let request = proto::Request {
        kind: Some(proto::request::Kind::Wait(proto::Wait {
            container_id: container_id.to_string(),
            timeout_ms: 0,
        })),
    };
    let frame = berth_monitor_api::encode_frame(&request)
        .map_err(ContainerError::io("encode a request for", &socket))?;
    stream
        .write_all(&frame)
        .await
        .map_err(ContainerError::io("write to", &socket))?;
    let mut prefix = [0u8; 4];
    stream
        .read_exact(&mut prefix)
        .await
        .map_err(ContainerError::io("read from", &socket))?;
    let mut body = vec![0u8; berth_monitor_api::frame_len(prefix)?];
    stream
        .read_exact(&mut body)
        .await
        .map_err(ContainerError::io("read from", &socket))?;
    let response: proto::Response = prost::Message::decode(body.as_slice())
        .map_err(|e| MonitorError::Protocol(format!("decoding a response: {e}")))?;
    match response.kind {
        Some(proto::response::Kind::Exit(e)) => Ok(Exit::from(&e)),
        Some(proto::response::Kind::Error(e)) if e.not_found => {
            Err(MonitorError::UnknownContainer(container_id.to_string()).into())
        }
        Some(proto::response::Kind::Error(e)) => Err(MonitorError::Protocol(e.message).into()),
        other => {
            Err(MonitorError::Protocol(format!("unexpected answer to Wait: {other:?}")).into())
        }
    }
}
