//! RemoveContainer and RemovePodSandbox's share of the containers. RemoveContainer answers as
//! soon as the container is gone for CRI (killed if it ran, its record REMOVING); the cleanup of
//! what it held follows in the background, is finished at the next start after a crash, and is
//! waited for by RemovePodSandbox and at shutdown.

use std::sync::Arc;
use std::time::Duration;

use crate::Inner;
use crate::create;
use crate::error::ContainerError;
use crate::lifecycle::stop_process;
use crate::record::{ContainerRecord, Phase};

/// A removal RemoveContainer has answered for, until its cleanup is done.
pub(crate) struct Removal {
    pub(crate) record: ContainerRecord,
    /// The background cleanup, while it runs; `None` before it starts and after it failed
    /// (RemovePodSandbox, or the next berthd, finishes it then).
    task: Option<tokio::task::JoinHandle<()>>,
    /// The monitor has been told (or had nothing to be told): this removal no longer keeps the
    /// pod's monitor alive.
    monitor_done: bool,
}

impl Removal {
    pub(crate) fn pending(record: ContainerRecord) -> Removal {
        Removal {
            record,
            task: None,
            monitor_done: false,
        }
    }
}

/// RemoveContainer. On the request's path only what CRI can see: the process is killed if it
/// still runs, and the record turns REMOVING (durably) and leaves the listing. Everything else —
/// the runtime's state, the monitor (which exits with the pod's last container), the rootfs
/// mount, the writable layer, the bundle and the record — goes in the background, as
/// containerd's shim does most of it after the task exits. A crash half-way is finished at the
/// next start; RemovePodSandbox waits for its containers' cleanups.
pub(crate) async fn remove(inner: &Arc<Inner>, id: &str) -> Result<(), ContainerError> {
    let lock = inner.lock_for(id);
    let guard = lock.lock().await;
    let Ok(mut record) = inner.record(id) else {
        return Ok(());
    };
    let began = std::time::Instant::now();
    kill_and_tombstone(inner, &mut record).await?;
    // What a user sees of the container goes with the answer (a few unlinks, in Berth's own log
    // directories only); the rest is left to the background.
    remove_log(inner, &record);
    berth_failpoint::fail("container/remove/after-tombstone").map_err(ContainerError::Failpoint)?;
    // The cleanup runs once RemoveContainer has let go of the container's lock.
    spawn_cleanup(inner, id);
    drop(guard);
    tracing::info!(container_id = %id, "container removed");
    tracing::debug!(container_id = %id, took = ?began.elapsed(), "RemoveContainer answered");
    Ok(())
}

/// The container's log files, when they are in a log directory of Berth's own (see `logs.rs`).
fn remove_log(inner: &Inner, record: &ContainerRecord) {
    if let Some(sandbox) = inner.deps.sandboxes.get(&record.sandbox_id) {
        crate::logs::remove_container_log(&sandbox, record.log_path.as_deref());
    }
}

/// The durable part of a removal, under the container's lock: a container still running (or
/// starting) is killed at once, then its record turns REMOVING (see `Inner::tombstone`).
async fn kill_and_tombstone(
    inner: &Arc<Inner>,
    record: &mut ContainerRecord,
) -> Result<(), ContainerError> {
    if matches!(record.phase, Phase::Running | Phase::Starting) {
        match stop_process(inner, record, Duration::ZERO).await {
            Ok(exit) => record.set_exited(&exit),
            Err(e) => {
                tracing::warn!(container_id = %record.id, error = %e, "killing a container being removed")
            }
        }
    }
    berth_failpoint::fail("container/remove/after-kill").map_err(ContainerError::Failpoint)?;
    inner.tombstone(record).await
}

/// Everything a removed container still holds, then its record. `pod_removal`: the whole pod
/// goes, and its monitor is retired (killed if need be) afterwards, so a monitor that does not
/// answer a Forget does not fail the removal. Idempotent: each step tolerates having been done.
async fn finish_removal(
    inner: &Arc<Inner>,
    id: &str,
    pod_removal: bool,
) -> Result<(), ContainerError> {
    let lock = inner.lock_for(id);
    let _guard = lock.lock().await;
    let Some(record) = inner.removing_mut().get(id).map(|r| r.record.clone()) else {
        return Ok(());
    };
    let began = std::time::Instant::now();
    let in_flight = inner
        .deleting
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    if let Some(task) = in_flight {
        let _ = task.await;
    }
    let runtime = inner.runtime(&record);
    if runtime.has_state(id) {
        runtime.delete(id).await?;
    }
    berth_failpoint::fail("container/cleanup/after-runtime-delete")
        .map_err(ContainerError::Failpoint)?;
    let runtime_deleted = began.elapsed();
    release_monitor(inner, &record, pod_removal).await?;
    berth_failpoint::fail("container/cleanup/after-monitor").map_err(ContainerError::Failpoint)?;
    let monitor_released = began.elapsed();
    create::remove_files(inner, &record).await?;
    remove_log(inner, &record);
    berth_failpoint::fail("container/cleanup/after-files").map_err(ContainerError::Failpoint)?;
    let files_removed = began.elapsed();
    let store = inner.deps.store.clone();
    let key = id.to_string();
    tokio::task::spawn_blocking(move || store.delete::<ContainerRecord>(&key))
        .await
        .map_err(ContainerError::task("deleting the container record"))??;
    inner.removing_mut().remove(id);
    drop(_guard);
    inner.forget_lock(id);
    tracing::debug!(container_id = %id, ?runtime_deleted, ?monitor_released, ?files_removed, total = ?began.elapsed(), "container cleanup phases");
    Ok(())
}

