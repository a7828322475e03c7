//! After a (re)start of berthd: records are reconciled with what the pods' monitors and the
//! runtime report. Running containers are watched again, exits that happened while berthd was
//! down are taken from the monitors (or the exit files they left), and half-made containers are
//! cleaned up.

use std::sync::Arc;

use crate::create::{self, now_ns};
use crate::record::{ContainerRecord, Phase, unknown_exit};
use crate::{Inner, watch};

pub(crate) async fn recover(inner: &Arc<Inner>) {
    let records: Vec<ContainerRecord> = inner.records().values().cloned().collect();
    for record in records {
        match record.phase {
            Phase::Creating => {
                create::rollback(inner, &record).await;
                tracing::info!(container_id = %record.id, "removed a container whose creation was interrupted");
            }
            Phase::Created | Phase::Exited => {}
            Phase::Starting | Phase::Running => {
                if let Err(e) = reconcile(inner, record.clone()).await {
                    tracing::warn!(container_id = %record.id, error = %e, "reconciling a container after restart");
                }
            }
        }
    }
}

async fn reconcile(
    inner: &Arc<Inner>,
    mut record: ContainerRecord,
) -> Result<(), crate::ContainerError> {
    let id = record.id.clone();
    let known = match inner.monitors.get(&record.sandbox_id).await {
        Some(monitor) => tokio::task::spawn_blocking(move || monitor.list())
            .await
            .ok()
            .and_then(|l| l.ok())
            .and_then(|list| list.into_iter().find(|c| c.container_id == id)),
        None => None,
    };
    match known {
        Some(info) => {
            record.phase = Phase::Running;
            if record.pid != info.pid || record.pid_start_time == 0 {
                record.pid = info.pid;
                record.pid_start_time = crate::signal::start_time(info.pid).unwrap_or(0);
            }
            if record.started_at_ns == 0 {
                record.started_at_ns = now_ns();
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
        }
        None => {
            let exit = berth_monitor_api::read_exit_file(&record.monitor_dir, &record.id)
                .ok()
                .flatten();
            let runtime = inner.runtime_for(&record);
            match (exit, record.phase) {
                (Some(exit), _) => record.set_exited(&exit),
                (None, Phase::Starting) => {
                    // berthd died before the monitor took the container: back to CREATED, so
                    // kubelet's retry of StartContainer can run it.
                    runtime.delete(&record.id).await?;
                    record.phase = Phase::Created;
                }
                (None, _) => {
                    // Nobody parents it any more and its exit was never recorded.
                    let _ = runtime.kill(&record.id, libc::SIGKILL).await;
                    runtime.delete(&record.id).await?;
                    record.set_exited(&unknown_exit());
                    record.message =
                        "the container's monitor is gone; its exit status is unknown".into();
                }
            }
            inner.save(&record).await?;
        }
    }
    Ok(())
}
