//! `berth play FILE`: the pods in document order, each after the one before is ready. For each:
//! images pulled (imagePullPolicy), volumes made, the sandbox run, hosts files written, init
//! containers run to completion one by one, app containers started, readiness probes passed.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;

use super::convert::Which;
use super::env::PodFacts;
use super::manifest::{PullPolicy, RestartPolicy};
use super::probe::{self, Prober};
use super::supervise::{Play, PodRun, Tracked, backoff, restarts};
use super::volumes;

/// kubelet's default: Always for `:latest` or no tag, else IfNotPresent.
pub(super) fn pull_policy(image: &str, policy: Option<PullPolicy>) -> PullPolicy {
    policy.unwrap_or_else(|| {
        let name = image.split('@').next().unwrap_or(image);
        let last = name.rsplit('/').next().unwrap_or(name);
        if image.contains('@') {
            PullPolicy::IfNotPresent
        } else {
            match last.split_once(':') {
                Some((_, "latest")) | None => PullPolicy::Always,
                Some(_) => PullPolicy::IfNotPresent,
            }
        }
    })
}

async fn pull(play: &mut Play, image: &str, policy: PullPolicy) -> anyhow::Result<()> {
    if !play.pulled.insert(image.to_string()) {
        return Ok(());
    }
    let mut images = play.connect.images(None).await?;
    let spec = cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    };
    if policy != PullPolicy::Always {
        let present = images
            .image_status(cri::ImageStatusRequest {
                image: Some(spec.clone()),
                verbose: false,
            })
            .await?
            .into_inner()
            .image
            .is_some();
        if present {
            return Ok(());
        }
        if policy == PullPolicy::Never {
            bail!("image {image} is not present and imagePullPolicy is Never");
        }
    }
    eprintln!("Pulling {image}");
    images
        .pull_image(cri::PullImageRequest {
            image: Some(spec),
            ..Default::default()
        })
        .await
        .with_context(|| format!("pulling {image}"))?;
    Ok(())
}

/// Waits for a container to exit, restarting the other pods' containers meanwhile.
async fn wait_exit(play: &mut Play, id: &str) -> anyhow::Result<cri::ContainerStatus> {
    let mut last_tick = Instant::now();
    loop {
        let status = crate::containers::status(&mut play.rt, id, false)
            .await?
            .and_then(|r| r.status)
            .with_context(|| format!("container {id} is gone"))?;
        if status.state == cri::ContainerState::ContainerExited as i32 {
            return Ok(status);
        }
        play.check_interrupted()?;
        if last_tick.elapsed() >= Duration::from_secs(1) {
            play.tick().await?;
            last_tick = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sleep_ticking(play: &mut Play, wait: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + wait;
    while Instant::now() < end {
        play.check_interrupted()?;
        play.tick().await?;
        tokio::time::sleep((end - Instant::now()).min(Duration::from_secs(1))).await;
    }
    Ok(())
}

/// Starts pod `index` of the manifest: sandbox, init containers, app containers.
pub async fn start_pod(play: &mut Play, index: usize) -> anyhow::Result<()> {
    let pod = play.manifest.pods[index].clone();
    for c in pod.spec.init_containers.iter().chain(&pod.spec.containers) {
        pull(play, &c.image, pull_policy(&c.image, c.image_pull_policy))
            .await
            .with_context(|| format!("pod {}", pod.name))?;
    }
    let uid = crate::pods::uid();
    let sandbox = super::convert::sandbox(&play.plan(), &pod, &uid)?;
    let sources = volumes::plan(&play.manifest, &pod, &play.paths, &mut Vec::new())?;
    volumes::make(&pod, &sources)?;
    std::fs::create_dir_all(&sandbox.log_directory).with_context(|| {
        format!(
            "creating the pod log directory {} (--log-dir or BERTH_LOG_DIR choose another)",
            sandbox.log_directory
        )
    })?;
    // The hosts file must exist before a container mounts it; it gets its content below.
    super::hosts::write(&play.paths.hosts(&pod.name), "")?;
    let handler = pod.spec.runtime_class_name.clone().unwrap_or_default();
    let id = play
        .rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox.clone()),
            runtime_handler: handler,
        })
        .await
        .with_context(|| format!("running pod {}", pod.name))?
        .into_inner()
        .pod_sandbox_id;
    let status = play
        .rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await?
        .into_inner()
        .status
        .context("the pod has no status")?;
    let ip = status.network.map(|n| n.ip).unwrap_or_default();
    eprintln!(
        "Pod {} started (ID {}, IP {})",
        pod.name,
        crate::containers::short(&id),
        if ip.is_empty() { "-" } else { &ip }
    );
    let run = play.pods.len();
    play.pods.push(PodRun {
        index,
        id,
        facts: PodFacts { uid, ip },
        sandbox,
        sources,
    });
    play.write_hosts()?;
    for (i, c) in pod.spec.init_containers.iter().enumerate() {
        let which = Which {
            init: true,
            index: i,
        };
        let mut attempt = 0;
        loop {
            let id = play.create_start(run, which, attempt).await?;
            let status = wait_exit(play, &id).await?;
            if status.exit_code == 0 {
                break;
            }
            // kubelet restarts a failed init container unless the pod never restarts.
            if pod.restart == RestartPolicy::Never {
                bail!(
                    "{}: init container {} exited with code {} and restartPolicy is Never (see berth play --logs; berth play --down removes the play)",
                    pod.doc,
                    c.name,
                    status.exit_code
                );
            }
            let ran = Duration::from_nanos((status.finished_at - status.started_at).max(0) as u64);
            let wait = backoff(play.restart_delay, attempt, ran);
            eprintln!(
                "berth play: init container {}/{} exited with code {}; again in {wait:?}",
                pod.name, c.name, status.exit_code
            );
            sleep_ticking(play, wait).await?;
            attempt += 1;
        }
    }
    for index in 0..pod.spec.containers.len() {
        let which = Which { init: false, index };
        let id = play.create_start(run, which, 0).await?;
        play.containers.push(Tracked {
            pod: run,
            which,
            id,
            attempt: 0,
            done: None,
        });
    }
    Ok(())
}

