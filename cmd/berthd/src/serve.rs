//! Startup, serving and graceful shutdown.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use berth_config::Loaded;
use berth_cri::{CriService, Dependencies};
use berth_metrics::Metrics;
use berth_network::PodCidrStore;
use berth_store::Store;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnixListenerStream;

use crate::socket;

/// How long in-flight calls (streams included) may run after SIGTERM before berthd exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long background cleanups of removed containers get at shutdown; the next start finishes
/// what is left.
const REMOVAL_DRAIN: Duration = Duration::from_secs(5);

/// What must outlive serving: the metadata store, closed once nothing else holds it. (No service
/// holds another that holds it back: pods and images are handed the container layer per call.)
pub struct Shutdown {
    store: Store,
}

impl Shutdown {
    /// Closes the metadata store so that the next start finds it clean. Call it after the tokio
    /// runtime has shut down: its tasks (calls past the grace period, exit watchers, event
    /// fan-outs) hold clones of the services and so of the store.
    pub fn close(self) {
        let path = self.store.path().to_path_buf();
        match self.store.close() {
            Ok(()) => tracing::info!(path = %path.display(), "metadata store closed"),
            Err(e) => {
                tracing::warn!(error = %e, "metadata store was not closed cleanly; the next start will repair it");
            }
        }
    }
}

pub async fn serve(
    loaded: Loaded,
    cli: crate::cli::Cli,
    log: crate::logging::LogControl,
) -> anyhow::Result<Shutdown> {
    let started = Instant::now();
    // First: until the handler exists, SIGHUP (a reload request) would terminate berthd.
    let hangup = crate::reload::listen()?;
    let config = loaded.config;
    for dir in [&config.root, &config.state] {
        create_private_dir(dir)?;
    }
    let (listener, socket_guard) = socket::bind(config.socket_path(), config.grpc.socket_gid)?;
    let store = Store::open(config.store_path())
        .with_context(|| format!("opening metadata store {}", config.store_path().display()))?;
    if store.recovered() {
        tracing::warn!(path = %store.path().display(), "metadata store was not closed cleanly and has been repaired");
    }
    let metrics = Metrics::new(berth_cri::RUNTIME_VERSION)?;
    let pod_cidrs = Arc::new(PodCidrStore::open(&config.state));
    let registry =
        berth_registry::Client::new(config.registry.clone()).context("configuring registries")?;
    let image_metrics = berth_image::ImageMetrics::register(metrics.registry())?;
    let image_store = config.image.store_dir(&config.root);
    create_private_dir(image_store)?;
    let images = berth_image::ImageService::open(
        image_store,
        config.image.clone(),
        registry,
        store.clone(),
        image_metrics,
    )
    .context("opening the image store")?;
    let (sandboxes, cgroups) = open_sandboxes(&config, &metrics, &store, &pod_cidrs)?;
    let container_metrics = berth_container::ContainerMetrics::register(metrics.registry())?;
    let containers = open_containers(
        &config,
        &store,
        &images,
        &sandboxes,
        cgroups.clone(),
        container_metrics,
    )?;
    containers.register_state_metrics(metrics.registry())?;
    crate::notify::status("recovering pods and containers");
    containers.recover().await;
    // Freed memory goes back to the kernel after bursts of calls (see malloc.rs).
    tokio::spawn(crate::malloc::trim_after_bursts());

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopping = move |mut rx: watch::Receiver<bool>| async move {
        // Err means the sender is gone, which only happens on exit: treat it as a stop too.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    metrics.config.loaded();
    let reloader = crate::reload::Reloader {
        cli,
        running: config.clone(),
        images: images.clone(),
        log,
        metrics: metrics.config.clone(),
    };
    let reloads = crate::reload::watch(hangup, reloader, stopping(stop_rx.clone()));
    tokio::spawn(reloads);

    let metrics_task = if config.metrics.enabled {
        let (address, serving) = berth_metrics::serve(
            metrics.clone(),
            config.metrics.address,
            stopping(stop_rx.clone()),
        )
        .await?;
        tracing::info!(%address, "serving metrics on /metrics");
        Some(tokio::spawn(serving))
    } else {
        None
    };

    let backend = Arc::new(berth_cri::StreamingBackend::new(
        containers.clone(),
        sandboxes.clone(),
    ));
    let (streaming, streaming_serving) = berth_streaming::StreamingServer::bind(
        streaming_config(&config.streaming),
        backend,
        stopping(stop_rx.clone()),
    )
    .await
    .context("starting the streaming server")?;
    tracing::info!(address = %streaming.address(), "serving exec, attach and port-forward");
    let streaming_task = tokio::spawn(streaming_serving);

    let stats = Arc::new(berth_stats::StatsService::new(
        containers.clone(),
        sandboxes.clone(),
        cgroups,
        images.mountpoint().to_path_buf(),
    ));
    let socket_path = config.socket_path().to_path_buf();
    let removals = containers.clone();
    let shutdown = Shutdown {
        store: store.clone(),
    };
    let service = CriService::new(Dependencies {
        config,
        config_sources: loaded.sources,
        metrics,
        store,
        pod_cidrs,
        images,
        sandboxes,
        containers,
        streaming: Arc::new(streaming),
        stats,
    });
    // Every connection goes through AuthorityFilter: most non-Rust CRI clients (kubelet and crictl
    // before 1.30, grpcio, grpc-java) send an :authority that h2 would refuse (pkg/authority).
    let incoming = UnixListenerStream::new(tokio::net::UnixListener::from_std(listener)?)
        .map(|accepted| accepted.map(berth_authority::AuthorityFilter::new));
    let server = tonic::transport::Server::builder()
        .add_service(service.runtime_server())
        .add_service(service.image_server())
        .add_service(service.images_progress_server())
        .add_service(service.volumes_server().context("opening the volumes")?)
        .add_service(service.registries_server())
        .add_service(service.containers_server())
        .serve_with_incoming_shutdown(incoming, stopping(stop_rx.clone()));

    tokio::spawn(wait_for_signal(stop_tx));
    tracing::info!(
        socket = %socket_path.display(),
        version = berth_cri::RUNTIME_VERSION,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "berthd ready"
    );
    // The listener is bound and the server is polled next: a client that connects now is served.
    crate::notify::ready();

    // At the signal the server stops accepting. berthd then waits for the RPCs in flight, not for
    // client connections to go away (kubelet keeps its connection open forever), and gives up on
    // stragglers after a grace period.
    let drained = async {
        stopping(stop_rx.clone()).await;
        let in_flight = service.in_flight();
        if in_flight > 0 {
            tracing::info!(in_flight, "waiting for in-flight calls");
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, service.wait_idle())
            .await
            .is_err()
        {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, in_flight = service.in_flight(), "calls still running after the grace period; exiting anyway");
        }
    };
    tokio::select! {
        result = server => result.context("serving CRI")?,
        () = drained => {}
    }
    // Containers RemoveContainer answered for may still be releasing their mounts and monitors.
    removals.drain_removals(REMOVAL_DRAIN).await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    // Sessions still open are cut: their exec processes are killed by the monitors.
    streaming_task.abort();
    drop(socket_guard);
    Ok(shutdown)
}

