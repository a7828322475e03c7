//! `berth run`: a container in a pod of its own, as `docker run` starts one. The image is pulled if
//! absent, the pod (named after the container, namespace "default") is started, then the container
//! is created and started. Without `-d`, its output is printed until it exits, and berth exits with
//! its exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use clap::Args;
use clap::builder::PossibleValuesParser;

use crate::client::{self, Connect};
use crate::containers::{self, Runtime};
use crate::flags::ContainerArgs;
use crate::logs::{self, End, Follower, Tail};
use crate::pods;

/// The grace period a Ctrl-C gives the container, as `docker stop`'s default.
const STOP_GRACE_SECS: i64 = 10;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Print the container ID and leave it running, instead of printing its output until it exits.
    #[arg(long, short)]
    pub detach: bool,
    /// Remove the container and its pod once it has exited.
    #[arg(long)]
    pub rm: bool,
    /// Pull without showing progress.
    #[arg(long, short)]
    pub quiet: bool,
    /// Publish a port, HOST:CONTAINER[/tcp|udp|sctp]; repeatable.
    #[arg(
        long = "port",
        short = 'p',
        visible_alias = "publish",
        value_name = "HOST:CONTAINER"
    )]
    pub ports: Vec<String>,
    /// "host": use the node's network; "pod" (default): a network of the pod's own.
    #[arg(
        long = "net",
        visible_alias = "network",
        default_value = "pod",
        value_parser = PossibleValuesParser::new(["pod", "host", "bridge", "default"])
    )]
    pub net: String,
    /// RuntimeClass handler (default: the configured default).
    #[arg(long, default_value = "")]
    pub runtime: String,
    /// Where pod log directories are made.
    #[arg(
        long = "log-dir",
        env = "BERTH_LOG_DIR",
        default_value = pods::LOG_ROOT,
        value_name = "DIR"
    )]
    pub log_root: String,
    #[command(flatten)]
    pub container: ContainerArgs,
}

impl RunArgs {
    fn pod(&self, name: &str) -> pods::RunPod {
        pods::RunPod {
            name: name.to_string(),
            namespace: "default".to_string(),
            host_network: self.net == "host",
            share_pid: false,
            ports: self.ports.clone(),
            labels: Vec::new(),
            runtime_handler: self.runtime.clone(),
            log_root: self.log_root.clone(),
        }
    }
}

/// Stops and removes a pod `run` made, and its log directory. Best effort: failures are reported.
async fn remove_pod(runtime: &mut Runtime, pod_id: &str, sandbox: &cri::PodSandboxConfig) {
    let result = async {
        runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await?;
        runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.to_string(),
            })
            .await?;
        anyhow::Ok(())
    };
    if let Err(e) = result.await {
        eprintln!("berth: removing pod {pod_id}: {}", client::render(&e));
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(&sandbox.log_directory)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("berth: removing {}: {e}", sandbox.log_directory);
    }
}

/// `--rm`: the container, then its pod.
async fn remove_all(
    runtime: &mut Runtime,
    id: &str,
    pod_id: &str,
    sandbox: &cri::PodSandboxConfig,
) {
    match containers::status(runtime, id, false).await {
        Ok(Some(r)) => {
            if let Some(status) = r.status
                && let Err(e) = containers::remove(runtime, &status).await
            {
                eprintln!("berth: removing container {id}: {}", client::render(&e));
            }
        }
        Ok(None) => {}
        Err(e) => eprintln!("berth: container {id}: {}", client::render(&e)),
    }
    remove_pod(runtime, pod_id, sandbox).await;
}

/// Ctrl-C once: stop the container (berth then exits with its exit code); twice: stop waiting for
/// it (berthd carries on with the stop). Returns how many Ctrl-Cs came.
fn on_interrupt(stopper: Runtime, id: String) -> anyhow::Result<Arc<AtomicUsize>> {
    let count = Arc::new(AtomicUsize::new(0));
    let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("handling SIGINT")?;
    let seen = count.clone();
    tokio::spawn(async move {
        while signals.recv().await.is_some() {
            if seen.fetch_add(1, Ordering::SeqCst) > 0 {
                continue;
            }
            eprintln!(
                "Stopping container {} ({STOP_GRACE_SECS} s grace; Ctrl-C again to stop waiting)",
                &id[..id.len().min(13)]
            );
            let mut stopper = stopper.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let request = cri::StopContainerRequest {
                    container_id: id.clone(),
                    timeout: STOP_GRACE_SECS,
                };
                if let Err(s) = stopper.stop_container(request).await {
                    eprintln!("berth: stopping container {id}: {}", s.message());
                }
            });
        }
    });
    Ok(count)
}

pub async fn run(connect: &Connect, args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.rm && args.detach {
        bail!(
            "--rm and --detach don't go together: nothing would remove the container when it exits"
        );
    }
    if args.container.interactive && !args.detach {
        eprintln!(
            "berth: -i: berth run shows the container's output but does not write to its stdin; \
             for that, start it with -d -i and use berth attach"
        );
    }
    let name = args.container.name();
    // Bad flags fail before anything is pulled or made.
    args.container.config(&name, "")?;
    let pod = args.pod(&name);
    pod.config()?;
    let mut runtime = connect.runtime().await?;
    crate::images::ensure(connect, args.container.image(), args.quiet).await?;
    // Named volumes (-v NAME:/path) before the pod: a bad one leaves nothing behind.
    let container = crate::volume::resolve_mounts(connect, &args.container).await?;

    let (pod_id, sandbox) = pods::start(&mut runtime, &pod).await?;
    let created =
        containers::create_in(&mut runtime, &pod_id, sandbox.clone(), &container, &name).await;
    let id = match created {
        Ok(id) => id,
        Err(e) => {
            remove_pod(&mut runtime, &pod_id, &sandbox).await;
            return Err(e.context(format!("creating container {name}")));
        }
    };
    let started = runtime
        .start_container(cri::StartContainerRequest {
            container_id: id.clone(),
        })
        .await;
    if let Err(e) = started {
        if args.rm {
            remove_all(&mut runtime, &id, &pod_id, &sandbox).await;
        }
        return Err(anyhow::Error::from(e).context(format!("starting container {name}")));
    }
    if args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }

    let status = containers::find(&mut runtime, &id, false).await?;
    let path = logs::log_path(&status).unwrap_or_else(|e| {
        eprintln!("berth: {e:#}: its output can't be shown");
        PathBuf::new()
    });
    let mut follower = Follower::new(path, false, Tail(None));
    let stopper = connect
        .runtime_for(Some(
            connect.timeout + Duration::from_secs(STOP_GRACE_SECS as u64),
        ))
        .await?;
    let interrupts = on_interrupt(stopper, id.clone())?;
    let end = logs::follow(&mut runtime, &id, &mut follower, || {
        interrupts.load(Ordering::SeqCst) > 1
    })
    .await?;
    let code = match end {
        End::Exited(code) => code,
        End::Gone => bail!("container {id} was removed while it ran"),
        End::Interrupted => {
            eprintln!("Not waiting for container {id} (pod {pod_id}) to stop");
            return Ok(ExitCode::from(130));
        }
    };
    if args.rm {
        remove_all(&mut runtime, &id, &pod_id, &sandbox).await;
    }
    Ok(ExitCode::from((code & 0xff) as u8))
}
