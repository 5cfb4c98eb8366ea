//! The cache consumer group: reads `matches` and `players` and keeps a
//! Redis view a scout can read fast, with an in-process fallback so a Redis
//! outage never stops the pipeline.
//!
//! - [`Cache`]: the layer, Redis first and memory second (see its docs for
//!   what an outage leaves stale).
//! - [`CacheHandler`]: the [`pipeline::runner::Handler`] of the group; it
//!   sends a batch's writes as one [`CacheWrite`] list, one Redis round trip.
//! - [`keys`]: every key name; [`MatchSummary`]: the cached match JSON.
//! - [`CacheConfig`]: TTLs, fallback bounds and Redis timeouts.
//! - [`events`]: what the layer logs.
//!
//! Keys (after the configured prefix, `scoutstream:` by default):
//!
//! | key | value | TTL |
//! |:--- |:--- |:--- |
//! | `match:{id}` | [`MatchSummary`] JSON | `match_ttl` |
//! | `player:{account_id}` | [`schemas::PlayerProfile`] JSON, newest `observed_at_ms` wins | `player_ttl` |
//! | `player:{account_id}:latest_match` | start time of their newest match seen | `match_ttl` |
//! | `scout:player:{account_id}` | scout report (written elsewhere), dropped on a newer match | `scout_ttl` |

mod config;
pub mod events;
mod fallback;
mod handler;
pub mod keys;
mod layer;
mod memory;
mod newer;
mod redis_store;
mod summary;
mod write;

pub use config::{CacheConfig, DEFAULT_REDIS_URL};
pub use handler::{CacheHandler, CacheHandlerError};
pub use layer::{Cache, CacheCounters, CounterSnapshot, Layer, Written};
pub use newer::{NewerWrite, VersionAt};
pub use summary::{MatchSummary, PlayerSummary};
pub use write::CacheWrite;

/// Why the cache could not be built. Once built, it does not fail: Redis
/// errors send it to its fallback.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache config field `{field}`: {problem}")]
    InvalidConfig {
        field: &'static str,
        problem: String,
    },
    #[error("invalid redis url: {source}")]
    InvalidUrl {
        #[source]
        source: redis::RedisError,
    },
}
