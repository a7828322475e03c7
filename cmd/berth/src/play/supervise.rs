//! Keeping a play's containers running as restartPolicy says, as kubelet does: an exited
//! container is created again with the next CRI attempt number after a back-off (none the first
//! time, then the initial delay doubling each restart up to 5 minutes; a container that ran 10
//! minutes starts over). The back-off follows from the attempt number and the exit time alone,
//! so a supervisor that takes over (`berth play --supervise`, after `--detach`) carries on where
//! the CLI left off. The previous attempt is kept for its log; older ones are removed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use berth_cri_api::v1 as cri;
use serde::{Deserialize, Serialize};

use super::convert::{self, CONTAINER_LABEL, INIT_LABEL, PLAY_LABEL, POD_LABEL, Plan, Which};
use super::env::PodFacts;
use super::hosts;
use super::manifest::RestartPolicy;
use super::parse::{self, Manifest};
use super::volumes::{self, Paths, Source};
use crate::client::Connect;
use crate::containers::Runtime;

/// kubelet's MaxContainerBackOff.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without delay (kubelet resets its
/// back-off after twice the maximum).
const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// What a supervisor needs to carry on: written to `play.json` in the play's directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub project: String,
    pub manifest: String,
    pub log_root: String,
    pub state_root: PathBuf,
    pub restart_delay_ms: u64,
}

/// A pod of the play that runs.
#[derive(Debug, Clone)]
pub struct PodRun {
    /// Index into the manifest's pods.
    pub index: usize,
    pub id: String,
    pub facts: PodFacts,
    pub sandbox: cri::PodSandboxConfig,
    pub sources: BTreeMap<String, Source>,
}

/// An app container's latest attempt.
#[derive(Debug, Clone)]
pub struct Tracked {
    /// Index into [`Play::pods`].
    pub pod: usize,
    pub which: Which,
    pub id: String,
    pub attempt: u32,
    /// Exited and not to be restarted.
    pub done: Option<i32>,
}

pub struct Play {
    pub connect: Connect,
    pub rt: Runtime,
    /// Calls whose bound is set per request (ExecSync probes, stops).
    pub long: Runtime,
    pub project: String,
    pub manifest: Manifest,
    pub paths: Paths,
    pub log_root: String,
    pub restart_delay: Duration,
    pub pods: Vec<PodRun>,
    pub containers: Vec<Tracked>,
    /// Images pulled by this run (imagePullPolicy Always pulls once per play, not per pod).
    pub pulled: std::collections::BTreeSet<String>,
    /// livenessProbe state by container ID.
    pub liveness: std::collections::HashMap<String, super::probe::Prober>,
    /// Set by Ctrl-C: the waits of a starting play give up.
    pub interrupted: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// How long after an exit of `attempt` the next attempt starts.
pub fn backoff(initial: Duration, attempt: u32, ran: Duration) -> Duration {
    if attempt == 0 || ran >= BACKOFF_RESET {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Whether restartPolicy restarts a container that exited with `code`.
pub fn restarts(policy: RestartPolicy, code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => code != 0,
        RestartPolicy::Never => false,
    }
}

pub fn selector(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The play's pods (any state), as the runtime lists them.
pub async fn list_pods(rt: &mut Runtime, project: &str) -> anyhow::Result<Vec<cri::PodSandbox>> {
    let filter = cri::PodSandboxFilter {
        label_selector: selector(&[(PLAY_LABEL, project)]),
        ..Default::default()
    };
    Ok(rt
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .context("listing the play's pods")?
        .into_inner()
        .items)
}

pub async fn list_containers(
    rt: &mut Runtime,
    labels: &[(&str, &str)],
) -> anyhow::Result<Vec<cri::Container>> {
    let filter = cri::ContainerFilter {
        label_selector: selector(labels),
        ..Default::default()
    };
    Ok(rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(filter),
        })
        .await
        .context("listing the play's containers")?
        .into_inner()
        .containers)
}

impl Play {
    /// Fails once Ctrl-C came, so that a starting play stops waiting.
    pub fn check_interrupted(&self) -> anyhow::Result<()> {
        if self.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            anyhow::bail!("interrupted");
        }
        Ok(())
    }

