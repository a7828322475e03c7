//! Start, stop, remove, resource updates and log reopening of one container, and of all of a pod's.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use berth_monitor_api::{CreateRequest, Exit};
use berth_sandbox::SandboxState;
use berth_spec::Resources;

use crate::error::ContainerError;
use crate::record::{ContainerRecord, Phase};
use crate::seams::{BoundRuntime, MonitorConn};
use crate::{Inner, OciRuntime, signal, watch};

/// How long the runtime may take to set a container up before the monitor gives up on it.
pub(crate) const RUNTIME_CREATE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGKILLed container may take to be reported gone.
const KILL_WAIT: Duration = Duration::from_secs(30);

pub(crate) async fn start(inner: &Arc<Inner>, id: &str) -> Result<(), ContainerError> {
    let lock = inner.lock_for(id);
    let _guard = lock.lock().await;
    let mut record = inner.record(id)?;
    if record.phase != Phase::Created {
        return Err(ContainerError::WrongState {
            id: id.to_string(),
            state: format!("{:?}", record.state()),
            needs: "not created: only a created container can be started",
        });
    }
    let sandbox = inner
        .deps
        .sandboxes
        .get(&record.sandbox_id)
        .ok_or_else(|| ContainerError::SandboxNotFound(record.sandbox_id.clone()))?;
    if sandbox.state() != SandboxState::Ready {
        return Err(ContainerError::SandboxUnusable {
            id: sandbox.id.clone(),
            reason: "is not ready",
        });
    }
    if let Some(log) = &record.log_path {
        prepare_log_path(log)?;
    }
    let began = std::time::Instant::now();
    // Shared with other starts in the pod; excludes telling the monitor its last container is
    // gone until this container is the monitor's.
    let gate = inner.gates.start_gate(&sandbox.id).await;
    let (monitor, systemd_cgroup, oom_files) = pod_monitor(inner, &sandbox, id).await?;
    berth_failpoint::fail("container/start/after-monitor").map_err(ContainerError::Failpoint)?;

    let monitor_ready = began.elapsed();
    // Starting is not written to the store: that would cost a durable write before the runtime
    // even begins. A berthd that dies from here on finds the record CREATED, and recovery asks
    // the pod's monitor whether it has the container (see `recover.rs`).
    record.phase = Phase::Starting;
    inner.cache(&record);
    berth_failpoint::fail("container/start/before-runtime").map_err(ContainerError::Failpoint)?;
    let recorded = began.elapsed();
    let runtime = inner.bound_runtime(OciRuntime {
        path: record.runtime_path.clone(),
        root: record.runtime_root.clone(),
        systemd_cgroup,
    });
    let request = CreateRequest {
        container_id: id.to_string(),
        runtime_path: runtime.oci.path.clone(),
        runtime_args: runtime.oci.global_args(),
        bundle: record.bundle.clone(),
        log_path: record.log_path.clone(),
        tty: record.config.tty,
        stdin: record.config.stdin,
        stdin_once: record.config.stdin_once,
        oom_files,
        timeout: RUNTIME_CREATE_TIMEOUT,
    };
    // The process may exit before the runtime returns: take the start time before, so that
    // created_at < started_at <= finished_at always holds.
    let started_at = berth_clock::now_ns();
    let created = tokio::task::spawn_blocking(move || monitor.create(&request))
        .await
        .map_err(ContainerError::task(
            "starting the container in its monitor",
        ))?;
    // The monitor has the container now (or never will): a failed start may release the
    // monitor, which needs the gate exclusively.
    drop(gate);
    match created {
        Ok(pid) => {
            berth_failpoint::fail("container/start/after-runtime")
                .map_err(ContainerError::Failpoint)?;
            record.phase = Phase::Running;
            record.pid = pid;
            record.pid_start_time = signal::start_time(pid).unwrap_or(0);
            record.started_at_ns = started_at;
            let ran = began.elapsed();
            inner.save(&record).await?;
            watch::spawn(inner, id);
            tracing::info!(container_id = %id, pid, "container started");
            tracing::debug!(container_id = %id, ?monitor_ready, ?recorded, ?ran, total = ?began.elapsed(), "StartContainer phases");
            Ok(())
        }
        Err(e) => {
            let e = ContainerError::from(e);
            start_failed(inner, &mut record, &runtime, &e).await;
            Err(e)
        }
    }
}

/// The pod's monitor (spawned if it has none: CreateContainer usually began that already), whether
/// the runtime is to use systemd cgroups, and the container's OOM-event files.
async fn pod_monitor(
    inner: &Arc<Inner>,
    sandbox: &berth_sandbox::SandboxRecord,
    id: &str,
) -> Result<(Arc<dyn MonitorConn>, bool, Vec<std::path::PathBuf>), ContainerError> {
    let cgroups = &inner.deps.cgroups;
    let (oom_files, systemd_cgroup) = match &sandbox.cgroup {
        Some(cg) if cgroups.exists(cg) => (cgroups.oom_files(cg, id), cg.runc_systemd),
        _ => (Vec::new(), false),
    };
    let procs = monitor_cgroup_procs(inner, sandbox)?;
    let monitor = inner.monitors.get_or_spawn(&sandbox.id, procs).await?;
    Ok((monitor, systemd_cgroup, oom_files))
}

