//! Container workloads: what kubelet does to run a pod's containers.
//!
//! * `container`: in one pod made in setup (same pod config and CNI network as `runp`), each
//!   iteration does CreateContainer, StartContainer, StopContainer (timeout 10 s) and
//!   RemoveContainer, each timed. The container runs [`SCRIPT`], which exits on SIGTERM, so the
//!   stop measures "signal, process exits, runtime notices" and never the 10 s timeout. Between
//!   start and stop the iteration waits (untimed) until the script has installed its trap: a
//!   SIGTERM before that would be ignored (PID 1 of a PID namespace without a handler) and the
//!   stop would take the full timeout.
//! * `pod-container`: from nothing to a running container: RunPodSandbox, CreateContainer,
//!   StartContainer, then ContainerStatus until RUNNING, timed as one operation
//!   (`pod+container`); then StopPodSandbox + RemovePodSandbox timed as `teardown`. Every call is
//!   also reported on its own.
//!
//! The image (`--container-image`, default the test busybox) is pulled, untimed, in setup.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_cri_api::v1 as cri;

use super::in_pod::OnePod;
use super::pods::{RUN_LABEL, log_directory, pod_config, remove_run, run_id, run_request};
use super::{BoxFut, Recorder, Workload, WorkloadOpts};
use crate::client::Clients;

/// The containers' command (`sh -c SCRIPT NAME`): install a SIGTERM handler, then wait in the
/// `wait` builtin, which a trapped signal interrupts at once. (`while true; do sleep 1; done`
/// would run the trap only after the current `sleep` ends: up to a second per stop.) The
/// background `sleep` goes with the container's PID namespace when the shell exits.
pub const SCRIPT: &str = "trap 'exit 0' TERM; while :; do sleep 3600 & wait $!; done";

/// How long an iteration waits for a started container's shell to have installed its trap.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `pod-container` polls ContainerStatus for RUNNING.
const RUNNING_TIMEOUT: Duration = Duration::from_secs(10);

/// StopContainer's grace period in `container`.
pub const STOP_TIMEOUT_SECS: i64 = 10;

/// A container of the run: `name` is unique per run (it is also the shell's `$0`, which lets
/// [`wait_trap_installed`] find its process).
pub(super) fn container_config(run_id: &str, image: &str, name: &str) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.to_string(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.to_string(),
            ..Default::default()
        }),
        command: vec![
            "sh".into(),
            "-c".into(),
            SCRIPT.into(),
            marker(run_id, name),
        ],
        labels: HashMap::from([(RUN_LABEL.into(), run_id.to_string())]),
        log_path: format!("{name}_0.log"),
        linux: Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The shell's `$0`: unique on the machine for this run and container.
pub(super) fn marker(run_id: &str, name: &str) -> String {
    format!("berth-bench-{run_id}-{name}")
}

pub(super) fn create_request(
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> cri::CreateContainerRequest {
    cri::CreateContainerRequest {
        pod_sandbox_id: pod_id.to_string(),
        config: Some(config),
        sandbox_config: Some(pod.clone()),
    }
}

/// Pull `image` (untimed) and create the run's log directory.
pub(super) async fn prepare(clients: &mut Clients, run_id: &str, image: &str) -> Result<()> {
    let dir = log_directory(run_id);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {dir}"))?;
    clients
        .image
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_string(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        })
        .await
        .with_context(|| format!("pulling {image}"))?;
    Ok(())
}

/// Last argument of a NUL-separated command line.
fn last_arg(cmdline: &[u8]) -> &[u8] {
    let trimmed = cmdline.strip_suffix(b"\0").unwrap_or(cmdline);
    trimmed.rsplit(|&b| b == 0).next().unwrap_or(trimmed)
}

/// The pid (in our PID namespace) of the process whose last argument is `marker`.
fn find_marked(proc_root: &Path, marker: &str) -> Option<u32> {
    let dir = std::fs::read_dir(proc_root).ok()?;
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
            && last_arg(&cmdline) == marker.as_bytes()
        {
            return Some(pid);
        }
    }
    None
}

/// Whether `pid` has a child (`/proc/PID/task/PID/children`).
fn has_child(proc_root: &Path, pid: u32) -> bool {
    std::fs::read_to_string(proc_root.join(format!("{pid}/task/{pid}/children")))
        .is_ok_and(|s| !s.trim().is_empty())
}

