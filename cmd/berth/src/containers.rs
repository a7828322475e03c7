//! Container verbs, as docker names them: `create`, `start`, `stop`, `rm`; finding containers.
//!
//! Containers are named by ID, unique ID prefix, or (docker-style) by name when only one container
//! has it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use clap::Args;
use tonic::Code;

use crate::client::{self, Connect};
use crate::flags::ContainerArgs;
use crate::pods;

pub type Runtime = pods::Runtime;

/// A ContainerStatus call; `None` if the runtime has no such container.
pub async fn status(
    runtime: &mut Runtime,
    id: &str,
    verbose: bool,
) -> anyhow::Result<Option<cri::ContainerStatusResponse>> {
    let request = cri::ContainerStatusRequest {
        container_id: id.to_string(),
        verbose,
    };
    match runtime.container_status(request).await {
        Ok(r) => Ok(Some(r.into_inner()).filter(|r| r.status.is_some())),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// The container `arg` names: an ID or unique prefix (the runtime resolves those), else the name of
/// exactly one container.
pub async fn find_response(
    runtime: &mut Runtime,
    arg: &str,
    verbose: bool,
) -> anyhow::Result<cri::ContainerStatusResponse> {
    let request = cri::ContainerStatusRequest {
        container_id: arg.to_string(),
        verbose,
    };
    let error = match runtime.container_status(request).await {
        Ok(r) if r.get_ref().status.is_some() => return Ok(r.into_inner()),
        Ok(_) => tonic::Status::not_found(format!("container {arg:?} not found")),
        Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => s,
        Err(s) => return Err(s.into()),
    };
    let named = runtime
        .list_containers(cri::ListContainersRequest { filter: None })
        .await
        .map(|r| r.into_inner().containers)
        .unwrap_or_default();
    let ids: Vec<&str> = named
        .iter()
        .filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == arg))
        .map(|c| c.id.as_str())
        .collect();
    match ids[..] {
        [id] => match status(runtime, id, verbose).await? {
            Some(r) => Ok(r),
            None => Err(error.into()),
        },
        [] => Err(error.into()),
        _ => bail!(
            "{} containers are named {arg:?}: name one by its ID",
            ids.len()
        ),
    }
}

pub async fn find(
    runtime: &mut Runtime,
    arg: &str,
    verbose: bool,
) -> anyhow::Result<cri::ContainerStatus> {
    let response = find_response(runtime, arg, verbose).await?;
    response
        .status
        .with_context(|| format!("container {arg:?} not found"))
}

/// The pod `arg` names: ID, unique ID prefix, or the name of exactly one pod.
pub async fn find_pod(runtime: &mut Runtime, arg: &str) -> anyhow::Result<cri::PodSandboxStatus> {
    let request = |id: &str| cri::PodSandboxStatusRequest {
        pod_sandbox_id: id.to_string(),
        verbose: false,
    };
    let error = match runtime.pod_sandbox_status(request(arg)).await {
        Ok(r) => {
            if let Some(s) = r.into_inner().status {
                return Ok(s);
            }
            tonic::Status::not_found(format!("pod sandbox {arg:?} not found"))
        }
        Err(s) if matches!(s.code(), Code::NotFound | Code::InvalidArgument) => s,
        Err(s) => return Err(s.into()),
    };
    let pods = runtime
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items)
        .unwrap_or_default();
    let ids: Vec<&str> = pods
        .iter()
        .filter(|p| p.metadata.as_ref().is_some_and(|m| m.name == arg))
        .map(|p| p.id.as_str())
        .collect();
    match ids[..] {
        [id] => runtime
            .pod_sandbox_status(request(id))
            .await?
            .into_inner()
            .status
            .ok_or_else(|| error.into()),
        [] => Err(error.into()),
        _ => bail!("{} pods are named {arg:?}: name one by its ID", ids.len()),
    }
}

