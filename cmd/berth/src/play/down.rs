//! `berth play --down`: everything a play made, found by the labels and annotations Berth put
//! on its pods (so it works after the CLI crashed, and without the manifest): the supervisor
//! first (it would restart what is being removed), then containers, pods, pod log directories
//! and the play's directory (volumes, configMap files, hosts files, state).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_cri_api::v1 as cri;

use super::convert::{DIR_ANNOTATION, GRACE_ANNOTATION, PLAY_LABEL};
use super::supervise::{list_containers, list_pods};
use super::volumes::Paths;
use crate::client::{self, Connect};

/// The supervisor's pid if it runs: the pid file's process, if its command line is a supervisor's.
pub fn supervisor(dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(dir.join("supervisor.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ours = args.iter().any(|a| *a == b"--supervise")
        && args
            .iter()
            .any(|a| *a == dir.join("play.json").as_os_str().as_encoded_bytes());
    // A zombie (reaped soon by init) is not running.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    (ours && !zombie).then_some(pid)
}

fn stop_supervisor(dir: &Path) {
    let Some(pid) = supervisor(dir) else {
        return;
    };
    use nix::sys::signal::{Signal, kill};
    let pid_t = nix::unistd::Pid::from_raw(pid);
    let _ = kill(pid_t, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while supervisor(dir).is_some() {
        if Instant::now() > deadline {
            let _ = kill(pid_t, Signal::SIGKILL);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("Stopped supervisor {pid}");
}

/// Removes a play directory only if it looks like one: named after the project, with Berth's
/// files in it (an annotation could be edited to point anywhere).
fn remove_dir(dir: &Path, project: &str) {
    let named = dir.file_name().is_some_and(|n| n == project);
    let ours = dir.join("play.json").exists() || dir.join("pods").is_dir();
    if !(named && ours) {
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => println!("Removed {}", dir.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("berth: removing {}: {e}", dir.display()),
    }
}

pub async fn down(connect: &Connect, project: &str, paths: &Paths) -> anyhow::Result<()> {
    let mut rt = connect.runtime().await?;
    let pods = list_pods(&mut rt, project).await?;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::from([paths.dir.clone()]);
    dirs.extend(
        pods.iter()
            .filter_map(|p| p.annotations.get(DIR_ANNOTATION))
            .map(PathBuf::from),
    );
    for dir in &dirs {
        stop_supervisor(dir);
    }
    let mut failed = 0;
    for pod in &pods {
        let name = pod.metadata.as_ref().map_or("?", |m| m.name.as_str());
        let grace: i64 = pod
            .annotations
            .get(GRACE_ANNOTATION)
            .and_then(|g| g.parse().ok())
            .unwrap_or(30);
        let result = remove_pod(connect, &mut rt, pod, grace).await;
        match result {
            Ok(()) => println!("Removed pod {name}"),
            Err(e) => {
                eprintln!("berth: removing pod {name}: {}", client::render(&e));
                failed += 1;
            }
        }
    }
    // Containers whose pod went some other way.
    for c in list_containers(&mut rt, &[(PLAY_LABEL, project)]).await? {
        let _ = rt
            .remove_container(cri::RemoveContainerRequest { container_id: c.id })
            .await;
    }
    if failed > 0 {
        anyhow::bail!("{failed} pod(s) not removed; the play's directories are kept");
    }
    for dir in &dirs {
        remove_dir(dir, project);
    }
    if pods.is_empty() {
        println!("No pods of play {project} found");
    }
    Ok(())
}

async fn remove_pod(
    connect: &Connect,
    rt: &mut crate::containers::Runtime,
    pod: &cri::PodSandbox,
    grace: i64,
) -> anyhow::Result<()> {
    let containers = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                pod_sandbox_id: pod.id.clone(),
                ..Default::default()
            }),
        })
        .await?
        .into_inner()
        .containers;
    let mut stopper = connect
        .runtime_for(Some(
            connect.timeout + Duration::from_secs(grace.max(0) as u64),
        ))
        .await?;
    for c in &containers {
        if c.state != cri::ContainerState::ContainerExited as i32 {
            stopper
                .stop_container(cri::StopContainerRequest {
                    container_id: c.id.clone(),
                    timeout: grace,
                })
                .await
                .with_context(|| format!("stopping container {}", c.id))?;
        }
        rt.remove_container(cri::RemoveContainerRequest {
            container_id: c.id.clone(),
        })
        .await
        .with_context(|| format!("removing container {}", c.id))?;
    }
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .context("stopping the pod")?;
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    })
    .await
    .context("removing the pod")?;
    if let Some(dir) = pod.annotations.get(crate::pods::LOG_DIR_ANNOTATION)
        && let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("berth: removing {dir}: {e}");
    }
    Ok(())
}
