//! What a Redis Streams bus is configured with: plain data, compiled without the
//! backend so `[bus.redis]` parses (and names its fields) in every build.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RedisStreamsConfig {
    pub url: String,
    /// Prefix of every key this backend writes.
    pub key_prefix: String,
    /// Partitions of a topic created implicitly by a publish or subscribe.
    pub default_partitions: u32,
    /// Approximate cap on entries per stream (XADD MAXLEN ~): the retention policy.
    pub max_len: usize,
    /// A member silent for this long is dead and its partitions move on.
    pub session_timeout: Duration,
    /// A partition's lease lasts this long unless its holder renews it: a dead
    /// member's partitions, with what it left pending, move on after this.
    pub claim_idle: Duration,
    /// Trust and client certificate of a `rediss://` URL.
    pub tls: crate::redis_tls::RedisTls,
}

impl Default for RedisStreamsConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            key_prefix: "scoutstream:".into(),
            default_partitions: 4,
            max_len: 1_000_000,
            session_timeout: Duration::from_secs(10),
            claim_idle: Duration::from_secs(30),
            tls: crate::redis_tls::RedisTls::default(),
        }
    }
}