/// Wait until the container's shell (found by its `$0`) has forked its first `sleep`: it runs
/// `trap` before that, so from then on SIGTERM makes it exit. Needs the bench to run on the
/// runtime's machine, in a PID namespace that sees the containers (the host's).
pub(super) async fn wait_trap_installed(marker: &str, timeout: Duration) -> Result<()> {
    let proc_root = Path::new("/proc");
    let deadline = Instant::now() + timeout;
    let mut pid = None;
    loop {
        if pid.is_none() {
            pid = find_marked(proc_root, marker);
        }
        if let Some(p) = pid {
            if has_child(proc_root, p) {
                return Ok(());
            }
            if !proc_root.join(p.to_string()).exists() {
                bail!("the container's shell (pid {p}) exited before it was ready");
            }
        }
        if Instant::now() >= deadline {
            match pid {
                None => bail!("no process with argument {marker} after {timeout:?}"),
                Some(p) => bail!("shell pid {p} did not fork its sleep within {timeout:?}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Untimed: stop (SIGKILL) and remove a container; errors are left to teardown.
pub(super) async fn discard_container(clients: &mut Clients, id: &str) {
    let _ = clients
        .runtime
        .stop_container(cri::StopContainerRequest {
            container_id: id.to_string(),
            timeout: 0,
        })
        .await;
    let _ = clients
        .runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: id.to_string(),
        })
        .await;
}

/// `container`: create/start/stop/remove in one pod.
pub struct ContainerLifecycle {
    pod: OnePod,
    /// Every container asks for the RuntimeDefault seccomp profile (`container-seccomp`).
    seccomp: bool,
}

impl ContainerLifecycle {
    pub fn new(opts: &WorkloadOpts, seccomp: bool) -> ContainerLifecycle {
        ContainerLifecycle {
            pod: OnePod::new(opts),
            seccomp,
        }
    }
}

pub(super) const CREATE: &str = "CreateContainer";
pub(super) const START: &str = "StartContainer";
pub(super) const STOP: &str = "StopContainer";
pub(super) const REMOVE: &str = "RemoveContainer";

impl Workload for ContainerLifecycle {
    fn name(&self) -> &'static str {
        if self.seccomp {
            "container-seccomp"
        } else {
            "container"
        }
    }

    fn ops(&self) -> &'static [&'static str] {
        &[CREATE, START, STOP, REMOVE]
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
            if let (true, Some(sc)) = (
                self.seccomp,
                config
                    .linux
                    .as_mut()
                    .and_then(|l| l.security_context.as_mut()),
            ) {
                sc.seccomp = Some(cri::SecurityProfile {
                    profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                    localhost_ref: String::new(),
                });
            }
            let skip = [START, STOP, REMOVE];
            let Some(id) = self.pod.create(clients, rec, config, &skip).await else {
                return;
            };
            self.pod.start_stop_remove(clients, rec, id, &name).await;
        })
    }

    fn teardown<'a>(&'a self, clients: &'a mut Clients) -> BoxFut<'a, Result<()>> {
        Box::pin(self.pod.teardown(clients))
    }
}

/// `pod-container`: a pod and its container from nothing to RUNNING, then the pod's teardown.
pub struct PodContainer {
    run_id: String,
    image: String,
}

impl PodContainer {
    pub fn new(opts: &WorkloadOpts) -> PodContainer {
        PodContainer {
            run_id: run_id(),
            image: opts.container_image.clone(),
        }
    }
}

const POD_CONTAINER: &str = "pod+container";
const TEARDOWN: &str = "teardown";
pub(super) const RUNP: &str = "RunPodSandbox";
pub(super) const STATUS: &str = "ContainerStatus";
pub(super) const STOPP: &str = "StopPodSandbox";
pub(super) const REMOVEP: &str = "RemovePodSandbox";

