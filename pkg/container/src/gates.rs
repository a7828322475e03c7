//! Per-pod gates between starts and the pod monitor's exit: starts hold a pod's gate shared from
//! getting the monitor until it has taken the container; telling the monitor its last container
//! is gone (after which it exits) holds it exclusively, so no start hands its container to a
//! monitor that is exiting. In-process only, so independent of how monitors are reached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Held by a start while it hands a container to the pod's monitor.
pub(crate) type StartGate = tokio::sync::OwnedRwLockReadGuard<()>;
/// Held while the pod's monitor is told its last container is gone, until it has exited.
pub(crate) type LastGate = tokio::sync::OwnedRwLockWriteGuard<()>;

#[derive(Default)]
pub(crate) struct PodGates {
    pods: Mutex<HashMap<String, Arc<tokio::sync::RwLock<()>>>>,
}

impl PodGates {
    fn gate(&self, sandbox_id: &str) -> Arc<tokio::sync::RwLock<()>> {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sandbox_id.to_string())
            .or_default()
            .clone()
    }

    pub(crate) async fn start_gate(&self, sandbox_id: &str) -> StartGate {
        self.gate(sandbox_id).read_owned().await
    }

    pub(crate) async fn last_gate(&self, sandbox_id: &str) -> LastGate {
        self.gate(sandbox_id).write_owned().await
    }

    /// The pod's monitor was retired with the pod: its gate goes too.
    pub(crate) fn remove(&self, sandbox_id: &str) {
        self.pods
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sandbox_id);
    }
}