/// The `cgroup.procs` files of the pod's monitor cgroups (none for a pod without a cgroup).
fn monitor_cgroup_procs(
    inner: &Inner,
    sandbox: &berth_sandbox::SandboxRecord,
) -> Result<Vec<std::path::PathBuf>, ContainerError> {
    let cgroups = &inner.deps.cgroups;
    match &sandbox.cgroup {
        Some(cg) if cgroups.exists(cg) => Ok(cgroups.monitor_procs_files(cg)?),
        _ => Ok(Vec::new()),
    }
}

/// CreateContainer's head start for StartContainer: the pod's monitor is spawned now, in the
/// background, so the start finds it ready (kubelet starts a container right after creating
/// it). A pod whose monitor runs already is left alone; a failure here is only logged, and the
/// start tries again.
pub(crate) fn prespawn_monitor(inner: &Arc<Inner>, sandbox: berth_sandbox::SandboxRecord) {
    let inner = inner.clone();
    tokio::spawn(async move {
        // As a start: never while the pod's monitor is being told its last container is gone.
        let _gate = inner.gates.start_gate(&sandbox.id).await;
        let spawned = match monitor_cgroup_procs(&inner, &sandbox) {
            Ok(procs) => inner
                .monitors
                .get_or_spawn(&sandbox.id, procs)
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = spawned {
            tracing::debug!(sandbox_id = %sandbox.id, error = %e, "no head start for the pod monitor");
        }
    });
}

/// Creates the pod's log directory if it is missing, as containerd does: kubelet always creates
/// it, crictl users often don't. A path that cannot hold a log file is the request's mistake, so it
/// is refused before anything is started.
fn prepare_log_path(path: &Path) -> Result<(), ContainerError> {
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|source| ContainerError::LogDirectory {
                dir: dir.to_path_buf(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(ContainerError::LogPathIsDirectory(path.to_path_buf())),
        _ => Ok(()),
    }
}

/// Rolls a failed start back: runtime state, the monitor (if it was started for nothing) and the
/// rootfs mount go; the container stays, EXITED with reason StartError, for kubelet to see.
pub(crate) async fn start_failed(
    inner: &Arc<Inner>,
    record: &mut ContainerRecord,
    runtime: &BoundRuntime,
    error: &ContainerError,
) {
    if let Err(e) = runtime.delete(&record.id).await {
        tracing::warn!(container_id = %record.id, error = %e, "deleting runtime state after a failed start");
    }
    {
        let _gate = inner.gates.last_gate(&record.sandbox_id).await;
        if !crate::removal::monitor_needed_by_others(inner, record) {
            let _ = inner
                .monitors
                .forget(&record.sandbox_id, &record.id, true, false)
                .await;
        }
    }
    let rootfs = record.rootfs();
    let mounts = inner.deps.rootfs.clone();
    let _ = tokio::task::spawn_blocking(move || mounts.unmount(&rootfs)).await;
    record.phase = Phase::Exited;
    record.exit_code = 128;
    record.reason = "StartError".into();
    record.message = error.to_string();
    record.finished_at_ns = berth_clock::now_ns();
    record.pid = 0;
    if let Err(e) = inner.save(record).await {
        tracing::warn!(container_id = %record.id, error = %e, "recording a failed start");
    }
}

pub(crate) async fn stop(
    inner: &Arc<Inner>,
    id: &str,
    timeout: Duration,
) -> Result<(), ContainerError> {
    let lock = inner.lock_for(id);
    let _guard = lock.lock().await;
    let mut record = inner.record(id)?;
    if record.phase != Phase::Running {
        return Ok(());
    }
    let exit = stop_process(inner, &record, timeout).await?;
    berth_failpoint::fail("container/stop/after-kill").map_err(ContainerError::Failpoint)?;
    record.set_exited(&exit);
    inner.save(&record).await?;
    delete_runtime_state(inner, &record);
    tracing::info!(container_id = %id, exit_code = exit.exit_code, "container stopped");
    Ok(())
}

/// The stop signal, then SIGKILL after `timeout` (at once for zero); returns the exit.
///
/// One Wait on the monitor spans both signals: the exit that follows a SIGKILL is then a reply
/// already asked for, not a new connection and request started after the kill (issue 16: a
/// SIGTERM-ignoring container's stop must end within the timeout plus 10 ms).
pub(crate) async fn stop_process(
    inner: &Arc<Inner>,
    record: &ContainerRecord,
    timeout: Duration,
) -> Result<Exit, ContainerError> {
    let exit = exit_of(inner, record);
    tokio::pin!(exit);
    if !timeout.is_zero() && record.stop_signal != libc::SIGKILL {
        kill(inner, record, record.stop_signal).await?;
        if let Ok(exit) = tokio::time::timeout(timeout, exit.as_mut()).await {
            return exit;
        }
        tracing::info!(container_id = %record.id, ?timeout, "container ignored its stop signal; killing it");
    }
    kill(inner, record, libc::SIGKILL).await?;
    match tokio::time::timeout(KILL_WAIT, exit).await {
        Ok(exit) => exit,
        Err(_) => Err(ContainerError::SurvivedSigkill {
            what: format!("container {}", record.id),
            after: KILL_WAIT,
        }),
    }
}

/// Signals the container's process: directly when its identity is known (no runtime process to
/// start), else through the runtime. A process already gone is fine: its exit is waited for.
async fn kill(
    inner: &Arc<Inner>,
    record: &ContainerRecord,
    sig: i32,
) -> Result<(), ContainerError> {
    if record.pid > 0 && record.pid_start_time > 0 {
        match signal::send(record.pid, record.pid_start_time, sig) {
            Ok(_) => return Ok(()),
            Err(e) => {
                tracing::debug!(container_id = %record.id, error = %e, "pidfd signal failed; asking the runtime")
            }
        }
    }
    inner.runtime(record).kill(&record.id, sig).await
}

/// The container's exit, from its monitor, or from the exit file the monitor left.
async fn exit_of(inner: &Inner, record: &ContainerRecord) -> Result<Exit, ContainerError> {
    match inner
        .monitors
        .wait_exit(&record.monitor_dir, &record.id)
        .await
    {
        Ok(exit) => Ok(exit),
        Err(e) => match inner
            .monitors
            .read_exit_file(&record.monitor_dir, &record.id)?
        {
            Some(exit) => Ok(exit),
            None => Err(e),
        },
    }
}

pub(crate) async fn update_resources(
    inner: &Arc<Inner>,
    id: &str,
    resources: Resources,
) -> Result<(), ContainerError> {
    let lock = inner.lock_for(id);
    let _guard = lock.lock().await;
    let mut record = inner.record(id)?;
    let linux = berth_spec::linux_resources(&resources)?;
    match record.phase {
        Phase::Running => inner.runtime(&record).update(id, &linux).await?,
        Phase::Created => {
            // Not running yet: the runtime reads the new limits from the bundle at start.
            let bundle = record.bundle.clone();
            tokio::task::spawn_blocking(move || rewrite_resources(&bundle, linux))
                .await
                .map_err(ContainerError::task("rewriting the bundle resources"))??;
        }
        _ => {
            return Err(ContainerError::WrongState {
                id: id.to_string(),
                state: format!("{:?}", record.state()),
                needs: "neither created nor running: only those can be updated",
            });
        }
    }
    record.resources = resources;
    inner.save(&record).await
}

fn rewrite_resources(
    bundle: &std::path::Path,
    linux: oci_spec::runtime::LinuxResources,
) -> Result<(), ContainerError> {
    let path = bundle.join("config.json");
    let mut spec = oci_spec::runtime::Spec::load(&path).map_err(ContainerError::oci_spec(
        format!("reading {}", path.display()),
    ))?;
    if let Some(l) = spec.linux_mut() {
        l.set_resources(Some(linux));
    }
    berth_spec::write_bundle_config(bundle, &spec)?;
    Ok(())
}

pub(crate) async fn reopen_log(inner: &Arc<Inner>, id: &str) -> Result<(), ContainerError> {
    let record = inner.record(id)?;
    if record.phase != Phase::Running {
        return Err(ContainerError::NotRunning { id: id.to_string() });
    }
    let monitor = inner
        .monitors
        .get(&record.sandbox_id)
        .await
        .ok_or_else(|| ContainerError::NotRunning { id: id.to_string() })?;
    let cid = id.to_string();
    tokio::task::spawn_blocking(move || monitor.reopen_log(&cid))
        .await
        .map_err(ContainerError::task("reopening the container log"))??;
    Ok(())
}

/// StopPodSandbox: the pod's running containers are killed at once (kubelet has already
/// stopped them gracefully if it wanted to), all in parallel.
pub(crate) async fn stop_pod(inner: &Arc<Inner>, sandbox_id: &str) -> Result<(), ContainerError> {
    let mut tasks = Vec::new();
    for id in inner.pod_container_ids(sandbox_id) {
        let inner = inner.clone();
        tasks.push(tokio::spawn(async move {
            stop(&inner, &id, Duration::ZERO).await
        }));
    }
    for task in tasks {
        match task
            .await
            .map_err(ContainerError::task("stopping a container"))?
        {
            // Removed meanwhile by a concurrent RemoveContainer: nothing left to stop.
            Ok(()) | Err(ContainerError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Once a container has exited its runtime state (and cgroup) serves nothing: delete it in the
/// background, as containerd's shim does, so RemoveContainer has less to do. Remove deletes it
/// too if this has not happened yet (both are idempotent).
pub(crate) fn delete_runtime_state(inner: &Arc<Inner>, record: &ContainerRecord) {
    let runtime = inner.runtime(record);
    let id = record.id.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = runtime.delete(&id).await {
            tracing::debug!(container_id = %id, error = %e, "deleting the runtime state of an exited container");
        }
    });
    let mut deleting = inner.deleting.lock().unwrap_or_else(|p| p.into_inner());
    deleting.retain(|_, t| !t.is_finished());
    deleting.insert(record.id.clone(), task);
}
