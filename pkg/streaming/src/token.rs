//! Single-use tokens for the streaming URLs.
//!
//! A URL is the only credential a streaming client presents, so its token is 128 random bits
//! (url-safe base64), it works once (taken out of the cache on first use, a second use gets 404),
//! and it expires after the TTL (60 s by default, like kubelet's and containerd's). The cache is
//! bounded at [`MAX_IN_FLIGHT`] unused tokens, as theirs is: a runaway caller gets an error
//! instead of growing berthd's memory. Expired tokens are dropped on every insert and by a
//! periodic sweep.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use tokio::time::Instant;

use crate::backend::{AttachTarget, ExecTarget};
use crate::error::StreamingError;

/// How many URLs may be handed out and not used yet.
pub const MAX_IN_FLIGHT: usize = 1000;

/// Random bytes per token: 128 bits.
const TOKEN_BYTES: usize = 16;

/// What a token stands for.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    Exec(ExecTarget),
    Attach(AttachTarget),
    PortForward(String),
}

impl Request {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward(_) => "portforward",
        }
    }
}

struct Entry {
    request: Request,
    expires: Instant,
}

struct Inner {
    entries: HashMap<String, Entry>,
    /// Insertion order, for expiring the oldest first. May name tokens already used: they are
    /// skipped when popped, and the queue is compacted when it grows past twice the limit.
    order: VecDeque<(Instant, String)>,
}

pub(crate) struct TokenCache {
    ttl: Duration,
    limit: usize,
    inner: Mutex<Inner>,
}

impl TokenCache {
    pub(crate) fn new(ttl: Duration, limit: usize) -> TokenCache {
        TokenCache {
            ttl,
            limit,
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way that
        // matters (worst case a stale order entry), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores the request and returns its new token.
    pub(crate) fn insert(&self, request: Request) -> Result<String, StreamingError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.sweep(now);
        if inner.entries.len() >= self.limit {
            return Err(StreamingError::TooManyInFlight { limit: self.limit });
        }
        let token = loop {
            let token = random_token()?;
            if !inner.entries.contains_key(&token) {
                break token;
            }
        };
        let expires = now + self.ttl;
        inner
            .entries
            .insert(token.clone(), Entry { request, expires });
        inner.order.push_back((expires, token.clone()));
        if inner.order.len() > 2 * self.limit.max(16) {
            let Inner { entries, order } = &mut *inner;
            order.retain(|(_, t)| entries.contains_key(t));
        }
        Ok(token)
    }

    /// Takes the request out: a token works once, and not after it expired.
    pub(crate) fn consume(&self, token: &str) -> Option<Request> {
        let now = Instant::now();
        let entry = self.lock().entries.remove(token)?;
        (now < entry.expires).then_some(entry.request)
    }

    /// Drops expired tokens.
    pub(crate) fn sweep(&self) {
        self.lock().sweep(Instant::now());
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().entries.len()
    }
}

impl Inner {
    fn sweep(&mut self, now: Instant) {
        while let Some((expires, _)) = self.order.front() {
            if *expires > now {
                break;
            }
            if let Some((expires, token)) = self.order.pop_front()
                && self
                    .entries
                    .get(&token)
                    .is_some_and(|entry| entry.expires == expires)
            {
                self.entries.remove(&token);
            }
        }
    }
}

fn random_token() -> Result<String, StreamingError> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|e| StreamingError::Random(e.to_string()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf(pod: &str) -> Request {
        Request::PortForward(pod.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn single_use_and_expiry() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let a = cache.insert(pf("a")).unwrap();
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(matches!(cache.consume(&a), Some(Request::PortForward(p)) if p == "a"));
        assert!(cache.consume(&a).is_none());

        let b = cache.insert(pf("b")).unwrap();
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(cache.consume(&b).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn bounded_and_swept() {
        let cache = TokenCache::new(Duration::from_secs(60), 3);
        for _ in 0..3 {
            cache.insert(pf("x")).unwrap();
        }
        assert!(matches!(
            cache.insert(pf("x")),
            Err(StreamingError::TooManyInFlight { limit: 3 })
        ));
        tokio::time::advance(Duration::from_secs(61)).await;
        cache.sweep();
        assert_eq!(cache.len(), 0);
        cache.insert(pf("x")).unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn used_tokens_free_their_slot_and_the_order_stays_bounded() {
        let cache = TokenCache::new(Duration::from_secs(60), 2);
        for _ in 0..1000 {
            let t = cache.insert(pf("x")).unwrap();
            assert!(cache.consume(&t).is_some());
        }
        assert!(cache.lock().order.len() <= 2 * 16 + 1);
    }

    #[test]
    fn tokens_differ() {
        let a = random_token().unwrap();
        let b = random_token().unwrap();
        assert_ne!(a, b);
    }
}