    pub fn plan(&self) -> Plan<'_> {
        Plan {
            project: &self.project,
            manifest: &self.manifest,
            paths: &self.paths,
            log_root: &self.log_root,
        }
    }

    pub fn name(&self, t: &Tracked) -> String {
        let pod = &self.manifest.pods[self.pods[t.pod].index];
        let c = t.which.container(pod).map_or("?", |c| c.name.as_str());
        format!("{}/{c}", pod.name)
    }

    /// Rewrites every pod's hosts file with the pods known so far.
    pub fn write_hosts(&self) -> anyhow::Result<()> {
        let peers: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|p| !self.manifest.pods[p.index].spec.host_network)
            .map(|p| (self.manifest.pods[p.index].name.clone(), p.facts.ip.clone()))
            .collect();
        for p in &self.pods {
            let pod = &self.manifest.pods[p.index];
            let text = hosts::content(pod, &p.facts.ip, &self.project, &peers);
            hosts::write(&self.paths.hosts(&pod.name), &text)?;
        }
        Ok(())
    }

    /// Creates and starts attempt `attempt` of a container; removes attempts before the previous.
    pub async fn create_start(
        &mut self,
        pod: usize,
        which: Which,
        attempt: u32,
    ) -> anyhow::Result<String> {
        let run = self.pods[pod].clone();
        let manifest_pod = &self.manifest.pods[run.index];
        let name = format!(
            "{}/{}",
            manifest_pod.name,
            which
                .container(manifest_pod)
                .map_or("?", |c| c.name.as_str())
        );
        let mut warnings = Vec::new();
        let config = convert::container(
            &self.plan(),
            manifest_pod,
            which,
            attempt,
            &run.facts,
            &run.sources,
            &mut warnings,
        )?;
        let container_name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        // Attempts older than the one this replaces, removed first so that no more than two are
        // ever kept (kubelet garbage-collects them too).
        let init = if which.init { "true" } else { "false" };
        let old = list_containers(
            &mut self.rt,
            &[
                (PLAY_LABEL, &self.project),
                (POD_LABEL, &manifest_pod.name.clone()),
                (CONTAINER_LABEL, &container_name),
                (INIT_LABEL, init),
            ],
        )
        .await?;
        for c in old {
            let a = c.metadata.as_ref().map_or(0, |m| m.attempt);
            if a + 1 < attempt && c.pod_sandbox_id == run.id {
                let _ = self
                    .rt
                    .remove_container(cri::RemoveContainerRequest { container_id: c.id })
                    .await;
            }
        }
        let id = self
            .rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: run.id.clone(),
                config: Some(config),
                sandbox_config: Some(run.sandbox.clone()),
            })
            .await
            .with_context(|| format!("creating container {name} (attempt {attempt})"))?
            .into_inner()
            .container_id;
        self.rt
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .with_context(|| format!("starting container {name} (attempt {attempt})"))?;
        Ok(id)
    }

    /// Restarts the exited app containers restartPolicy and their back-off say are due.
    pub async fn tick(&mut self) -> anyhow::Result<()> {
        for i in 0..self.containers.len() {
            let t = self.containers[i].clone();
            if t.done.is_some() {
                continue;
            }
            let policy = self.manifest.pods[self.pods[t.pod].index].restart;
            let status = crate::containers::status(&mut self.rt, &t.id, false)
                .await?
                .and_then(|r| r.status);
            let (code, ran, finished) = match &status {
                Some(s) if s.state == cri::ContainerState::ContainerExited as i32 => (
                    s.exit_code,
                    Duration::from_nanos((s.finished_at - s.started_at).max(0) as u64),
                    s.finished_at,
                ),
                Some(_) => {
                    self.probe_liveness(&t).await?;
                    continue;
                }
                // Removed behind the play's back (`--down` from another shell): left alone.
                None => {
                    self.containers[i].done = Some(-1);
                    continue;
                }
            };
            if !restarts(policy, code) {
                self.containers[i].done = Some(code);
                continue;
            }
            let wait = backoff(self.restart_delay, t.attempt, ran);
            if berth_clock::now_ns() < finished.saturating_add(berth_clock::nanos(wait)) {
                continue;
            }
            let attempt = t.attempt + 1;
            eprintln!(
                "berth play: restarting {} (exit code {code}, attempt {attempt})",
                self.name(&t)
            );
            match self.create_start(t.pod, t.which, attempt).await {
                Ok(id) => {
                    self.containers[i].id = id;
                    self.containers[i].attempt = attempt;
                }
                Err(e) => eprintln!("berth play: {}", crate::client::render(&e)),
            }
        }
        Ok(())
    }

    /// Runs a running container's livenessProbe; failureThreshold failures in a row stop it
    /// (within the pod's grace period) and restartPolicy decides what comes next, as in kubelet.
    async fn probe_liveness(&mut self, t: &Tracked) -> anyhow::Result<()> {
        let pod = &self.manifest.pods[self.pods[t.pod].index];
        let Some(probe) = t
            .which
            .container(pod)
            .and_then(|c| c.liveness_probe.clone())
        else {
            return Ok(());
        };
        if !self.liveness.contains_key(&t.id) {
            let action = super::probe::check(pod, t.which, &probe, "livenessProbe")?;
            // Forget the probers of containers that are gone.
            let live: std::collections::BTreeSet<&String> =
                self.containers.iter().map(|c| &c.id).collect();
            self.liveness.retain(|id, _| live.contains(id));
            let prober = super::probe::Prober::liveness(action, &probe, std::time::Instant::now());
            self.liveness.insert(t.id.clone(), prober);
        }
        let ip = self.pods[t.pod].facts.ip.clone();
        let grace = pod
            .spec
            .termination_grace_period_seconds
            .unwrap_or(30)
            .max(0);
        let Some(prober) = self.liveness.get_mut(&t.id) else {
            return Ok(());
        };
        if prober.poll(&mut self.long, &t.id, &ip).await {
            return Ok(());
        }
        let why = prober.last_error.clone().unwrap_or_default();
        eprintln!(
            "berth play: {} failed its livenessProbe ({why}): stopping it",
            self.name(t)
        );
        let mut request = tonic::Request::new(cri::StopContainerRequest {
            container_id: t.id.clone(),
            timeout: grace,
        });
        request.set_timeout(self.connect.timeout + Duration::from_secs(grace as u64));
        self.long
            .stop_container(request)
            .await
            .with_context(|| format!("stopping {}", self.name(t)))?;
        self.liveness.remove(&t.id);
        Ok(())
    }

    /// The play as the runtime has it: its pods by their labels, each app container's latest
    /// attempt. For the supervisor, which starts from nothing but the state file.
    pub async fn adopt(connect: &Connect, state: &State) -> anyhow::Result<Play> {
        let manifest = parse::parse(&state.manifest)?;
        let mut play = Play {
            connect: connect.clone(),
            rt: connect.runtime().await?,
            long: connect.runtime_for(None).await?,
            project: state.project.clone(),
            manifest,
            paths: Paths::new(&state.state_root, &state.project),
            log_root: state.log_root.clone(),
            restart_delay: Duration::from_millis(state.restart_delay_ms),
            pods: Vec::new(),
            containers: Vec::new(),
            pulled: Default::default(),
            liveness: Default::default(),
            interrupted: Default::default(),
        };
        let sandboxes = list_pods(&mut play.rt, &play.project).await?;
        let containers = list_containers(
            &mut play.rt,
            &[(PLAY_LABEL, &play.project), (INIT_LABEL, "false")],
        )
        .await?;
        for (index, pod) in play.manifest.pods.iter().enumerate() {
            let Some(sandbox) = sandboxes.iter().find(|s| {
                s.labels.get(POD_LABEL) == Some(&pod.name)
                    && s.state == cri::PodSandboxState::SandboxReady as i32
            }) else {
                continue;
            };
            let status = play
                .rt
                .pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: sandbox.id.clone(),
                    verbose: false,
                })
                .await?
                .into_inner()
                .status
                .context("a pod without status")?;
            let facts = PodFacts {
                uid: status
                    .metadata
                    .as_ref()
                    .map(|m| m.uid.clone())
                    .unwrap_or_default(),
                ip: status
                    .network
                    .as_ref()
                    .map(|n| n.ip.clone())
                    .unwrap_or_default(),
            };
            let plan = play.plan();
            let config = convert::sandbox(&plan, pod, &facts.uid)?;
            let sources = volumes::plan(&play.manifest, pod, &play.paths, &mut Vec::new())?;
            let run = play.pods.len();
            for (ci, c) in pod.spec.containers.iter().enumerate() {
                let latest = containers
                    .iter()
                    .filter(|k| {
                        k.pod_sandbox_id == sandbox.id
                            && k.labels.get(CONTAINER_LABEL) == Some(&c.name)
                    })
                    .max_by_key(|k| k.metadata.as_ref().map_or(0, |m| m.attempt));
                if let Some(k) = latest {
                    play.containers.push(Tracked {
                        pod: run,
                        which: Which {
                            init: false,
                            index: ci,
                        },
                        id: k.id.clone(),
                        attempt: k.metadata.as_ref().map_or(0, |m| m.attempt),
                        done: None,
                    });
                }
            }
            play.pods.push(PodRun {
                index,
                id: sandbox.id.clone(),
                facts,
                sandbox: config,
                sources,
            });
        }
        Ok(play)
    }
}

