//! A write-through cache of one record type, with a lock per record.
//!
//! The sandbox and container services keep every record of their kind in memory so that lists
//! and status calls never touch the disk, write each change to the store before the cache (a
//! crash loses nothing that was acknowledged), and serialise the operations on one object with a
//! per-ID async lock. This is that plumbing, once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::error::StoreError;
use crate::ids::{IdLookup, resolve_id};
use crate::record::Record;
use crate::store::Store;

/// The lock that serialises the operations on one record.
pub type RecordLock = Arc<tokio::sync::Mutex<()>>;

/// Records of type `R`, cached in memory and written through to the store.
pub struct RecordCache<R> {
    store: Store,
    records: RwLock<BTreeMap<String, R>>,
    locks: Mutex<HashMap<String, RecordLock>>,
}

impl<R> RecordCache<R>
where
    R: Record + Clone + Send + Sync + 'static,
{
    /// Every record of the type in the store.
    pub fn load(store: Store) -> Result<Self, StoreError> {
        let records = store.list::<R>()?;
        Ok(Self::with_records(store, records))
    }

    /// A cache holding `records` (the caller loaded and sorted them: some may belong elsewhere,
    /// such as containers already being removed).
    pub fn with_records(store: Store, records: impl IntoIterator<Item = R>) -> Self {
        let records = records
            .into_iter()
            .map(|r| (r.id().to_string(), r))
            .collect();
        RecordCache {
            store,
            records: RwLock::new(records),
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// The store the records are written to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cached records, by ID. Hold the guard briefly: writers wait for it.
    pub fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, R>> {
        // A panic while holding the lock cannot leave a half-written map: every change is one
        // insert or remove, so the data is usable after a poisoning.
        self.records.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, R>> {
        self.records.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, id: &str) -> Option<R> {
        self.read().get(id).cloned()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.read().contains_key(id)
    }

    /// The one cached ID that `prefix` names (an exact match wins).
    pub fn resolve(&self, prefix: &str) -> Result<String, IdLookup> {
        resolve_id(self.read().keys(), prefix)
    }

    /// Writes the record to the store (durably), then to the cache. Returns the record it
    /// replaced in the cache, if any.
    pub async fn save(&self, record: &R) -> Result<Option<R>, StoreError> {
        self.persist(record).await?;
        Ok(self.cache(record))
    }

    /// Writes the record to the store alone, leaving the cache as it is (a record on its way out
    /// of the cache, written first so a crash finds it).
    pub async fn persist(&self, record: &R) -> Result<(), StoreError> {
        let store = self.store.clone();
        let to_write = record.clone();
        blocking(move || store.put(&to_write)).await
    }

    /// Updates the cache alone: for a state that need not survive a crash. Returns the record it
    /// replaced.
    pub fn cache(&self, record: &R) -> Option<R> {
        self.write().insert(record.id().to_string(), record.clone())
    }

    /// Takes the record out of the cache alone (it stays in the store).
    pub fn uncache(&self, id: &str) -> Option<R> {
        self.write().remove(id)
    }

    /// Deletes the record from the store, then from the cache. Returns the cached record.
    pub async fn delete(&self, id: &str) -> Result<Option<R>, StoreError> {
        let store = self.store.clone();
        let key = id.to_string();
        blocking(move || store.delete::<R>(&key).map(drop)).await?;
        Ok(self.uncache(id))
    }

    /// The record's lock, kept until [`RecordCache::forget_lock`].
    pub fn lock(&self, id: &str) -> RecordLock {
        self.locks().entry(id.to_string()).or_default().clone()
    }

    /// The record's lock, kept only if `known` (the object exists): an operation on an unknown
    /// ID finds nothing to do, and keeping a lock for it would leave an entry behind for each
    /// such call. An unknown ID that already has a lock gets that one.
    pub fn lock_if_known(&self, id: &str, known: bool) -> RecordLock {
        let mut locks = self.locks();
        match locks.get(id) {
            Some(lock) => lock.clone(),
            None if known => locks.entry(id.to_string()).or_default().clone(),
            None => RecordLock::default(),
        }
    }

    /// Drops the record's lock entry (the object is gone). Holders keep their clone.
    pub fn forget_lock(&self, id: &str) {
        self.locks().remove(id);
    }

    fn locks(&self) -> std::sync::MutexGuard<'_, HashMap<String, RecordLock>> {
        self.locks.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs a store call on the blocking pool: every write fsyncs.
async fn blocking(
    call: impl FnOnce() -> Result<(), StoreError> + Send + 'static,
) -> Result<(), StoreError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|source| StoreError::Task { source })?
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::record::RecordKind;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Pod {
        id: String,
        n: u32,
    }

    impl Record for Pod {
        const KIND: RecordKind = RecordKind::Sandbox;
        fn id(&self) -> &str {
            &self.id
        }
    }

    fn pod(id: &str, n: u32) -> Pod {
        Pod { id: id.into(), n }
    }

    #[tokio::test]
    async fn writes_go_through_to_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let cache = RecordCache::<Pod>::load(store.clone()).unwrap();
        assert_eq!(cache.save(&pod("ab1", 1)).await.unwrap(), None);
        assert_eq!(
            cache.save(&pod("ab1", 2)).await.unwrap(),
            Some(pod("ab1", 1))
        );
        cache.save(&pod("cd2", 3)).await.unwrap();
        assert_eq!(store.get::<Pod>("ab1").unwrap(), Some(pod("ab1", 2)));

        // Cache-only changes do not reach the store; persisted ones do not reach the cache.
        cache.cache(&pod("cd2", 4));
        assert_eq!(store.get::<Pod>("cd2").unwrap(), Some(pod("cd2", 3)));
        cache.persist(&pod("ab1", 5)).await.unwrap();
        assert_eq!(cache.get("ab1"), Some(pod("ab1", 2)));

        assert_eq!(cache.resolve("c").unwrap(), "cd2");
        assert_eq!(cache.resolve("e"), Err(IdLookup::NotFound));
        assert_eq!(cache.delete("cd2").await.unwrap(), Some(pod("cd2", 4)));
        assert_eq!(store.get::<Pod>("cd2").unwrap(), None);
        assert!(!cache.contains("cd2"));

        let reloaded = RecordCache::<Pod>::load(store).unwrap();
        assert_eq!(reloaded.get("ab1"), Some(pod("ab1", 5)));
        assert_eq!(reloaded.read().len(), 1);
    }

    #[tokio::test]
    async fn locks_are_per_record_and_only_kept_for_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("db")).unwrap();
        let cache = RecordCache::<Pod>::with_records(store, [pod("ab1", 1)]);

        let held = cache.lock("ab1");
        let _guard = held.lock().await;
        assert!(cache.lock("ab1").try_lock().is_err(), "the same lock");
        assert!(cache.lock("cd2").try_lock().is_ok(), "another record's");

        // An unknown ID gets a lock of its own that nobody else shares, and leaves nothing.
        let stray = cache.lock_if_known("ef3", false);
        assert!(!Arc::ptr_eq(&stray, &cache.lock_if_known("ef3", false)));
        assert!(cache.lock_if_known("ab1", false).try_lock().is_err());
        cache.forget_lock("ab1");
        assert!(cache.lock("ab1").try_lock().is_ok());
    }
}