/// Waits until every app container of the play's pod `run` is ready: running and its
/// readinessProbe passing (a container that completed and is not restarted counts as ready, so
/// a Job-like pod can come before the pods that need its work).
pub async fn wait_ready(play: &mut Play, run: usize, wait: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + wait;
    let pod = play.manifest.pods[play.pods[run].index].clone();
    let ip = play.pods[run].facts.ip.clone();
    // Per container: (the id it was made for, its prober).
    let mut probers: Vec<Option<(String, Prober)>> = Vec::new();
    probers.resize_with(pod.spec.containers.len(), || None);
    loop {
        play.check_interrupted()?;
        play.tick().await?;
        let mut ready = true;
        let mut why = String::new();
        for t in play.containers.clone().iter().filter(|t| t.pod == run) {
            let c = &pod.spec.containers[t.which.index];
            let status = crate::containers::status(&mut play.rt, &t.id, false)
                .await?
                .and_then(|r| r.status);
            let state = status.as_ref().map(|s| s.state);
            if state == Some(cri::ContainerState::ContainerExited as i32) {
                let code = status.as_ref().map_or(-1, |s| s.exit_code);
                if restarts(pod.restart, code) {
                    ready = false;
                    why = format!("container {} exited with code {code} (restarting)", c.name);
                } else if code != 0 {
                    bail!(
                        "{}: container {} exited with code {code} and restartPolicy {:?} does not restart it (see berth play --logs)",
                        pod.doc,
                        c.name,
                        pod.restart
                    );
                }
                continue;
            }
            if state != Some(cri::ContainerState::ContainerRunning as i32) {
                ready = false;
                why = format!("container {} is not running", c.name);
                continue;
            }
            let Some(probe) = &c.readiness_probe else {
                continue;
            };
            let slot = &mut probers[t.which.index];
            if slot.as_ref().is_none_or(|(id, _)| *id != t.id) {
                let action = probe::check(&pod, t.which, probe, "readinessProbe")?;
                *slot = Some((t.id.clone(), Prober::new(action, probe, Instant::now())));
            }
            if let Some((id, prober)) = slot
                && !prober.poll(&mut play.long, id, &ip).await
            {
                ready = false;
                why = format!(
                    "container {}: {}",
                    c.name,
                    prober
                        .last_error
                        .as_deref()
                        .unwrap_or("readiness probe not passed yet")
                );
            }
        }
        if ready {
            eprintln!("Pod {} ready", pod.name);
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "pod {} not ready after {}s: {why} (the play keeps running: berth play --logs shows its output, berth play --down removes it)",
                pod.name,
                wait.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The app containers that finished for good, and whether all did.
pub fn finished(play: &Play) -> (bool, i32) {
    let all = !play.containers.is_empty() && play.containers.iter().all(|t| t.done.is_some());
    let worst = play
        .containers
        .iter()
        .filter_map(|t| t.done)
        .find(|c| *c != 0)
        .unwrap_or(0);
    (all, worst)
}