/// `berth play --supervise STATEFILE`: restarts containers until the play's pods are gone
/// (`--down`) or a SIGTERM comes.
pub async fn supervise(connect: &Connect, state_file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(state_file)
        .with_context(|| format!("reading {}", state_file.display()))?;
    let state: State =
        serde_json::from_str(&text).with_context(|| format!("reading {}", state_file.display()))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut play = Play::adopt(connect, &state).await?;
    eprintln!(
        "berth play: supervising {} ({} pods, {} containers)",
        state.project,
        play.pods.len(),
        play.containers.len()
    );
    loop {
        // A runtime that does not answer (berthd restarting) is waited for.
        match list_pods(&mut play.rt, &play.project).await {
            Ok(pods) if pods.is_empty() => {
                eprintln!("berth play: the play's pods are gone; exiting");
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => eprintln!("berth play: {}", crate::client::render(&e)),
        }
        if let Err(e) = play.tick().await {
            eprintln!("berth play: {}", crate::client::render(&e));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = term.recv() => return Ok(()),
        }
    }
}

/// Starts the supervisor in a session of its own (setsid), so it outlives this CLI and its
/// terminal; its output goes to `supervisor.log` in the play's directory.
// Command::pre_exec: setsid and close_range in the forked child.
#[allow(unsafe_code)]
pub fn spawn(connect: &Connect, paths: &Paths) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let log = std::fs::File::create(paths.supervisor_log())
        .with_context(|| format!("creating {}", paths.supervisor_log().display()))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("-H")
        .arg(&connect.endpoint)
        .arg("--timeout")
        .arg(connect.timeout.as_secs().max(1).to_string())
        .arg("play")
        .arg("--supervise")
        .arg(paths.state_file())
        // Not holding on to the directory it was started from.
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid and close_range are plain syscalls, async-signal-safe, and touch no memory
    // of this process.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The supervisor lives until --down: it must not keep descriptors this CLI inherited
            // without close-on-exec (a lock its caller holds, as `flock FILE berth play -d`
            // does, would stay locked for the play's life). CLOEXEC rather than closing, so the
            // pipe std uses to report a failed exec keeps working; ENOSYS (kernels before 5.11)
            // leaves them as they are.
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let child = command.spawn().context("starting the supervisor")?;
    let pid = child.id();
    std::fs::write(paths.supervisor_pid(), format!("{pid}\n"))
        .with_context(|| format!("writing {}", paths.supervisor_pid().display()))?;
    Ok(pid)
}
