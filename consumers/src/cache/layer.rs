//! [`Cache`]: Redis first, the in-process fallback when Redis is away.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pipeline::internal_events::InternalEvent;

use super::config::CacheConfig;
use super::events::{
    CacheFallbackActivated, CacheFallbackDeactivated, CacheLookedUp, CacheRedisRejected,
};
use super::fallback::{Fallback, Route, Ticket};
use super::memory::Memory;
use super::newer::NewerWrite;
use super::redis_store::{RedisFailure, RedisStore};
use super::write::CacheWrite;
use super::CacheError;

/// Which layer took a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Redis,
    Memory,
}

/// Outcome of [`Cache::set_if_newer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// False when what was cached is as new or newer: nothing changed.
    pub applied: bool,
    pub layer: Layer,
}

/// Counts of what the cache did since it was built; metrics will read them.
#[derive(Debug, Default)]
pub struct CacheCounters {
    hits: AtomicU64,
    misses: AtomicU64,
    fallback_activations: AtomicU64,
    redis_errors: AtomicU64,
}

/// [`CacheCounters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    pub hits: u64,
    pub misses: u64,
    pub fallback_activations: u64,
    pub redis_errors: u64,
}

impl CacheCounters {
    /// `get`s that found a value, in Redis or in memory.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Switches from Redis to memory.
    pub fn fallback_activations(&self) -> u64 {
        self.fallback_activations.load(Ordering::Relaxed)
    }

