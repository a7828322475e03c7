//! After a (re)start of berthd: records are reconciled with what the pods' monitors and the
//! runtime report. Running containers are watched again, exits that happened while berthd was
//! down are taken from the monitors (or the exit files they left), starts still in flight in a
//! monitor are waited for, and half-made containers are cleaned up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_monitor_api::{ContainerInfo, Exit};

use crate::create;
use crate::error::ContainerError;
use crate::record::{ContainerRecord, Phase, unknown_exit};
use crate::{Inner, lifecycle, watch};

/// How long a start still in flight in the monitor is waited for: the monitor itself gives the
/// runtime `RUNTIME_CREATE_TIMEOUT` and kills it after that, so an outcome comes before this.
const IN_FLIGHT_WAIT: Duration =
    Duration::from_secs(lifecycle::RUNTIME_CREATE_TIMEOUT.as_secs() + 10);
const IN_FLIGHT_POLL: Duration = Duration::from_millis(100);

pub(crate) async fn recover(inner: &Arc<Inner>) {
    crate::removal::resume_removals(inner);
    let records: Vec<ContainerRecord> = inner.records().values().cloned().collect();
    for mut record in records {
        match record.phase {
            Phase::Creating => {
                create::rollback(inner, &record).await;
                tracing::info!(container_id = %record.id, "removed a container whose creation was interrupted");
            }
            Phase::Exited | Phase::Removing => {}
            Phase::Created => {
                // StartContainer records RUNNING only once the runtime is done, and STARTING not
                // at all: a start berthd did not see through shows as CREATED. The pod's monitor
                // (or the exit file it left) tells whether it got the container.
                let guard = inner.lock_for(&record.id).lock_owned().await;
                let listed = listed(inner, &record).await;
                let exited = inner
                    .monitors
                    .read_exit_file(&record.monitor_dir, &record.id)
                    .ok()
                    .flatten()
                    .is_some();
                if listed.is_none() && !exited {
                    continue;
                }
                tracing::info!(container_id = %record.id, "a start was interrupted by the restart; reconciling it");
                record.phase = Phase::Starting;
                started(inner, record, listed, guard).await;
            }
            Phase::Starting | Phase::Running => {
                // Taken before anything is decided, and held by an in-flight wait: a Stop or Remove
                // arriving meanwhile waits for the outcome instead of racing the runtime.
                let guard = inner.lock_for(&record.id).lock_owned().await;
                let listed = listed(inner, &record).await;
                started(inner, record, listed, guard).await;
            }
        }
    }
}

/// A container that was starting or running when berthd went down: waited for if its start is
/// still in flight in the monitor, else reconciled at once.
async fn started(
    inner: &Arc<Inner>,
    record: ContainerRecord,
    listed: Option<ContainerInfo>,
    guard: tokio::sync::OwnedMutexGuard<()>,
) {
    if listed.as_ref().is_some_and(|c| c.creating) {
        tracing::info!(container_id = %record.id, "container start still in flight in its monitor; waiting for it");
        let inner = inner.clone();
        tokio::spawn(async move {
            let id = record.id.clone();
            if let Err(e) = finish_in_flight(&inner, record).await {
                tracing::warn!(container_id = %id, error = %e, "reconciling a start that was in flight");
            }
            drop(guard);
        });
        return;
    }
    let id = record.id.clone();
    if let Err(e) = reconcile(inner, record, listed, false).await {
        tracing::warn!(container_id = %id, error = %e, "reconciling a container after restart");
    }
    drop(guard);
}

/// What the pod's monitor reports for the container; `None` if it does not know it, or there is
/// no monitor to ask.
async fn listed(inner: &Arc<Inner>, record: &ContainerRecord) -> Option<ContainerInfo> {
    let monitor = inner.monitors.get(&record.sandbox_id).await?;
    let id = record.id.clone();
    tokio::task::spawn_blocking(move || monitor.list())
        .await
        .ok()?
        .ok()?
        .into_iter()
        .find(|c| c.container_id == id)
}

/// Polls the monitor until the container's create has an outcome (or the bound passed), then
/// reconciles the record with it.
async fn finish_in_flight(
    inner: &Arc<Inner>,
    record: ContainerRecord,
) -> Result<(), ContainerError> {
    let deadline = Instant::now() + IN_FLIGHT_WAIT;
    let listed = loop {
        let listed = listed(inner, &record).await;
        let creating = listed.as_ref().is_some_and(|c| c.creating);
        if !creating || Instant::now() >= deadline {
            break listed;
        }
        tokio::time::sleep(IN_FLIGHT_POLL).await;
    };
    reconcile(inner, record, listed, true).await
}