/// CreateContainer of `config` in a pod, recorded; the container's id.
pub(super) async fn create_recorded(
    clients: &mut Clients,
    rec: &mut Recorder,
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> Option<String> {
    let req = create_request(pod_id, pod, config);
    rec.call(CREATE, clients.runtime.create_container(req))
        .await
        .map(|created| created.container_id)
}

/// StartContainer, recorded; whether it succeeded.
pub(super) async fn start_recorded(clients: &mut Clients, rec: &mut Recorder, id: &str) -> bool {
    let start = cri::StartContainerRequest {
        container_id: id.to_string(),
    };
    rec.call(START, clients.runtime.start_container(start))
        .await
        .is_some()
}

/// Create and start one container in a pod, then poll ContainerStatus until RUNNING; each call
/// recorded under its own name. `Err(msg)` when something failed (already recorded, except a
/// container that is not running, which the caller records).
pub(super) async fn start_container_running(
    clients: &mut Clients,
    rec: &mut Recorder,
    pod_id: &str,
    pod: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
    wait_running: bool,
) -> Result<String, String> {
    let Some(id) = create_recorded(clients, rec, pod_id, pod, config).await else {
        return Err("CreateContainer failed".into());
    };
    if !start_recorded(clients, rec, &id).await {
        return Err("StartContainer failed".into());
    }
    if !wait_running {
        return Ok(id);
    }
    let deadline = Instant::now() + RUNNING_TIMEOUT;
    loop {
        let req = cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        };
        let Some(resp) = rec
            .call(STATUS, clients.runtime.container_status(req))
            .await
        else {
            return Err("ContainerStatus failed".into());
        };
        let state = resp.status.map(|s| s.state).unwrap_or(-1);
        if state == cri::ContainerState::ContainerRunning as i32 {
            return Ok(id);
        }
        if state == cri::ContainerState::ContainerExited as i32 {
            rec.fail(STATUS, "container exited instead of running");
            return Err("container exited".into());
        }
        if Instant::now() >= deadline {
            rec.fail(STATUS, format!("not RUNNING after {RUNNING_TIMEOUT:?}"));
            return Err("container not running".into());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// StopPodSandbox + RemovePodSandbox, each recorded; whether both succeeded.
pub(super) async fn stop_remove_pod(clients: &mut Clients, rec: &mut Recorder, id: &str) -> bool {
    let stop = cri::StopPodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    };
    if rec
        .call(STOPP, clients.runtime.stop_pod_sandbox(stop))
        .await
        .is_none()
    {
        return false;
    }
    let remove = cri::RemovePodSandboxRequest {
        pod_sandbox_id: id.to_string(),
    };
    rec.call(REMOVEP, clients.runtime.remove_pod_sandbox(remove))
        .await
        .is_some()
}

/// RunPodSandbox, then the container (`container()`, called once the pod runs) until RUNNING;
/// each call recorded. The pod's id if RunPodSandbox answered (also when the container failed:
/// the caller removes the pod), and whether the container runs.
pub(super) async fn pod_with_container(
    clients: &mut Clients,
    rec: &mut Recorder,
    pod: cri::PodSandboxConfig,
    container: impl FnOnce() -> cri::ContainerConfig,
) -> (Option<String>, Result<(), String>) {
    let Some(resp) = rec
        .call(
            RUNP,
            clients.runtime.run_pod_sandbox(run_request(pod.clone())),
        )
        .await
    else {
        return (None, Err("RunPodSandbox failed".into()));
    };
    let pod_id = resp.pod_sandbox_id;
    let res = start_container_running(clients, rec, &pod_id, &pod, container(), true).await;
    (Some(pod_id), res.map(|_| ()))
}

impl Workload for PodContainer {
    fn name(&self) -> &'static str {
        "pod-container"
    }

    fn ops(&self) -> &'static [&'static str] {
        &[
            POD_CONTAINER,
            TEARDOWN,
            RUNP,
            CREATE,
            START,
            STATUS,
            STOPP,
            REMOVEP,
        ]
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
            let t0 = Instant::now();
            let config = || container_config(&self.run_id, &self.image, &format!("c-{iter}"));
            let (pod_id, running) = pod_with_container(clients, rec, pod, config).await;
            let Some(pod_id) = pod_id else {
                rec.sequence_failed(POD_CONTAINER, "RunPodSandbox failed");
                rec.skipped(&[TEARDOWN]);
                return;
            };
            match running {
                Ok(()) => rec.sample(POD_CONTAINER, t0.elapsed()),
                Err(msg) => rec.sequence_failed(POD_CONTAINER, msg),
            }
            let t1 = Instant::now();
            if stop_remove_pod(clients, rec, &pod_id).await {
                rec.sample(TEARDOWN, t1.elapsed());
            } else {
                rec.sequence_failed(TEARDOWN, "StopPodSandbox/RemovePodSandbox failed");
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
    fn last_arg_of_cmdlines() {
        assert_eq!(last_arg(b"sh\0-c\0script\0marker\0"), b"marker");
        assert_eq!(last_arg(b"sleep\x003600\0"), b"3600");
        assert_eq!(last_arg(b"single\0"), b"single");
        assert_eq!(last_arg(b""), b"");
    }

    #[test]
    fn container_config_carries_marker_and_label() {
        let c = container_config("run1", "img", "c-3");
        assert_eq!(c.command.last().unwrap(), "berth-bench-run1-c-3");
        assert_eq!(c.command[..3], ["sh", "-c", SCRIPT]);
        assert_eq!(c.labels[RUN_LABEL], "run1");
        assert_eq!(c.log_path, "c-3_0.log");
    }

    #[tokio::test]
    async fn finds_a_marked_process_and_its_child() {
        // A shell that forks a child after it starts, like the containers' script.
        let marker = format!("berth-bench-test-{}", std::process::id());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait $!"])
            .arg(&marker)
            .spawn()
            .unwrap();
        let res = wait_trap_installed(&marker, Duration::from_secs(5)).await;
        let pid = child.id();
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for kid in kids
            .split_whitespace()
            .filter_map(|k| k.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2) of our own grandchild.
            unsafe { libc::kill(kid, libc::SIGKILL) };
        }
        let _ = child.kill();
        let _ = child.wait();
        res.unwrap();
        let gone = wait_trap_installed("berth-bench-no-such-marker", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(gone.to_string().contains("no process"), "{gone}");
    }
}
