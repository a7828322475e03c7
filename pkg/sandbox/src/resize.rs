//! UpdatePodSandboxResources (in-place pod resize, Kubernetes 1.33+). kubelet calls it after it has
//! resized the pod-level cgroup itself; CRI makes it best effort. Berth applies the pod's new
//! resources plus its overhead to the pod cgroup it runs the pod in, exactly as RunPodSandbox
//! sized it: for a cgroup kubelet owns this writes what kubelet wrote, and a cgroup Berth made
//! (a pod without `cgroup_parent`) follows the resize only because of it.

use crate::config::Resources;
use crate::error::SandboxError;
use crate::record::SandboxState;
use crate::{SandboxService, detached, net};

impl SandboxService {
    /// Re-sizes a ready pod's cgroup to `resources` plus `overhead`. NOT_FOUND for an unknown pod,
    /// FAILED_PRECONDITION for one that is not ready (its cgroup may be gone); a pod Berth runs
    /// without a cgroup of its own has nothing to resize.
    pub async fn update_resources(
        &self,
        id_or_prefix: &str,
        resources: Resources,
        overhead: Resources,
    ) -> Result<(), SandboxError> {
        let id = self.resolve(id_or_prefix)?;
        let inner = self.inner.clone();
        detached(async move {
            // Serialised with Stop and Remove of the same pod, which take the same lock.
            let lock = inner.lock_for(&id);
            let _guard = lock.lock().await;
            let Some(mut record) = inner.records().get(&id).cloned() else {
                return Err(SandboxError::NotFound(id));
            };
            if record.state() != SandboxState::Ready {
                // Its cgroup may be gone: there is nothing to resize.
                return Err(SandboxError::NotReady {
                    id,
                    action: "resizing the cgroup of",
                });
            }
            let Some(cgroup) = record.cgroup.as_mut() else {
                return Ok(());
            };
            let wanted = net::cgroup_resources(&resources, &overhead);
            // `ensure` creates nothing for a cgroup that exists; should a directory have gone
            // missing, the record learns what was made again, so removal finds it.
            if inner.host.cgroups.ensure(cgroup, &wanted)? {
                inner.save(&record).await?;
            }
            tracing::info!(sandbox_id = %id, "pod resources updated");
            Ok(())
        })
        .await
    }
}
