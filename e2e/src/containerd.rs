//! A pod on containerd's CRI socket, used as a reference: containerd 1.6's CRI plugin serves
//! Exec/Attach/PortForward with Kubernetes' own streaming code, so a test that passes against it
//! shows what Berth is held to is what Kubernetes does. The tests using it are `#[ignore]`d: they
//! need the private containerd of `hack/bench/containerd.sh` (see `tests/streaming_containerd.rs`).
//!
//! One pod per test ([`ReferencePod`]), each check's outcome gathered by [`Checks`] so that one run
//! reports every difference, and the pod removed whatever happened, leaving containerd as it was.

use std::fmt::Display;
use std::path::PathBuf;
use std::time::Duration;

use berth_cri_api::v1 as cri;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use tempfile::TempDir;
use tonic::transport::Channel;

use crate::streaming::cri::{exec_url, images, runtime};
use crate::streaming::{ExecOptions, ExecOutput, Transport, exec};

/// containerd's CRI socket: `BERTH_BENCH_CONTAINERD_ENDPOINT` (what `containerd.sh env` exports),
/// else where `containerd.sh` puts it by default.
pub fn socket() -> PathBuf {
    let endpoint = std::env::var("BERTH_BENCH_CONTAINERD_ENDPOINT")
        .unwrap_or_else(|_| "unix:///var/tmp/berth-bench/containerd/containerd.sock".to_string());
    PathBuf::from(endpoint.trim_start_matches("unix://"))
}

/// A container config for the reference pod: name, image, command, log `<name>.log`, nothing else
/// (callers set `stdin`, `stdin_once` or `tty`).
pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(Default::default()),
        ..Default::default()
    }
}

/// A running pod on containerd and a runtime client to it.
pub struct ReferencePod {
    pub rt: RuntimeServiceClient<Channel>,
    /// The pod sandbox id.
    pub id: String,
    /// What the pod was run with (CreateContainer sends it again).
    pub config: cri::PodSandboxConfig,
    /// The pod's log directory, removed when the pod is dropped.
    _log_dir: TempDir,
}

impl ReferencePod {
    /// Pulls `images`, then runs a pod named `name` (namespace `e2e`). Panics if containerd does
    /// not answer: start it first.
    pub async fn run(name: &str, images_to_pull: &[String]) -> ReferencePod {
        let socket = socket();
        let mut img = images(&socket)
            .await
            .expect("containerd's CRI socket (start it first)");
        for image in images_to_pull {
            img.pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("pulling {image}: {e:?}"));
        }
        let log_dir = tempfile::tempdir().expect("log dir");
        let config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: format!("{name}-{}", std::process::id()),
                namespace: "e2e".into(),
                attempt: 0,
            }),
            log_directory: log_dir.path().to_string_lossy().into_owned(),
            linux: Some(Default::default()),
            ..Default::default()
        };
        let mut rt = runtime(&socket).await.expect("runtime client");
        let id = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;
        ReferencePod {
            rt,
            id,
            config,
            _log_dir: log_dir,
        }
    }

    /// Runs `checks` for at most `limit`, removes the pod whatever happened, then panics if the
    /// checks ran out of time or any of them failed.
    pub async fn check_then_remove(
        mut self,
        limit: Duration,
        checks: impl AsyncFnOnce(&mut ReferencePod, &mut Checks),
    ) {
        let mut results = Checks::default();
        let finished = tokio::time::timeout(limit, checks(&mut self, &mut results)).await;
        self.remove().await;
        assert!(finished.is_ok(), "the checks took over {limit:?}");
        results.assert_passed();
    }

    /// Stops and removes the pod, ignoring errors: it is teardown, after the checks.
    pub async fn remove(&mut self) {
        let _ = self
            .rt
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: self.id.clone(),
            })
            .await;
        let _ = self
            .rt
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: self.id.clone(),
            })
            .await;
    }

    /// CreateContainer then StartContainer in the pod; returns the container id. Panics if either
    /// fails: the checks need the container.
    pub async fn run_container(&mut self, config: cri::ContainerConfig) -> String {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let id = self
            .rt
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: self.id.clone(),
                config: Some(config),
                sandbox_config: Some(self.config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e:?}"))
            .into_inner()
            .container_id;
        self.rt
            .start_container(cri::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("StartContainer {name}: {e:?}"));
        id
    }

    /// The container's state and exit code.
    pub async fn state(&mut self, id: &str) -> anyhow::Result<(i32, i32)> {
        let status = self
            .rt
            .container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await?
            .into_inner()
            .status
            .unwrap_or_default();
        Ok((status.state, status.exit_code))
    }

    /// Exec RPC, then the one-shot streaming client on its URL.
    pub async fn exec(
        &mut self,
        id: &str,
        cmd: &[&str],
        transport: Transport,
        options: ExecOptions,
    ) -> anyhow::Result<ExecOutput> {
        let url = exec_url(&mut self.rt, id, cmd, options.streams()).await?;
        exec(&url, transport, options).await
    }
}

/// The checks of a reference run: each is printed as it ends (`ok` or `FAIL`) and the failures
/// gathered, so that one run shows every way the reference differs, not only the first.
#[derive(Default)]
pub struct Checks {
    failures: Vec<String>,
}

impl Checks {
    pub fn check(&mut self, name: impl Display, result: anyhow::Result<()>) {
        match result {
            Ok(()) => println!("ok   {name}"),
            Err(e) => {
                println!("FAIL {name}: {e:#}");
                self.failures.push(format!("{name}: {e:#}"));
            }
        }
    }

    /// Panics listing the failed checks, if any.
    pub fn assert_passed(&self) {
        assert!(
            self.failures.is_empty(),
            "failed checks:\n{}",
            self.failures.join("\n")
        );
    }
}
