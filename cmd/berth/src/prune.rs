//! Housekeeping over everything at once: `rm --all`, `rmp --all`, `rmi --prune` and
//! `berth system prune`, as crictl and docker do them.
//!
//! What counts as unused: an image no container (in any state) was created from, as crictl's
//! `rmi --prune` decides; pinned images (the sandbox image, those the runtime was told to keep)
//! are never removed.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};

use anyhow::bail;
use berth_cri_api::v1 as cri;
use clap::{Args, Subcommand};

use crate::client::{self, Connect};
use crate::containers::{self, Runtime};
use crate::images::Images;

const RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const EXITED: i32 = cri::ContainerState::ContainerExited as i32;
const READY: i32 = cri::PodSandboxState::SandboxReady as i32;

#[derive(Debug, Clone, Subcommand)]
pub enum SystemCommand {
    /// Remove exited containers, pods that are not ready, dangling images (-a: every unused one).
    Prune(PruneArgs),
    /// Show the disk used by images, containers and volumes, and how much pruning would free.
    Df(crate::df::DfArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Also remove every image no container uses, not only untagged (dangling) ones.
    #[arg(long, short)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(long, short)]
    pub force: bool,
    /// Print what was removed as a document (json or yaml) instead of docker's lines.
    #[arg(long, short = 'o', value_enum, value_name = "FORMAT")]
    pub output: Option<crate::output::Format>,
}

pub async fn system(connect: &Connect, command: &SystemCommand) -> anyhow::Result<()> {
    match command {
        SystemCommand::Prune(args) => prune(connect, args).await,
        SystemCommand::Df(args) => crate::df::df(connect, args).await,
    }
}

/// Bytes as docker prints sizes: 1000-based units, up to three decimals.
pub fn human_size(bytes: u64) -> String {
    match crate::table::scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB"]) {
        None => format!("{bytes}B"),
        Some((value, unit)) => {
            let number = format!("{value:.3}");
            format!(
                "{}{unit}",
                number.trim_end_matches('0').trim_end_matches('.')
            )
        }
    }
}

async fn list_containers(runtime: &mut Runtime) -> anyhow::Result<Vec<cri::Container>> {
    Ok(runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await?
        .into_inner()
        .containers)
}

async fn list_pods(runtime: &mut Runtime) -> anyhow::Result<Vec<cri::PodSandbox>> {
    Ok(runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await?
        .into_inner()
        .items)
}

