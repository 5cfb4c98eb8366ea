//! What happens inside the cache layer, one struct per happening; `emit`
//! writes the log line (and, as metrics arrive, the metric) from one place.

use std::time::Duration;

use pipeline::internal_events::InternalEvent;
use pipeline::observe::names;

/// Redis stopped answering: reads and writes go to the in-process cache.
/// Emitted once per outage, not once per failed operation.
pub struct CacheFallbackActivated<'a> {
    pub operation: &'static str,
    pub error: &'a str,
    pub retry_in: Duration,
}

impl InternalEvent for CacheFallbackActivated<'_> {
    fn emit(self) {
        tracing::warn!(
            operation = self.operation,
            error = self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "redis unavailable; cache falls back to in-process memory"
        );
        metrics::counter!(names::CACHE_FALLBACK_ACTIVATIONS_TOTAL).increment(1);
        metrics::gauge!(names::CACHE_FALLBACK_ACTIVE).set(1.0);
    }
}

/// Redis answers again: the cache is back on it. What was written to memory
/// meanwhile stays there (not replayed) until it expires.
pub struct CacheFallbackDeactivated {
    pub fallback_for: Duration,
}

impl InternalEvent for CacheFallbackDeactivated {
    fn emit(self) {
        tracing::info!(
            fallback_ms = self.fallback_for.as_millis() as u64,
            "redis available again; cache back on redis"
        );
        metrics::gauge!(names::CACHE_FALLBACK_ACTIVE).set(0.0);
    }
}

/// One read through the cache: a hit in Redis or memory, or a miss. Counted
/// only (a log line per read would drown the logs).
pub struct CacheLookedUp {
    pub result: &'static str,
}

impl InternalEvent for CacheLookedUp {
    fn emit(self) {
        metrics::counter!(names::CACHE_REQUESTS_TOTAL, "result" => self.result).increment(1);
    }
}

/// Redis answered one operation with an error (e.g. a key of the wrong type,
/// out of memory): that operation used memory instead, Redis stays in use.
pub struct CacheRedisRejected<'a> {
    pub operation: &'static str,
    pub error: &'a redis::RedisError,
}

impl InternalEvent for CacheRedisRejected<'_> {
    fn emit(self) {
        tracing::warn!(
            operation = self.operation,
            error = %self.error,
            "redis rejected a cache operation; served from memory"
        );
    }
}
