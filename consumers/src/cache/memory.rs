//! The in-process fallback: a size-bounded moka cache whose entries keep
//! their own TTL, capped so memory never holds an entry for long.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache as Moka;
use moka::ops::compute::{CompResult, Op};
use moka::Expiry;

use super::newer::NewerWrite;

#[derive(Clone)]
struct Stored {
    value: Arc<str>,
    ttl: Duration,
}

/// Expires each entry after the TTL it was written with.
struct PerEntryTtl;

impl Expiry<String, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _key: &String, value: &Stored, _at: Instant) -> Option<Duration> {
        Some(value.ttl)
    }

    fn expire_after_update(
        &self,
        _key: &String,
        value: &Stored,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub(crate) struct Memory {
    entries: Moka<String, Stored>,
    ttl_cap: Duration,
    /// False until the first write: deletes then have nothing to drop.
    written: AtomicBool,
}

impl Memory {
    pub(crate) fn new(max_entries: u64, ttl_cap: Duration) -> Self {
        let entries = Moka::builder()
            .max_capacity(max_entries)
            .expire_after(PerEntryTtl)
            .build();
        Self {
            entries,
            ttl_cap,
            written: AtomicBool::new(false),
        }
    }

    /// True while nothing was ever written here (Redis never went away).
    pub(crate) fn never_written(&self) -> bool {
        !self.written.load(Ordering::Relaxed)
    }

    pub(crate) async fn get(&self, key: &str) -> Option<String> {
        self.entries.get(key).await.map(|s| s.value.to_string())
    }

    pub(crate) async fn set(&self, key: &str, value: &str, ttl: Duration) {
        let stored = self.stored(value, ttl);
        self.entries.insert(key.to_string(), stored).await;
    }

    pub(crate) async fn delete<S: AsRef<str>>(&self, keys: &[S]) {
        for key in keys {
            self.entries.invalidate(key.as_ref()).await;
        }
    }

    /// Atomic per key, like the Redis script; true when the write happened.
    pub(crate) async fn set_if_newer(&self, write: &NewerWrite<'_>) -> bool {
        let stored = self.stored(write.value, write.ttl);
        let result = self
            .entries
            .entry_by_ref(write.key)
            .and_compute_with(|current| {
                let newer = current.is_none_or(|entry| write.is_newer_than(&entry.value().value));
                std::future::ready(if newer { Op::Put(stored) } else { Op::Nop })
            })
            .await;
        let applied = matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        );
        if applied {
            self.delete(write.invalidate).await;
        }
        applied
    }

    fn stored(&self, value: &str, ttl: Duration) -> Stored {
        self.written.store(true, Ordering::Relaxed);
        Stored {
            value: Arc::from(value),
            ttl: ttl.min(self.ttl_cap),
        }
    }
}