/// What recovery does with a container that was starting or running when berthd went down.
#[derive(Debug, PartialEq)]
enum Decision {
    /// The monitor has it: running (watched again), or exited with the exit it reports.
    Adopt(ContainerInfo),
    /// The monitor is gone but left the exit file.
    Exited(Exit),
    /// berthd died before the monitor took the container: back to CREATED, so kubelet's retry of
    /// StartContainer can run it.
    BackToCreated,
    /// The start was in flight in the monitor and failed there (or never finished within the
    /// bound): EXITED with StartError, as a failed StartContainer leaves it.
    StartFailed(&'static str),
    /// It ran, but nobody parents it any more and its exit was never recorded.
    Lost,
}

/// `awaited`: the monitor reported the start in flight and it was waited for.
fn decide(
    phase: Phase,
    listed: Option<ContainerInfo>,
    exit_file: Option<Exit>,
    awaited: bool,
) -> Decision {
    match (listed, exit_file, phase) {
        (Some(info), _, _) if info.creating => {
            Decision::StartFailed("the runtime did not finish creating the container in time")
        }
        (Some(info), _, _) => Decision::Adopt(info),
        (None, Some(exit), _) => Decision::Exited(exit),
        (None, None, Phase::Starting) if awaited => Decision::StartFailed(
            "the runtime failed to start the container while berthd was restarting",
        ),
        (None, None, Phase::Starting) => Decision::BackToCreated,
        (None, None, _) => Decision::Lost,
    }
}

async fn reconcile(
    inner: &Arc<Inner>,
    mut record: ContainerRecord,
    listed: Option<ContainerInfo>,
    awaited: bool,
) -> Result<(), ContainerError> {
    let exit_file = match listed {
        Some(_) => None,
        None => inner
            .monitors
            .read_exit_file(&record.monitor_dir, &record.id)
            .ok()
            .flatten(),
    };
    let runtime = inner.runtime(&record);
    match decide(record.phase, listed, exit_file, awaited) {
        Decision::Adopt(info) => {
            record.phase = Phase::Running;
            if record.pid != info.pid || record.pid_start_time == 0 {
                record.pid = info.pid;
                record.pid_start_time = crate::signal::start_time(info.pid).unwrap_or(0);
            }
            if record.started_at_ns == 0 {
                record.started_at_ns = berth_clock::now_ns();
            }
            match info.exit {
                Some(exit) => {
                    record.set_exited(&exit);
                    inner.save(&record).await?;
                }
                None => {
                    inner.save(&record).await?;
                    watch::spawn(inner, &record.id);
                }
            }
            return Ok(());
        }
        Decision::Exited(exit) => record.set_exited(&exit),
        Decision::BackToCreated => {
            runtime.delete(&record.id).await?;
            record.phase = Phase::Created;
        }
        Decision::StartFailed(why) => {
            // Still in flight after the bound: the monitor kills it once the runtime is done.
            if let Some(monitor) = inner.monitors.get(&record.sandbox_id).await {
                let id = record.id.clone();
                let _ = tokio::task::spawn_blocking(move || monitor.forget(&id, false)).await;
            }
            let error = ContainerError::Runtime {
                op: "create",
                message: why.to_string(),
            };
            lifecycle::start_failed(inner, &mut record, &runtime, &error).await;
            return Ok(());
        }
        Decision::Lost => {
            inner.deps.metrics.monitor_lost();
            let _ = runtime.kill(&record.id, libc::SIGKILL).await;
            runtime.delete(&record.id).await?;
            record.set_exited(&unknown_exit());
            record.message = "the container's monitor is gone; its exit status is unknown".into();
        }
    }
    inner.save(&record).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(creating: bool, exit: Option<Exit>) -> ContainerInfo {
        ContainerInfo {
            container_id: "c".into(),
            pid: if creating { 0 } else { 42 },
            exit,
            log_bytes: 0,
            creating,
        }
    }

    fn exit() -> Exit {
        Exit {
            exit_code: 3,
            signal: 0,
            finished_at_ns: 1,
            oom_killed: false,
            log_bytes: 0,
        }
    }

    #[test]
    fn a_start_in_flight_is_failed_only_after_waiting() {
        // Still creating after the wait: given up on.
        assert!(matches!(
            decide(Phase::Starting, Some(info(true, None)), None, true),
            Decision::StartFailed(_)
        ));
        // Created meanwhile: adopted like any running container.
        assert_eq!(
            decide(Phase::Starting, Some(info(false, None)), None, true),
            Decision::Adopt(info(false, None))
        );
        // Dropped by the monitor (the runtime failed): a failed start, not CREATED again, since
        // its runtime state and monitor bookkeeping are in an unknown state.
        assert!(matches!(
            decide(Phase::Starting, None, None, true),
            Decision::StartFailed(_)
        ));
    }

    #[test]
    fn without_a_start_in_flight() {
        // Never reached the monitor (or an old monitor that hides creates): CREATED again.
        assert_eq!(
            decide(Phase::Starting, None, None, false),
            Decision::BackToCreated
        );
        assert_eq!(decide(Phase::Running, None, None, false), Decision::Lost);
        assert_eq!(
            decide(Phase::Running, None, Some(exit()), false),
            Decision::Exited(exit())
        );
        assert_eq!(
            decide(Phase::Running, Some(info(false, Some(exit()))), None, false),
            Decision::Adopt(info(false, Some(exit())))
        );
        // An exit file of a start that never got a pid is an exit all the same.
        assert_eq!(
            decide(Phase::Starting, None, Some(exit()), false),
            Decision::Exited(exit())
        );
    }
}