    /// Redis operations that failed (timed out, unreachable or rejected).
    pub fn redis_errors(&self) -> u64 {
        self.redis_errors.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        CounterSnapshot {
            hits: self.hits(),
            misses: self.misses(),
            fallback_activations: self.fallback_activations(),
            redis_errors: self.redis_errors(),
        }
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A string cache on Redis with an in-process fallback. Cheap to clone: clones
/// share connections, memory and counters.
///
/// Operations go to Redis first, within `redis_timeout`. When Redis is
/// unreachable or too slow the cache switches to memory (logged and counted
/// once per switch) and tries Redis again every `redis_retry_interval`; the
/// first answer switches it back.
///
/// While Redis is away, writes land in memory only and are **not** replayed
/// to Redis when it returns; reads keep checking memory after Redis, so those
/// entries are served until they expire (TTL capped by `fallback_ttl_cap`).
/// Until then two things can be stale:
/// - a key written to memory during the outage that Redis also holds (older,
///   if Redis kept its data) reads as the Redis value;
/// - a delete made during the outage did not reach Redis, so a derived key
///   (a scout report) may be served from Redis until its own TTL ends.
///
/// Every successful Redis write or delete also drops the key from memory, so
/// an outage-era copy never resurfaces once Redis has a newer one.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CacheConfig,
    redis: RedisStore,
    memory: Memory,
    fallback: Fallback,
    counters: CacheCounters,
}

impl Cache {
    /// Builds the cache and checks Redis once. Redis being down is not an
    /// error: the cache starts on its fallback. Only a bad configuration is.
    pub async fn connect(config: CacheConfig) -> Result<Self, CacheError> {
        config.validate()?;
        let client = pipeline::redis_tls::client(&config.redis_url, &config.redis_tls)
            .map_err(|source| CacheError::InvalidUrl { source })?;
        let inner = Inner {
            redis: RedisStore::new(client, &config.key_prefix, config.redis_timeout()),
            memory: Memory::new(config.fallback_max_entries, config.fallback_ttl_cap()),
            fallback: Fallback::new(config.redis_retry_interval()),
            counters: CacheCounters::default(),
            config,
        };
        let cache = Self {
            inner: Arc::new(inner),
        };
        cache.via_redis("ping", cache.inner.redis.ping()).await;
        Ok(cache)
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    pub fn counters(&self) -> &CacheCounters {
        &self.inner.counters
    }

    /// True while Redis is considered away and memory serves.
    pub fn is_on_fallback(&self) -> bool {
        self.inner.fallback.is_active()
    }

    fn current_layer(&self) -> Layer {
        if self.is_on_fallback() {
            Layer::Memory
        } else {
            Layer::Redis
        }
    }

    /// `key` as stored in Redis, with the configured prefix.
    pub fn redis_key(&self, key: &str) -> String {
        self.inner.redis.full_key(key)
    }

    /// Redis first, memory second.
    pub async fn get(&self, key: &str) -> Option<String> {
        let from_redis = self.via_redis("get", self.inner.redis.get(key)).await;
        let found = match from_redis.flatten() {
            Some(value) => Some(value),
            None => self.inner.memory.get(key).await,
        };
        self.count_lookup(found.is_some());
        found
    }

    /// [`Cache::get`] of every key, with one Redis round trip (`MGET`).
    pub async fn get_many<S: AsRef<str>>(&self, keys: &[S]) -> Vec<Option<String>> {
        let from_redis = self.via_redis("get_many", self.inner.redis.get_many(keys));
        let from_redis = from_redis.await.unwrap_or_else(|| vec![None; keys.len()]);
        let mut found = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(from_redis) {
            let value = match value {
                Some(value) => Some(value),
                None => self.inner.memory.get(key.as_ref()).await,
            };
            self.count_lookup(value.is_some());
            found.push(value);
        }
        found
    }

    /// Applies `writes` in order, as that many [`Cache::set`], [`Cache::delete`]
    /// and [`Cache::set_if_newer`] calls would, but with one Redis round trip
    /// (a pipeline). When Redis is away they all land in memory.
    pub async fn write_all(&self, writes: &[CacheWrite]) -> Layer {
        if writes.is_empty() {
            return self.current_layer();
        }
        let on_redis = self.via_redis("write_all", self.inner.redis.write_all(writes));
        if on_redis.await.is_some() {
            // As after each single write: no outage-era copy may resurface.
            if self.inner.memory.never_written() {
                return Layer::Redis;
            }
            for write in writes {
                for key in write.keys() {
                    self.inner.memory.delete(&[key]).await;
                }
            }
            return Layer::Redis;
        }
        for write in writes {
            self.write_to_memory(write).await;
        }
        Layer::Memory
    }

    async fn write_to_memory(&self, write: &CacheWrite) {
        let memory = &self.inner.memory;
        match write {
            CacheWrite::Set { key, value, ttl } => memory.set(key, value, *ttl).await,
            CacheWrite::Delete { keys } => memory.delete(keys).await,
            CacheWrite::SetIfNewer { .. } => {
                if let Some(newer) = write.as_newer() {
                    memory.set_if_newer(&newer).await;
                }
            }
        }
    }

    fn count_lookup(&self, hit: bool) {
        let (counter, result) = if hit {
            (&self.inner.counters.hits, "hit")
        } else {
            (&self.inner.counters.misses, "miss")
        };
        CacheCounters::bump(counter);
        CacheLookedUp { result }.emit();
    }

    pub async fn set(&self, key: &str, value: &str, ttl: Duration) -> Layer {
        let stored = self.via_redis("set", self.inner.redis.set(key, value, ttl));
        if stored.await.is_some() {
            self.inner.memory.delete(&[key]).await;
            return Layer::Redis;
        }
        self.inner.memory.set(key, value, ttl).await;
        Layer::Memory
    }

    /// Deletes from both layers; returns whether Redis took the delete.
    pub async fn delete<S: AsRef<str>>(&self, keys: &[S]) -> Layer {
        if keys.is_empty() {
            // No Redis call, so no probe: a probe must really reach Redis.
            return self.current_layer();
        }
        let deleted = self.via_redis("delete", self.inner.redis.delete(keys));
        let layer = match deleted.await {
            Some(()) => Layer::Redis,
            None => Layer::Memory,
        };
        self.inner.memory.delete(keys).await;
        layer
    }

    /// See [`NewerWrite`]: atomic on Redis (a Lua script) and per key in memory.
    pub async fn set_if_newer(&self, write: NewerWrite<'_>) -> Written {
        let on_redis = self.via_redis("set_if_newer", self.inner.redis.set_if_newer(&write));
        if let Some(applied) = on_redis.await {
            self.inner.memory.delete(&[write.key]).await;
            self.inner.memory.delete(write.invalidate).await;
            return Written {
                applied,
                layer: Layer::Redis,
            };
        }
        Written {
            applied: self.inner.memory.set_if_newer(&write).await,
            layer: Layer::Memory,
        }
    }

    /// Runs `call` on Redis unless on the fallback (between probes); `None`
    /// means memory must serve. Keeps the mode, counters and log up to date.
    async fn via_redis<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, RedisFailure>>,
    ) -> Option<T> {
        let ticket = self.inner.fallback.route();
        if ticket.route == Route::Memory {
            return None;
        }
        match call.await {
            Ok(value) => {
                self.redis_answered(ticket);
                Some(value)
            }
            Err(RedisFailure::Rejected(error)) => {
                CacheCounters::bump(&self.inner.counters.redis_errors);
                CacheRedisRejected {
                    operation,
                    error: &error,
                }
                .emit();
                self.redis_answered(ticket);
                None
            }
            Err(RedisFailure::Unavailable(error)) => {
                CacheCounters::bump(&self.inner.counters.redis_errors);
                self.redis_unavailable(ticket, operation, &error);
                None
            }
        }
    }

    fn redis_answered(&self, ticket: Ticket) {
        if let Some(fallback_for) = self.inner.fallback.answered(ticket) {
            CacheFallbackDeactivated { fallback_for }.emit();
        }
    }

    fn redis_unavailable(&self, ticket: Ticket, operation: &'static str, error: &str) {
        if self.inner.fallback.unavailable(ticket) {
            CacheCounters::bump(&self.inner.counters.fallback_activations);
            CacheFallbackActivated {
                operation,
                error,
                retry_in: self.inner.fallback.retry_interval(),
            }
            .emit();
        }
    }
}
