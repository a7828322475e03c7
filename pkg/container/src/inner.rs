//! The service's shared state: the write-through record cache and its store, the per-container
//! locks, and each container's runtime.

use std::collections::{BTreeMap, HashMap};

use crate::error::ContainerError;
use crate::record::{ContainerRecord, Phase};
use berth_store::RecordLock;

use crate::{ContainerEventKind, Inner, OciRuntime, events, removal, seams};

impl Inner {
    pub(crate) fn records(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ContainerRecord>> {
        self.records.read()
    }

    pub(crate) fn record(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        self.records
            .get(id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))
    }

    /// The container's lock. Only a container that exists (or is being removed) gets one kept
    /// in the map (see `RecordCache::lock_if_known`): an exit watched after a removal or a
    /// Stop of an unknown ID must not leave an entry behind.
    pub(crate) fn lock_for(&self, id: &str) -> RecordLock {
        let known = self.records.contains(id) || self.removing_mut().contains_key(id);
        self.records.lock_if_known(id, known)
    }

    pub(crate) fn forget_lock(&self, id: &str) {
        self.records.forget_lock(id);
    }

    /// Writes the record to the store (durably), then to the cache.
    pub(crate) async fn save(&self, record: &ContainerRecord) -> Result<(), ContainerError> {
        let old = self.records.save(record).await?.map(|r| r.phase);
        if let Some(kind) = events::for_change(old, record.phase) {
            self.deps.metrics.observe(kind, record);
            self.events.send(kind, record);
        }
        Ok(())
    }

    /// Updates the cache alone: for a phase that need not survive a crash (Starting).
    pub(crate) fn cache(&self, record: &ContainerRecord) {
        self.records.cache(record);
    }

    /// RemoveContainer's durable step: the record becomes REMOVING in the store and leaves the
    /// cache (CRI no longer sees it; Deleted is sent); the cleanup still to do is registered.
    pub(crate) async fn tombstone(
        &self,
        record: &mut ContainerRecord,
    ) -> Result<(), ContainerError> {
        let was = record.phase;
        record.phase = Phase::Removing;
        if let Err(e) = self.records.persist(record).await {
            record.phase = was;
            return Err(e.into());
        }
        self.records.uncache(&record.id);
        self.removing_mut()
            .insert(record.id.clone(), removal::Removal::pending(record.clone()));
        if was != Phase::Creating {
            self.deps
                .metrics
                .observe(ContainerEventKind::Deleted, record);
            self.events.send(ContainerEventKind::Deleted, record);
        }
        Ok(())
    }

    pub(crate) fn removing_mut(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, removal::Removal>> {
        self.removing.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) async fn delete(&self, id: &str) -> Result<(), ContainerError> {
        let removed = self.records.delete(id).await?;
        if let Some(record) = removed.filter(|r| r.phase != Phase::Creating) {
            self.deps
                .metrics
                .observe(ContainerEventKind::Deleted, &record);
            self.events.send(ContainerEventKind::Deleted, &record);
        }
        Ok(())
    }

    pub(crate) fn pod_container_ids(&self, sandbox_id: &str) -> Vec<String> {
        self.records()
            .values()
            .filter(|r| r.sandbox_id == sandbox_id)
            .map(|r| r.id.clone())
            .collect()
    }

    pub(crate) fn runtime_for(&self, record: &ContainerRecord) -> OciRuntime {
        OciRuntime {
            path: record.runtime_path.clone(),
            root: record.runtime_root.clone(),
            systemd_cgroup: false,
        }
    }

    /// The container's runtime, to run its commands through.
    pub(crate) fn runtime(&self, record: &ContainerRecord) -> seams::BoundRuntime {
        self.bound_runtime(self.runtime_for(record))
    }

    pub(crate) fn bound_runtime(&self, oci: OciRuntime) -> seams::BoundRuntime {
        seams::BoundRuntime {
            commands: self.deps.runtime.clone(),
            oci,
        }
    }
}
