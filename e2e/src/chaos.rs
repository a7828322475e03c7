//! Helpers for the chaos tests (`e2e/tests/chaos_*.rs`): a CRI client that never panics and
//! gives every RPC kubelet's kind of deadline, kubelet's cleanup of a pod after errors, restarts
//! with failpoints armed, and a small seeded RNG so that a random run can be replayed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_cri_api::v1 as cri;
use berth_cri_api::v1::image_service_client::ImageServiceClient;
use berth_cri_api::v1::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::Berthd;

/// How long one RPC may take before the test calls it hung. Kubelet's runtime request timeout is
/// 2 minutes; nothing these tests do should come close to a quarter of that.
pub const RPC_DEADLINE: Duration = Duration::from_secs(30);

/// A failed RPC: `hung` when it did not answer within [`RPC_DEADLINE`] (always a bug), else the
/// status or transport error (expected while berthd is down).
#[derive(Debug)]
pub struct RpcError {
    pub what: String,
    pub hung: bool,
    pub message: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hung = if self.hung { " (HUNG)" } else { "" };
        write!(f, "{}{hung}: {}", self.what, self.message)
    }
}

impl std::error::Error for RpcError {}

/// A CRI runtime client by socket path: it reconnects for every call, so it keeps working across
/// berthd restarts, and it needs no `&Berthd` (which the killer holds mutably).
#[derive(Clone)]
pub struct Cri {
    socket: PathBuf,
}

/// One call through a fresh client from `$connect`, within [`RPC_DEADLINE`].
macro_rules! call_with {
    ($self:ident, $connect:ident, $what:expr, $method:ident, $request:expr) => {{
        let what: String = $what;
        let call = async {
            let mut client = $self.$connect().await.map_err(|e| e.to_string())?;
            client
                .$method($request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
        };
        match tokio::time::timeout(RPC_DEADLINE, call).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(message)) => Err(RpcError {
                what,
                hung: false,
                message,
            }),
            Err(_) => Err(RpcError {
                what,
                hung: true,
                message: format!("no answer within {RPC_DEADLINE:?}"),
            }),
        }
    }};
}

/// A runtime service call (see [`call_with!`]).
macro_rules! rpc {
    ($self:ident, $what:expr, $method:ident, $request:expr) => {
        call_with!($self, connect, $what, $method, $request)
    };
}

/// An image service call (see [`call_with!`]).
macro_rules! image_rpc {
    ($self:ident, $what:expr, $method:ident, $request:expr) => {
        call_with!($self, connect_images, $what, $method, $request)
    };
}

impl Cri {
    pub fn new(berthd: &Berthd) -> Cri {
        Cri {
            socket: berthd.socket.clone(),
        }
    }

