//! The embedded state back end: a map in this process. Nothing to install; lost on restart.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{KvStore, Quota, StateError, Usage};

struct Entry {
    value: Vec<u8>,
    expires: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|t| t > now)
    }
}

/// In-memory [`KvStore`]. Expired keys are invisible at once and reclaimed on access and by a
/// sweep of the whole map once as many writes have happened as the map holds keys (at least
/// `MIN_SWEEP_GAP`), so abandoned sessions do not accumulate and a sweep costs O(1) per write
/// however large the map grows.
#[derive(Default)]
pub struct MemoryStore {
    // A plain mutex: every operation is a short map access with no await inside.
    map: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    writes_since_sweep: usize,
    /// Quota accounts by their prefix.
    accounts: HashMap<String, Account>,
}

/// What one quota account counts: each key's size, the total, and when keys with a TTL expire
/// (so an expired key is uncounted without scanning).
#[derive(Default)]
struct Account {
    sizes: HashMap<String, u64>,
    bytes: u64,
    expiring: std::collections::BTreeSet<(Instant, String)>,
}

impl Inner {
    /// What `incr` of `key` by `by` makes it, and the expiry it keeps.
    fn incremented(&self, key: &str, by: i64, now: Instant) -> Result<(i64, Option<Instant>), StateError> {
        let (current, expires) = match self.entries.get(key) {
            Some(e) if e.live(now) => {
                let n = std::str::from_utf8(&e.value)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| StateError::NotAnInteger { key: key.to_owned() })?;
                (n, e.expires)
            }
            _ => (0, None),
        };
        let next = current.checked_add(by).ok_or_else(|| {
            StateError::Limit(format!("incr of `{key}` by {by} overflows a 64-bit integer"))
        })?;
        Ok((next, expires))
    }

    /// The account of `quota`, with every key that has expired since uncounted.
    fn account(&mut self, quota: &Quota, now: Instant) -> &mut Account {
        let acc = self.accounts.entry(quota.account.clone()).or_default();
        while let Some((at, key)) = acc.expiring.first().cloned() {
            if at > now {
                break;
            }
            acc.expiring.pop_first();
            // A key set again since has a newer record (or none): it still counts.
            if !self.entries.get(&key).is_some_and(|e| e.live(now))
                && let Some(size) = acc.sizes.remove(&key)
            {
                acc.bytes -= size;
                self.entries.remove(&key);
            }
        }
        acc
    }
}

impl Account {
    /// Count `key` at `size` bytes (replacing its old size), or refuse.
    fn admit(&mut self, quota: &Quota, key: &str, size: u64) -> Result<(), StateError> {
        let old = self.sizes.get(key).copied();
        if old.is_none() && self.sizes.len() as u64 >= quota.max_keys {
            return Err(quota.over_keys(self.sizes.len() as u64));
        }
        let held = self.bytes - old.unwrap_or(0);
        if held + size > quota.max_bytes {
            return Err(quota.over_bytes(held, size));
        }
        self.sizes.insert(key.to_owned(), size);
        self.bytes = held + size;
        Ok(())
    }

    fn expire(&mut self, key: &str, at: Option<Instant>) {
        if let Some(at) = at {
            self.expiring.insert((at, key.to_owned()));
        }
    }

    fn forget(&mut self, key: &str) {
        if let Some(size) = self.sizes.remove(key) {
            self.bytes -= size;
        }
    }
}

const MIN_SWEEP_GAP: usize = 4096;

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map half-updated (each operation is one
        // map call), so a poisoned lock is safe to keep using.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn note_write(&mut self, now: Instant) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= self.entries.len().max(MIN_SWEEP_GAP) {
            self.entries.retain(|_, e| e.live(now));
            self.writes_since_sweep = 0;
        }
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("keys", &self.lock().entries.len()).finish()
    }
}

#[async_trait]
impl KvStore for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.entries.get(key) {
            Some(e) if e.live(now) => Ok(Some(e.value.clone())),
            Some(_) => {
                inner.entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<(), StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.entries.insert(key.to_owned(), Entry { value: value.to_vec(), expires: ttl.map(|t| now + t) });
        inner.note_write(now);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self.lock().entries.remove(key).is_some_and(|e| e.live(now)))
    }

    async fn incr(&self, key: &str, by: i64) -> Result<i64, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let (next, expires) = inner.incremented(key, by, now)?;
        inner.entries.insert(key.to_owned(), Entry { value: next.to_string().into_bytes(), expires });
        inner.note_write(now);
        Ok(next)
    }

    async fn append(&self, key: &str, value: &[u8]) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        match inner.entries.get_mut(key) {
            Some(e) if e.live(now) => {
                e.value.extend_from_slice(value);
                Ok(true)
            }
            Some(_) => {
                inner.entries.remove(key);
                Ok(false)
            }
            None => Ok(false),
        }
    }

    async fn set_counted(
        &self,
        key: &str,
        value: &[u8],
        ttl: Option<Duration>,
        quota: &Quota,
    ) -> Result<(), StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let expires = ttl.map(|t| now + t);
        let acc = inner.account(quota, now);
        acc.admit(quota, key, value.len() as u64)?;
        acc.expire(key, expires);
        inner.entries.insert(key.to_owned(), Entry { value: value.to_vec(), expires });
        inner.note_write(now);
        Ok(())
    }

    async fn delete_counted(&self, key: &str, quota: &Quota) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.account(quota, now).forget(key);
        Ok(inner.entries.remove(key).is_some_and(|e| e.live(now)))
    }

    async fn incr_counted(&self, key: &str, by: i64, quota: &Quota) -> Result<i64, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let (next, expires) = inner.incremented(key, by, now)?;
        let text = next.to_string().into_bytes();
        inner.account(quota, now).admit(quota, key, text.len() as u64)?;
        inner.entries.insert(key.to_owned(), Entry { value: text, expires });
        inner.note_write(now);
        Ok(next)
    }

    async fn usage(&self, quota: &Quota) -> Result<Usage, StateError> {
        let now = Instant::now();
        let mut inner = self.lock();
        let acc = inner.account(quota, now);
        Ok(Usage { keys: acc.sizes.len() as u64, bytes: acc.bytes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_store_passes_the_conformance_suite() {
        crate::state::conformance::run_all(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn namespaced_memory_store_passes_the_conformance_suite() {
        let inner: std::sync::Arc<dyn KvStore> = std::sync::Arc::new(MemoryStore::new());
        crate::state::conformance::run_all(&crate::state::Namespaced::new(
            inner.clone(),
            crate::state::Namespace::plugin("app", "tenant-a"),
        ))
        .await;
        crate::state::conformance::namespaces_are_isolated(inner).await;
    }
}