pub async fn list_images(images: &mut Images) -> anyhow::Result<Vec<cri::Image>> {
    Ok(images
        .list_images(cri::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images)
}

/// Removes one container (killing it at once first if it is `running`); its log files go too.
async fn remove_container(runtime: &mut Runtime, id: &str, running: bool) -> anyhow::Result<()> {
    if running {
        // Timeout 0: killed at once, as `docker rm -f` does.
        runtime
            .stop_container(cri::StopContainerRequest {
                container_id: id.to_string(),
                timeout: 0,
            })
            .await?;
    }
    // Gone meanwhile (its pod was removed, or kubelet's GC was quicker): nothing to do.
    let Some(status) = containers::status(runtime, id, false)
        .await?
        .and_then(|r| r.status)
    else {
        return Ok(());
    };
    containers::remove(runtime, &status).await
}

/// `berth rm --all`: every container; running ones only with `force` (else they are named and
/// left). Prints the IDs removed; fails at the end if any removal failed.
pub async fn rm_all(runtime: &mut Runtime, force: bool) -> anyhow::Result<()> {
    let mut failed = 0;
    for c in list_containers(runtime).await? {
        let running = c.state == RUNNING;
        if running && !force {
            eprintln!(
                "berth: container {} is running: left (--force removes it)",
                c.id
            );
            continue;
        }
        match remove_container(runtime, &c.id, running).await {
            Ok(()) => println!("{}", c.id),
            Err(e) => {
                eprintln!("berth: removing container {}: {}", c.id, client::render(&e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} container(s) not removed");
    }
    Ok(())
}

/// Removes one pod (stopping it first if it is ready) and the log directory berth made for it.
async fn remove_pod(runtime: &mut Runtime, id: &str, ready: bool) -> anyhow::Result<()> {
    let status = runtime
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: false,
        })
        .await
        .ok()
        .and_then(|r| r.into_inner().status);
    if ready {
        runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await?;
    }
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await?;
    if let Some(status) = &status {
        crate::pods::remove_log_dir(status);
    }
    Ok(())
}

/// `berth rmp --all`: every pod (and so its containers); ready ones only with `force`.
pub async fn rmp_all(runtime: &mut Runtime, force: bool) -> anyhow::Result<()> {
    let mut failed = 0;
    for pod in list_pods(runtime).await? {
        let ready = pod.state == READY;
        if ready && !force {
            eprintln!("berth: pod {} is ready: left (--force removes it)", pod.id);
            continue;
        }
        match remove_pod(runtime, &pod.id, ready).await {
            Ok(()) => println!("Removed sandbox {}", pod.id),
            Err(e) => {
                eprintln!("berth: removing pod {}: {}", pod.id, client::render(&e));
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} pod(s) not removed");
    }
    Ok(())
}

/// The IDs of the images containers were created from. A container names its image by
/// reference and by `image_ref` (an ID or a digest): both are resolved through ImageStatus.
pub async fn images_in_use(
    containers: &[cri::Container],
    images: &mut Images,
) -> anyhow::Result<HashSet<String>> {
    let mut refs: HashSet<&str> = HashSet::new();
    for c in containers {
        refs.insert(c.image_ref.as_str());
        if let Some(spec) = &c.image {
            refs.insert(spec.image.as_str());
        }
    }
    let mut ids = HashSet::new();
    for reference in refs.into_iter().filter(|r| !r.is_empty()) {
        ids.insert(reference.to_string());
        let status = images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: reference.to_string(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await;
        // An image removed or never pulled under that name answers with none (or an error for a
        // name the runtime can't parse): it uses no image that is here.
        if let Some(image) = status.ok().and_then(|r| r.into_inner().image) {
            ids.insert(image.id);
        }
    }
    Ok(ids)
}

/// The images to prune: not pinned, not used, and (unless `all`) untagged.
pub fn unused<'a>(
    images: &'a [cri::Image],
    in_use: &HashSet<String>,
    all: bool,
) -> Vec<&'a cri::Image> {
    images
        .iter()
        .filter(|i| !i.pinned && !used(i, in_use))
        .filter(|i| all || i.repo_tags.is_empty())
        .collect()
}

/// Whether a container uses the image: by ID, or by one of its tags or digests.
pub fn used(image: &cri::Image, in_use: &HashSet<String>) -> bool {
    in_use.contains(&image.id)
        || image
            .repo_digests
            .iter()
            .chain(&image.repo_tags)
            .any(|r| in_use.contains(r))
}

/// Removes the images by ID; returns those removed (failures are reported and counted).
async fn remove_images<'a>(
    images: &mut Images,
    victims: &[&'a cri::Image],
    failed: &mut usize,
) -> Vec<&'a cri::Image> {
    let mut removed = Vec::new();
    for image in victims {
        let result = images
            .remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.id.clone(),
                    ..Default::default()
                }),
            })
            .await;
        match result {
            Ok(_) => removed.push(*image),
            Err(e) => {
                eprintln!("berth: removing image {}: {}", image.id, e.message());
                *failed += 1;
            }
        }
    }
    removed
}

/// `berth rmi --prune`: every image no container uses, pinned ones excepted.
pub async fn rmi_prune(connect: &Connect) -> anyhow::Result<()> {
    let mut runtime = connect.runtime().await?;
    let mut images = connect.images(Some(connect.timeout)).await?;
    let containers = list_containers(&mut runtime).await?;
    let in_use = images_in_use(&containers, &mut images).await?;
    let list = list_images(&mut images).await?;
    let mut failed = 0;
    for image in remove_images(&mut images, &unused(&list, &in_use, true), &mut failed).await {
        println!("Deleted: {}", image.id);
    }
    if failed > 0 {
        bail!("{failed} image(s) not removed");
    }
    Ok(())
}

/// The bytes the image filesystems use, if the runtime says.
pub async fn image_fs_used(images: &mut Images) -> Option<u64> {
    let response = images
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .ok()?
        .into_inner();
    let used: Vec<u64> = response
        .image_filesystems
        .iter()
        .filter_map(|f| f.used_bytes.as_ref().map(|b| b.value))
        .collect();
    (!used.is_empty()).then(|| used.iter().sum())
}

/// Each container's writable layer, as ListContainerStats reports it (runtimes may leave out
/// containers that don't run).
pub async fn writable_layers(runtime: &mut Runtime) -> HashMap<String, u64> {
    let Ok(response) = runtime
        .list_container_stats(cri::ListContainerStatsRequest { filter: None })
        .await
    else {
        return HashMap::new();
    };
    response
        .into_inner()
        .stats
        .into_iter()
        .filter_map(|s| {
            let id = s.attributes?.id;
            Some((id, s.writable_layer?.used_bytes?.value))
        })
        .collect()
}