async fn wait_for_signal(stop: watch::Sender<bool>) {
    let (mut term, mut int) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(term), Ok(int)) => (term, int),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot install signal handlers; stop berthd with SIGKILL");
            return;
        }
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(
        signal = name,
        "stopping: no new connections, finishing in-flight calls"
    );
    crate::notify::stopping();
    let _ = stop.send(true);
}

fn streaming_config(c: &berth_config::StreamingConfig) -> berth_streaming::StreamingConfig {
    berth_streaming::StreamingConfig {
        address: c.address,
        tls: match (&c.tls_cert_file, &c.tls_key_file) {
            (Some(cert), Some(key)) => Some(berth_streaming::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        idle_timeout: Duration::from_secs(c.idle_timeout_secs),
        stream_creation_timeout: Duration::from_secs(c.stream_creation_timeout_secs),
        token_ttl: Duration::from_secs(c.token_ttl_secs),
    }
}

/// Root and state hold pod data: traversable but not listable by others.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn open_sandboxes(
    config: &berth_config::Config,
    metrics: &Metrics,
    store: &Store,
    pod_cidrs: &Arc<PodCidrStore>,
) -> anyhow::Result<(berth_sandbox::SandboxService, berth_cgroup::Cgroups)> {
    let cni_metrics = berth_network::CniMetrics::register(metrics.registry())?;
    let cni = berth_network::Cni::new(
        config.cni.conf_dir.clone(),
        config.cni.bin_dirs.clone(),
        // How long one CNI plugin call may take before it is killed (`cni.plugin_timeout_secs`;
        // containerd and CRI-O allow minutes: a plugin that needs more is stuck).
        Duration::from_secs(config.cni.plugin_timeout_secs),
    )
    .with_metrics(cni_metrics)
    .with_pod_cidrs(pod_cidrs.clone());
    let driver = match config.cgroup.driver {
        berth_config::CgroupDriver::Cgroupfs => berth_cgroup::Driver::Cgroupfs,
        berth_config::CgroupDriver::Systemd => berth_cgroup::Driver::Systemd,
    };
    let cgroups = berth_cgroup::Cgroups::new(driver).context("detecting cgroups")?;
    let sandboxes = berth_sandbox::SandboxService::open(berth_sandbox::SandboxDeps {
        state_dir: config.state.clone(),
        store: store.clone(),
        cni,
        cgroups: cgroups.clone(),
        handlers: config.runtime.handlers.keys().cloned().collect(),
        default_handler: config.runtime.default_handler.clone(),
        init_binary: berth_sandbox::SandboxDeps::default_init_binary(),
    })
    .context("opening the pod sandboxes")?;
    Ok((sandboxes, cgroups))
}

fn open_containers(
    config: &berth_config::Config,
    store: &Store,
    images: &berth_image::ImageService,
    sandboxes: &berth_sandbox::SandboxService,
    cgroups: berth_cgroup::Cgroups,
    metrics: berth_container::ContainerMetrics,
) -> anyhow::Result<berth_container::ContainerService> {
    let handlers = config
        .runtime
        .handlers
        .iter()
        .map(|(name, h)| {
            let root = h.root.clone().unwrap_or_else(|| {
                berth_container::ContainerDeps::default_runtime_root(&config.state, name)
            });
            let path = h.resolve_binary();
            if path.is_none() {
                tracing::warn!(handler = %name, binary = %h.path.display(), "runtime handler binary not found; its pods cannot run containers");
            }
            (name.clone(), berth_container::Handler { path, root })
        })
        .collect();
    berth_container::ContainerService::open(berth_container::ContainerDeps {
        state_dir: config.state.clone(),
        root_dir: config.root.clone(),
        store: store.clone(),
        images: images.clone(),
        sandboxes: sandboxes.clone(),
        cgroups,
        handlers,
        monitor_binary: berth_container::ContainerDeps::default_monitor_binary(),
        metrics,
    })
    .context("opening the containers")
}
