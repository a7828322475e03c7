//! Coalescing: concurrent requests for the same key (an image reference, a layer's chain ID, a blob
//! digest) share one execution and its result, so ten pulls of one image download each blob once.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

pub(crate) struct Coalescer<K, V> {
    inflight: Mutex<HashMap<K, Arc<OnceCell<V>>>>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            inflight: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Coalescer<K, V> {
    /// Runs `work` unless a run for `key` is already in flight, in which case its result is shared.
    /// If the running caller is cancelled, a waiting one takes over (tokio's OnceCell semantics).
    pub(crate) async fn run<F, Fut>(&self, key: K, work: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            inflight.entry(key.clone()).or_default().clone()
        };
        let value = cell.get_or_init(work).await.clone();
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the finished run so a later request starts afresh (a failure is not cached forever).
        if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            inflight.remove(&key);
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_runs_share_one_execution() {
        let coalescer = Arc::new(Coalescer::<&str, usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (coalescer, runs) = (coalescer.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                coalescer
                    .run("k", || async {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        runs.fetch_add(1, Ordering::SeqCst) + 1
                    })
                    .await
            }));
        }
        for task in tasks {
            assert_eq!(task.await.unwrap(), 1);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Finished runs are forgotten: the next call runs again.
        assert_eq!(coalescer.run("k", || async { 7 }).await, 7);
    }
}