/// docker's question; `true` to go on. Asked only on a terminal: a script says --force, or
/// runs without one.
fn confirm(all: bool) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    let images = if all {
        "  - all images without at least one container associated to them"
    } else {
        "  - all dangling images"
    };
    eprint!(
        "WARNING! This will remove:\n  - all exited containers\n  - all pods that are not ready\n\
         {images}\n\nAre you sure you want to continue? [y/N] "
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

pub async fn prune(connect: &Connect, args: &PruneArgs) -> anyhow::Result<()> {
    if !args.force && !confirm(args.all)? {
        return Ok(());
    }
    let mut runtime = connect.runtime().await?;
    let mut images = connect.images(Some(connect.timeout)).await?;
    let mut failed = 0;
    let layers = writable_layers(&mut runtime).await;
    let mut reclaimed: u64 = 0;

    let mut removed_containers = Vec::new();
    for c in list_containers(&mut runtime).await? {
        if c.state != EXITED {
            continue;
        }
        match remove_container(&mut runtime, &c.id, false).await {
            Ok(()) => {
                reclaimed += layers.get(&c.id).copied().unwrap_or(0);
                removed_containers.push(c.id);
            }
            Err(e) => {
                eprintln!("berth: removing container {}: {}", c.id, client::render(&e));
                failed += 1;
            }
        }
    }
    let mut removed_pods = Vec::new();
    for pod in list_pods(&mut runtime).await? {
        if pod.state == READY {
            continue;
        }
        match remove_pod(&mut runtime, &pod.id, false).await {
            Ok(()) => removed_pods.push(pod.id),
            Err(e) => {
                eprintln!("berth: removing pod {}: {}", pod.id, client::render(&e));
                failed += 1;
            }
        }
    }
    // After the containers: the images only they used are unused now.
    let containers = list_containers(&mut runtime).await?;
    let in_use = images_in_use(&containers, &mut images).await?;
    let list = list_images(&mut images).await?;
    let victims = unused(&list, &in_use, args.all);
    let removed_images = remove_images(&mut images, &victims, &mut failed).await;
    // The images' own sizes: the image filesystem's figure drops only once the runtime's
    // garbage collection has removed the layers, which may be later.
    reclaimed += removed_images.iter().map(|i| i.size).sum::<u64>();

    let image_ids: Vec<&str> = removed_images.iter().map(|i| i.id.as_str()).collect();
    if let Some(format) = args.output {
        let doc = serde_json::json!({
            "containersDeleted": removed_containers,
            "podsDeleted": removed_pods,
            "imagesDeleted": image_ids,
            "spaceReclaimed": reclaimed,
        });
        let output = crate::output::OutputArgs {
            output: Some(format),
            format: None,
        };
        crate::output::one(&output, &doc)?;
    } else {
        let mut out = std::io::stdout().lock();
        for (title, ids) in [
            (
                "Deleted Containers:",
                removed_containers.iter().map(String::as_str).collect(),
            ),
            (
                "Deleted Pods:",
                removed_pods.iter().map(String::as_str).collect(),
            ),
            ("Deleted Images:", image_ids),
        ] {
            if !ids.is_empty() {
                writeln!(out, "{title}\n{}\n", ids.join("\n"))?;
            }
        }
        writeln!(out, "Total reclaimed space: {}", human_size(reclaimed))?;
    }
    if failed > 0 {
        bail!("{failed} removal(s) failed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, tags: &[&str], pinned: bool) -> cri::Image {
        cri::Image {
            id: id.into(),
            repo_tags: tags.iter().map(|t| t.to_string()).collect(),
            repo_digests: vec![format!("r/{id}@sha256:{id}")],
            pinned,
            size: 10,
            ..Default::default()
        }
    }

    #[test]
    fn only_unpinned_unused_images_are_pruned() {
        let list = [
            image("a", &["r/a:1"], false),
            image("b", &["r/b:1"], false),
            image("c", &[], false),
            image("p", &["pause:3"], true),
            image("d", &["r/d:1"], false),
        ];
        // Used by ID, and by a digest reference.
        let in_use: HashSet<String> = ["a".to_string(), "r/d@sha256:d".to_string()].into();
        let ids = |v: Vec<&cri::Image>| v.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(unused(&list, &in_use, true)), ["b", "c"]);
        assert_eq!(ids(unused(&list, &in_use, false)), ["c"]);
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(12_345_678), "12.346MB");
    }
}
