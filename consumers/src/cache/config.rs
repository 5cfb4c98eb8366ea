//! Settings of the cache layer. Durations are whole seconds, or milliseconds
//! where sub-second values matter (the Redis timeout and retry interval).

use std::time::Duration;

use serde::Deserialize;

use super::CacheError;

/// The Redis the cache talks to unless configured otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    pub redis_url: String,
    /// Put before every key, so deployments (and tests) can share one Redis.
    pub key_prefix: String,
    /// Lifetime of `match:{id}` and of the `player:{id}:latest_match` markers.
    pub match_ttl_secs: u64,
    /// Lifetime of `player:{id}` profiles.
    pub player_ttl_secs: u64,
    /// Lifetime of derived scout reports (`scout:player:{id}`), for their writer.
    pub scout_ttl_secs: u64,
    /// Entries the in-process fallback holds at most.
    pub fallback_max_entries: u64,
    /// Longest an entry lives in the fallback, whatever its TTL: memory is read
    /// after Redis even once Redis is back, so this bounds how long an entry
    /// written during an outage can still be served.
    pub fallback_ttl_cap_secs: u64,
    /// How often Redis is tried again while the cache is on its fallback.
    pub redis_retry_interval_ms: u64,
    /// Longest one Redis operation (connecting included) may take before the
    /// cache gives up on it, so a dead or hung Redis cannot stall the pipeline.
    pub redis_timeout_ms: u64,
    /// From the process-wide `[redis_tls]` section, not from `[cache]`.
    #[serde(skip)]
    pub redis_tls: pipeline::redis_tls::RedisTls,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            redis_url: DEFAULT_REDIS_URL.to_string(),
            // Apart from the Redis Streams bus, which uses `scoutstream:` itself.
            key_prefix: "scoutstream:cache:".to_string(),
            match_ttl_secs: 24 * 60 * 60,
            player_ttl_secs: 60 * 60,
            scout_ttl_secs: 10 * 60,
            fallback_max_entries: 100_000,
            fallback_ttl_cap_secs: 10 * 60,
            redis_retry_interval_ms: 5_000,
            redis_timeout_ms: 500,
            redis_tls: pipeline::redis_tls::RedisTls::default(),
        }
    }
}

impl CacheConfig {
    pub fn match_ttl(&self) -> Duration {
        Duration::from_secs(self.match_ttl_secs)
    }

    pub fn player_ttl(&self) -> Duration {
        Duration::from_secs(self.player_ttl_secs)
    }

    pub fn scout_ttl(&self) -> Duration {
        Duration::from_secs(self.scout_ttl_secs)
    }

    pub fn fallback_ttl_cap(&self) -> Duration {
        Duration::from_secs(self.fallback_ttl_cap_secs)
    }

    pub fn redis_retry_interval(&self) -> Duration {
        Duration::from_millis(self.redis_retry_interval_ms)
    }

    pub fn redis_timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms)
    }

    /// Zero would mean "expire at once" (Redis rejects it), "hold nothing" or
    /// "never wait": all settings must be positive.
    pub fn validate(&self) -> Result<(), CacheError> {
        let positive = [
            ("match_ttl_secs", self.match_ttl_secs),
            ("player_ttl_secs", self.player_ttl_secs),
            ("scout_ttl_secs", self.scout_ttl_secs),
            ("fallback_max_entries", self.fallback_max_entries),
            ("fallback_ttl_cap_secs", self.fallback_ttl_cap_secs),
            ("redis_retry_interval_ms", self.redis_retry_interval_ms),
            ("redis_timeout_ms", self.redis_timeout_ms),
        ];
        match positive.iter().find(|(_, value)| *value == 0) {
            Some((field, _)) => Err(CacheError::InvalidConfig {
                field,
                problem: "must be greater than 0".to_string(),
            }),
            None => Ok(()),
        }
    }
}
