//! Exit watchers: one task per running container waits on the monitor (a `Wait` request on its own
//! connection, no thread held) and records the exit as soon as the monitor has it on disk.

use std::sync::Arc;
use std::time::Duration;

use berth_monitor_api::Exit;

use crate::error::ContainerError;
use crate::record::Phase;
use crate::{Inner, monitors};

/// Starts watching a running container.
pub(crate) fn spawn(inner: &Arc<Inner>, id: &str) {
    let inner = inner.clone();
    let id = id.to_string();
    tokio::spawn(async move {
        let Ok(record) = inner.record(&id) else {
            return;
        };
        // A monitor that is briefly unreachable (overloaded) gets a few more tries; one that is
        // gone leaves the exit file behind, which `exit_of` reads.
        let mut attempts = 0;
        let exit = loop {
            match monitors::wait_exit(&record.monitor_dir, &id).await {
                Ok(exit) => break Some(exit),
                Err(e) => {
                    attempts += 1;
                    if attempts >= 5 {
                        tracing::warn!(container_id = %id, error = %e, "lost track of the container's monitor");
                        break berth_monitor_api::read_exit_file(&record.monitor_dir, &id)
                            .ok()
                            .flatten();
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        if let Some(exit) = exit
            && let Err(e) = record_exit(&inner, &id, &exit).await
        {
            tracing::warn!(container_id = %id, error = %e, "recording a container exit");
        }
    });
}

/// Marks the container exited (once; later calls change nothing).
pub(crate) async fn record_exit(
    inner: &Arc<Inner>,
    id: &str,
    exit: &Exit,
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
    inner.save(&record).await?;
    crate::lifecycle::delete_runtime_state(inner, &record);
    tracing::info!(container_id = %id, exit_code = exit.exit_code, oom_killed = exit.oom_killed, "container exited");
    Ok(())
}