    /// A fresh channel to berthd's socket (one per call: berthd may have restarted since).
    async fn channel(&self) -> anyhow::Result<Channel> {
        let path = self.socket.clone();
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        });
        Ok(Endpoint::try_from("http://[::]:0")?
            .connect_timeout(Duration::from_secs(2))
            .connect_with_connector(connector)
            .await?)
    }

    async fn connect(&self) -> anyhow::Result<RuntimeServiceClient<Channel>> {
        Ok(RuntimeServiceClient::new(self.channel().await?))
    }

    async fn connect_images(&self) -> anyhow::Result<ImageServiceClient<Channel>> {
        Ok(ImageServiceClient::new(self.channel().await?))
    }

    /// Version and Status both answer: berthd is alive and serving.
    pub async fn alive(&self) -> Result<(), RpcError> {
        rpc!(
            self,
            "Version".into(),
            version,
            cri::VersionRequest::default()
        )?;
        let request = cri::StatusRequest { verbose: false };
        rpc!(self, "Status".into(), status, request).map(|_| ())
    }

    /// PullImage; returns the image ref.
    pub async fn pull(&self, image: &str) -> Result<String, RpcError> {
        let request = cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
            auth: None,
            sandbox_config: None,
        };
        image_rpc!(self, format!("PullImage {image}"), pull_image, request).map(|r| r.image_ref)
    }

    pub async fn images(&self) -> Result<Vec<cri::Image>, RpcError> {
        let request = cri::ListImagesRequest { filter: None };
        image_rpc!(self, "ListImages".into(), list_images, request).map(|r| r.images)
    }

    pub async fn remove_image(&self, image: &str) -> Result<(), RpcError> {
        let request = cri::RemoveImageRequest {
            image: Some(cri::ImageSpec {
                image: image.into(),
                ..Default::default()
            }),
        };
        image_rpc!(self, format!("RemoveImage {image}"), remove_image, request).map(|_| ())
    }

    /// ImageFsInfo's used bytes of the image filesystems.
    pub async fn image_fs_used(&self) -> Result<u64, RpcError> {
        let request = cri::ImageFsInfoRequest {};
        image_rpc!(self, "ImageFsInfo".into(), image_fs_info, request).map(|r| {
            r.image_filesystems
                .iter()
                .filter_map(|f| f.used_bytes.as_ref())
                .map(|u| u.value)
                .sum()
        })
    }

    /// The container's full status.
    pub async fn status(&self, id: &str) -> Result<cri::ContainerStatus, RpcError> {
        let request = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        };
        rpc!(
            self,
            format!("ContainerStatus {id}"),
            container_status,
            request
        )
        .map(|r| r.status.unwrap_or_default())
    }

    pub async fn run_pod(&self, config: &cri::PodSandboxConfig) -> Result<String, RpcError> {
        let request = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        rpc!(self, "RunPodSandbox".into(), run_pod_sandbox, request).map(|r| r.pod_sandbox_id)
    }

    pub async fn stop_pod(&self, id: &str) -> Result<(), RpcError> {
        let request = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        rpc!(
            self,
            format!("StopPodSandbox {id}"),
            stop_pod_sandbox,
            request
        )
        .map(|_| ())
    }

    pub async fn remove_pod(&self, id: &str) -> Result<(), RpcError> {
        let request = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        rpc!(
            self,
            format!("RemovePodSandbox {id}"),
            remove_pod_sandbox,
            request
        )
        .map(|_| ())
    }

    /// Pods, optionally only those with label `app=<app>`.
    pub async fn pods(&self, app: Option<&str>) -> Result<Vec<cri::PodSandbox>, RpcError> {
        let filter = app.map(|app| cri::PodSandboxFilter {
            label_selector: [("app".to_string(), app.to_string())].into(),
            ..Default::default()
        });
        let request = cri::ListPodSandboxRequest { filter };
        rpc!(self, "ListPodSandbox".into(), list_pod_sandbox, request).map(|r| r.items)
    }

    pub async fn create(
        &self,
        pod: &str,
        pod_config: &cri::PodSandboxConfig,
        config: &cri::ContainerConfig,
    ) -> Result<String, RpcError> {
        let request = cri::CreateContainerRequest {
            pod_sandbox_id: pod.into(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        rpc!(
            self,
            format!("CreateContainer in {pod}"),
            create_container,
            request
        )
        .map(|r| r.container_id)
    }

    pub async fn start(&self, id: &str) -> Result<(), RpcError> {
        let request = cri::StartContainerRequest {
            container_id: id.into(),
        };
        rpc!(
            self,
            format!("StartContainer {id}"),
            start_container,
            request
        )
        .map(|_| ())
    }

    pub async fn stop(&self, id: &str) -> Result<(), RpcError> {
        let request = cri::StopContainerRequest {
            container_id: id.into(),
            timeout: 0,
        };
        rpc!(self, format!("StopContainer {id}"), stop_container, request).map(|_| ())
    }

    pub async fn remove(&self, id: &str) -> Result<(), RpcError> {
        let request = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        rpc!(
            self,
            format!("RemoveContainer {id}"),
            remove_container,
            request
        )
        .map(|_| ())
    }

    /// The container's state and pid (0 when not running).
    pub async fn state(&self, id: &str) -> Result<(i32, i64), RpcError> {
        let request = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: true,
        };
        let r = rpc!(
            self,
            format!("ContainerStatus {id}"),
            container_status,
            request
        )?;
        let state = r.status.map(|s| s.state).unwrap_or(-1);
        let pid = r
            .info
            .get("info")
            .and_then(|i| serde_json::from_str::<serde_json::Value>(i).ok())
            .and_then(|v| v["pid"].as_i64())
            .unwrap_or(0);
        Ok((state, pid))
    }

    pub async fn containers(&self, pod: Option<&str>) -> Result<Vec<cri::Container>, RpcError> {
        let filter = pod.map(|pod| cri::ContainerFilter {
            pod_sandbox_id: pod.into(),
            ..Default::default()
        });
        let request = cri::ListContainersRequest { filter };
        rpc!(self, "ListContainers".into(), list_containers, request).map(|r| r.containers)
    }

    /// What kubelet does with a pod it wants gone, retried as kubelet's sync loop retries: stop and
    /// remove its containers, then stop and remove the pod. Fails on a hung RPC at once, else after
    /// `attempts` rounds; returns how many rounds it took.
    pub async fn clean_up_pod(&self, pod: &str, attempts: u32) -> anyhow::Result<u32> {
        let mut last = None;
        for attempt in 1..=attempts {
            match self.clean_up_pod_once(pod).await {
                Ok(()) => return Ok(attempt),
                Err(e) if e.hung => bail!("{e}"),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        bail!("pod {pod} not removable after {attempts} rounds: {last:?}")
    }

    async fn clean_up_pod_once(&self, pod: &str) -> Result<(), RpcError> {
        for c in self.containers(Some(pod)).await? {
            self.stop(&c.id).await?;
            self.remove(&c.id).await?;
        }
        self.stop_pod(pod).await?;
        self.remove_pod(pod).await
    }
}

/// Restarts berthd (by SIGKILL: the point is what a crash leaves) with `failpoints` armed
/// (`BERTH_FAILPOINTS` syntax; empty for none).
pub async fn restart_with(berthd: &mut Berthd, failpoints: &str) -> anyhow::Result<()> {
    berthd.kill()?;
    berthd.env.retain(|(k, _)| k != berth_failpoint::ENV);
    if !failpoints.is_empty() {
        berthd
            .env
            .push((berth_failpoint::ENV.into(), failpoints.into()));
    }
    berthd.launch().await
}

/// Waits until berthd's process is gone (a failpoint killed it); reaps it.
pub fn wait_dead(berthd: &mut Berthd, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while let Some(pid) = berthd.pid() {
        if std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().unwrap_or("").trim().starts_with('Z'))
            .unwrap_or(true)
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("berthd ({pid}) still alive {timeout:?} after its failpoint");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    berthd.kill()
}

/// A panic anywhere in berthd's log is a bug, whatever else happened.
pub fn check_no_panic(log: &str) -> anyhow::Result<()> {
    if let Some(line) = log.lines().find(|l| l.contains("panicked at")) {
        bail!("berthd panicked: {line}");
    }
    Ok(())
}

/// splitmix64: tiny, good enough for picking delays, and replayable from the printed seed.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `BERTH_CHAOS_SEED` if set, else from the clock; the seed is printed.
    pub fn from_env(test: &str) -> Rng {
        let seed = std::env::var("BERTH_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_nanos()).unwrap_or(1))
                    .unwrap_or(1)
            });
        eprintln!("{test}: BERTH_CHAOS_SEED={seed} replays this run");
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` milliseconds.
    pub fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next_u64() % (hi - lo).max(1))
    }
}

/// A number from the environment, else `default`.
pub fn env_count(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, body: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

/// The end of every fault scenario: berthd answers, never panicked, and stops leaving nothing
/// behind (`finish()`'s leak check).
pub async fn end_checked(berthd: Berthd) {
    let cri = Cri::new(&berthd);
    cri.alive()
        .await
        .expect("berthd still answers Version and Status");
    check_no_panic(&berthd.log()).expect("no panic");
    berthd.finish();
}