/// Tells the pod's monitor the container is gone. Whatever the record says, the monitor may know
/// it (a start interrupted by a crash, reconciled to CREATED), so it is asked when in doubt. When
/// no other container of the pod needs the monitor, it is told so and exits (also one spawned
/// ahead by CreateContainer that never got a container), under the pod's exclusive gate: no start
/// hands a container to it meanwhile.
async fn release_monitor(
    inner: &Arc<Inner>,
    record: &ContainerRecord,
    pod_removal: bool,
) -> Result<(), ContainerError> {
    let _gate = inner.gates.last_gate(&record.sandbox_id).await;
    let last = !monitor_needed_by_others(inner, record);
    let started = record.started_at_ns > 0 || record.phase == Phase::Starting;
    let forgot = inner
        .monitors
        .forget(&record.sandbox_id, &record.id, last, !started && !last)
        .await;
    match forgot {
        Ok(()) => {}
        Err(e) if pod_removal => {
            tracing::warn!(container_id = %record.id, error = %e, "monitor did not forget a container of a pod being removed; it is retired with the pod")
        }
        Err(e) => return Err(e),
    }
    if let Some(removal) = inner.removing_mut().get_mut(&record.id) {
        removal.monitor_done = true;
    }
    Ok(())
}

/// Whether another container of the pod may still use (or be known by) its monitor: any other
/// record but one still being created (that one spawns a monitor again if it needs one), or a
/// removal whose monitor step is not done.
pub(crate) fn monitor_needed_by_others(inner: &Inner, record: &ContainerRecord) -> bool {
    let sandbox = &record.sandbox_id;
    inner
        .records()
        .values()
        .any(|r| &r.sandbox_id == sandbox && r.id != record.id && r.phase != Phase::Creating)
        || inner
            .removing_mut()
            .values()
            .any(|r| &r.record.sandbox_id == sandbox && r.record.id != record.id && !r.monitor_done)
}

/// Starts the cleanup of removals left by a previous berthd (the record says REMOVING).
pub(crate) fn resume_removals(inner: &Arc<Inner>) {
    let ids: Vec<String> = inner.removing_mut().keys().cloned().collect();
    for id in ids {
        spawn_cleanup(inner, &id);
    }
}

/// Runs [`finish_removal`] in the background and registers the task with the removal, for
/// RemovePodSandbox and shutdown to wait on. A failure leaves the removal to them (or to the
/// next start).
fn spawn_cleanup(inner: &Arc<Inner>, id: &str) {
    let task = {
        let inner = inner.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Err(e) = finish_removal(&inner, &id, false).await {
                tracing::warn!(container_id = %id, error = %e, "cleaning up a removed container; RemovePodSandbox or the next start finishes it");
            }
        })
    };
    if let Some(removal) = inner.removing_mut().get_mut(id) {
        removal.task = Some(task);
    }
}

/// Waits for every pending cleanup of the pod's removed containers, and finishes those that
/// failed (or were never started) itself.
async fn finish_pod_removals(inner: &Arc<Inner>, sandbox_id: &str) -> Result<(), ContainerError> {
    let pending: Vec<(String, Option<tokio::task::JoinHandle<()>>)> = inner
        .removing_mut()
        .iter_mut()
        .filter(|(_, r)| r.record.sandbox_id == sandbox_id)
        .map(|(id, r)| (id.clone(), r.task.take()))
        .collect();
    for (id, task) in pending {
        if let Some(task) = task {
            let _ = task.await;
        }
        // Still there: the background attempt failed. Once more, its error now the caller's.
        finish_removal(inner, &id, true).await?;
    }
    Ok(())
}

/// Waits (up to `limit`) for the cleanups running in the background, so that a berthd told to
/// stop leaves as little as possible for the next start.
pub(crate) async fn drain_removals(inner: &Arc<Inner>, limit: Duration) {
    let tasks: Vec<tokio::task::JoinHandle<()>> = inner
        .removing_mut()
        .values_mut()
        .filter_map(|r| r.task.take())
        .collect();
    let all = async {
        for task in tasks {
            let _ = task.await;
        }
    };
    if tokio::time::timeout(limit, all).await.is_err() {
        tracing::warn!(
            ?limit,
            "container cleanups still running at shutdown; the next start finishes them"
        );
    }
}

/// RemovePodSandbox: every container of the pod goes.
pub(crate) async fn remove_pod(inner: &Arc<Inner>, sandbox_id: &str) -> Result<(), ContainerError> {
    for id in inner.pod_container_ids(sandbox_id) {
        remove_in_pod_removal(inner, &id).await?;
    }
    finish_pod_removals(inner, sandbox_id).await?;
    // Also a monitor left without containers (berthd died between its spawn and the first
    // create), or one that does not exit: the pod is going, so it is killed if need be.
    let sandbox = inner.deps.sandboxes.get(sandbox_id);
    let cgroup = sandbox.as_ref().and_then(|s| s.cgroup.as_ref());
    inner.monitors.retire(sandbox_id, cgroup).await?;
    inner.gates.remove(sandbox_id);
    if let Some(sandbox) = &sandbox {
        crate::logs::remove_pod_log_dir(sandbox);
    }
    Ok(())
}

/// One container of a pod being removed: as RemoveContainer, with the cleanup done here.
async fn remove_in_pod_removal(inner: &Arc<Inner>, id: &str) -> Result<(), ContainerError> {
    {
        let lock = inner.lock_for(id);
        let _guard = lock.lock().await;
        let Ok(mut record) = inner.record(id) else {
            return Ok(());
        };
        kill_and_tombstone(inner, &mut record).await?;
    }
    finish_removal(inner, id, true).await?;
    tracing::info!(container_id = %id, "container removed");
    Ok(())
}
