//! Exit watchers: one task per running container waits on the monitor (a `Wait` request on its own
//! connection, no thread held) and records the exit as soon as the monitor has it on disk.

use std::sync::Arc;
use std::time::Duration;

use berth_monitor_api::Exit;

use crate::Inner;
use crate::error::ContainerError;
use crate::record::Phase;

/// Starts watching a running container.
pub(crate) fn spawn(inner: &Arc<Inner>, id: &str) {
    let inner = inner.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let Ok(record) = inner.record(&id) else {
            return;
        };
        // A monitor that is briefly unreachable (overloaded) gets a few more tries; one that is
        // gone leaves the exit file behind, if it got to write one.
        let mut attempts = 0;
        let (exit, message) = loop {
            match inner.monitors.wait_exit(&record.monitor_dir, &id).await {
                Ok(exit) => break (exit, None),
                Err(e) => {
                    if !inner.record(&id).is_ok_and(|r| r.phase == Phase::Running) {
                        return; // stopped or removed meanwhile: nothing to watch
                    }
                    attempts += 1;
                    if attempts >= 5 {
                        tracing::warn!(container_id = %id, error = %e, "lost track of the container's monitor");
                        match inner.monitors.read_exit_file(&record.monitor_dir, &id) {
                            Ok(Some(exit)) => break (exit, None),
                            _ => {
                                inner.deps.metrics.monitor_lost();
                                break lost(&record);
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        if let Err(e) = record_exit_with(&inner, &id, &exit, message).await {
            tracing::warn!(container_id = %id, error = %e, "recording a container exit");
        }
    });
}

/// The monitor died without recording the exit: nobody parents the container or writes its log
/// any more, so it is killed (if it still runs) and reported as failed, as recovery at startup
/// does for the same case.
fn lost(record: &crate::ContainerRecord) -> (Exit, Option<String>) {
    let _ = crate::signal::send(record.pid, record.pid_start_time, libc::SIGKILL);
    let message = "the container's monitor died; its exit status is unknown".to_string();
    (crate::record::unknown_exit(), Some(message))
}

/// Marks the container exited (once; later calls change nothing).
pub(crate) async fn record_exit_with(
    inner: &Arc<Inner>,
    id: &str,
    exit: &Exit,
    message: Option<String>,
) -> Result<(), ContainerError> {
    let lock = inner.lock_for(id);
    let _guard = lock.lock().await;
    let Ok(mut record) = inner.record(id) else {
        return Ok(());
    };
    if record.phase != Phase::Running {
        return Ok(());
    }
    record.set_exited(exit);
    if let Some(message) = message {
        record.message = message;
    }
    inner.save(&record).await?;
    crate::lifecycle::delete_runtime_state(inner, &record);
    tracing::info!(container_id = %id, exit_code = exit.exit_code, oom_killed = exit.oom_killed, "container exited");
    Ok(())
}
