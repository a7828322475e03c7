//! Calls that share a key run one after another: kubelet retries a RunPodSandbox or a
//! CreateContainer that timed out with the same metadata, and the retry must wait for the first
//! call and then find its object instead of making a second one.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use crate::cache::RecordLock;

/// One lock per key, kept only while a call with that key runs or waits.
pub struct OneAtATime<K> {
    slots: tokio::sync::Mutex<HashMap<K, RecordLock>>,
}

impl<K> Default for OneAtATime<K> {
    fn default() -> Self {
        OneAtATime {
            slots: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone> OneAtATime<K> {
    /// Runs `work` once every earlier call with `key` has finished.
    pub async fn run<T>(&self, key: K, work: impl Future<Output = T>) -> T {
        let slot = self
            .slots
            .lock()
            .await
            .entry(key.clone())
            .or_default()
            .clone();
        let result = {
            let _turn = slot.lock().await;
            work.await
        };
        let mut slots = self.slots.lock().await;
        // The map's clone and ours: nobody else waits, so the key's entry can go.
        if std::sync::Arc::strong_count(&slot) == 2 {
            slots.remove(&key);
        }
        result
    }

    /// Whether no call is running or waiting (nothing is kept once the calls are done).
    pub async fn is_idle(&self) -> bool {
        self.slots.lock().await.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn calls_with_one_key_take_turns_and_leave_nothing() {
        let queue = Arc::new(OneAtATime::<&'static str>::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut calls = Vec::new();
        for _ in 0..4 {
            let (queue, inside, most) = (queue.clone(), inside.clone(), most.clone());
            calls.push(tokio::spawn(async move {
                queue
                    .run("pod", async {
                        let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        inside.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await;
            }));
        }
        // Another key does not wait for them.
        assert_eq!(queue.run("other", async { 7 }).await, 7);
        for call in calls {
            call.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(queue.is_idle().await);
    }
}