/// The pod's config as far as its status tells it: what CreateContainer gets as `sandbox_config`
/// (kubelet sends the config the pod was created with).
fn sandbox_config(status: &cri::PodSandboxStatus) -> cri::PodSandboxConfig {
    let options = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.clone());
    cri::PodSandboxConfig {
        metadata: status.metadata.clone(),
        log_directory: pods::log_dir(status).unwrap_or_default().to_string(),
        labels: status.labels.clone(),
        annotations: status.annotations.clone(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: options,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn state_name(state: i32) -> &'static str {
    match cri::ContainerState::try_from(state) {
        Ok(cri::ContainerState::ContainerCreated) => "Created",
        Ok(cri::ContainerState::ContainerRunning) => "Running",
        Ok(cri::ContainerState::ContainerExited) => "Exited",
        _ => "Unknown",
    }
}

/// Docker's and crictl's 13-character IDs.
pub fn short(id: &str) -> String {
    id.strip_prefix("sha256:")
        .unwrap_or(id)
        .chars()
        .take(13)
        .collect()
}

/// Verbs over several IDs go on past a failure, as docker's do, and fail at the end.
struct Batch {
    total: usize,
    failed: usize,
    verb: &'static str,
}

impl Batch {
    fn new(total: usize, verb: &'static str) -> Batch {
        Batch {
            total,
            failed: 0,
            verb,
        }
    }

    fn record(&mut self, id: &str, result: anyhow::Result<()>) -> anyhow::Result<()> {
        match result {
            Ok(()) => {
                println!("{id}");
                Ok(())
            }
            Err(e) if self.total == 1 => Err(e),
            Err(e) => {
                eprintln!("berth: {}", client::render(&e));
                self.failed += 1;
                Ok(())
            }
        }
    }

    fn finish(self) -> anyhow::Result<()> {
        if self.failed > 0 {
            bail!(
                "{} of {} containers not {}",
                self.failed,
                self.total,
                self.verb
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The pod (ID, unique ID prefix or name) to create the container in. `berth run` makes a pod.
    #[arg(long)]
    pub pod: Option<String>,
    #[command(flatten)]
    pub container: ContainerArgs,
}

/// Creates a container in `pod_id` from `args` (its image pulled already); returns its ID.
pub async fn create_in(
    runtime: &mut Runtime,
    pod_id: &str,
    sandbox: cri::PodSandboxConfig,
    args: &ContainerArgs,
    name: &str,
) -> anyhow::Result<String> {
    let config = args.config(name, &format!("{name}.log"))?;
    let id = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(config),
            sandbox_config: Some(sandbox),
        })
        .await?
        .into_inner()
        .container_id;
    Ok(id)
}

pub async fn create(connect: &Connect, args: &CreateArgs) -> anyhow::Result<()> {
    let Some(pod) = &args.pod else {
        bail!(
            "create needs --pod POD, the pod to create the container in \
             (berth run starts a container in a pod of its own)"
        );
    };
    let mut runtime = connect.runtime().await?;
    let pod = find_pod(&mut runtime, pod).await?;
    let name = args.container.name();
    args.container.config(&name, "")?;
    crate::images::ensure(connect, args.container.image(), false).await?;
    let container = crate::volume::resolve_mounts(connect, &args.container).await?;
    let id = create_in(
        &mut runtime,
        &pod.id,
        sandbox_config(&pod),
        &container,
        &name,
    )
    .await?;
    println!("{id}");
    Ok(())
}

pub async fn start(runtime: &mut Runtime, ids: &[String]) -> anyhow::Result<()> {
    let mut batch = Batch::new(ids.len(), "started");
    for arg in ids {
        let result = async {
            let id = find(runtime, arg, false).await?.id;
            runtime
                .start_container(cri::StartContainerRequest { container_id: id })
                .await?;
            Ok(())
        };
        batch.record(arg, result.await)?;
    }
    batch.finish()
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM (or the image's stop signal) before SIGKILL.
    #[arg(
        long = "time",
        short = 't',
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub time: u32,
    /// Container IDs, unique ID prefixes or names.
    #[arg(required = true)]
    pub ids: Vec<String>,
}

pub async fn stop(connect: &Connect, args: &StopArgs) -> anyhow::Result<()> {
    // The call lasts as long as the grace period, and then some.
    let call = connect.timeout + Duration::from_secs(args.time.into());
    let mut runtime = connect.runtime_for(Some(call)).await?;
    let mut batch = Batch::new(args.ids.len(), "stopped");
    for arg in &args.ids {
        let result = async {
            let id = find(&mut runtime, arg, false).await?.id;
            runtime
                .stop_container(cri::StopContainerRequest {
                    container_id: id,
                    timeout: args.time.into(),
                })
                .await?;
            Ok(())
        };
        batch.record(arg, result.await)?;
    }
    batch.finish()
}

#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// Kill and remove running containers.
    #[arg(long, short)]
    pub force: bool,
    /// Remove every container (running ones only with --force; without it they are left and named).
    #[arg(long, short, conflicts_with = "ids")]
    pub all: bool,
    /// Container IDs, unique ID prefixes or names.
    #[arg(required_unless_present = "all")]
    pub ids: Vec<String>,
}

/// Removes a container and its log files (kubelet removes a removed container's logs too).
pub async fn remove(runtime: &mut Runtime, status: &cri::ContainerStatus) -> anyhow::Result<()> {
    runtime
        .remove_container(cri::RemoveContainerRequest {
            container_id: status.id.clone(),
        })
        .await?;
    remove_log(&status.log_path);
    Ok(())
}

/// The log file and its rotated copies (`<file>.<suffix>`, as kubelet names them).
fn remove_log(path: &str) {
    let path = Path::new(path);
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    if !path.is_absolute() {
        return;
    }
    let prefix = format!("{}.", name.to_string_lossy());
    let rotated = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path());
    for file in std::iter::once(path.to_path_buf()).chain(rotated) {
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                eprintln!("berth: removing {}: {e}", file.display());
            }
            _ => {}
        }
    }
}

pub async fn rm(runtime: &mut Runtime, args: &RmArgs) -> anyhow::Result<()> {
    if args.all {
        return crate::prune::rm_all(runtime, args.force).await;
    }
    let mut batch = Batch::new(args.ids.len(), "removed");
    for arg in &args.ids {
        let result = async {
            let status = find(runtime, arg, false).await?;
            if status.state == cri::ContainerState::ContainerRunning as i32 {
                if !args.force {
                    bail!(
                        "container {arg} is running: stop it first (berth stop), or remove it with --force"
                    );
                }
                // Timeout 0: killed at once, as `docker rm -f` does.
                runtime
                    .stop_container(cri::StopContainerRequest {
                        container_id: status.id.clone(),
                        timeout: 0,
                    })
                    .await?;
            }
            remove(runtime, &status).await
        };
        batch.record(arg, result.await)?;
    }
    batch.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_a_log_takes_its_rotations() {
        let dir = std::env::temp_dir().join(format!("berth-rmlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "web.log",
            "web.log.20240501-100000",
            "web.log.1.gz",
            "other.log",
        ] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        remove_log(&dir.join("web.log").to_string_lossy());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["other.log"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
