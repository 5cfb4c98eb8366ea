//! Consumer groups of scoutstream, one folder per group, each a
//! [`pipeline::runner::Handler`] the runner drives.
//!
//! Module map:
//!
//! - [`enrich`]: `matches` → `matches.enriched`. Decodes
//!   [`schemas::MatchCompleted`], joins it with [`schemas::reference`] data
//!   (hero, item, game mode, lobby type and region names) and derived stats
//!   (team kills, KDA, kill participation, net-worth share, lane role) into
//!   [`schemas::MatchEnriched`]. The pure part is [`enrich::stats`]; its log
//!   lines are [`enrich::events`].
//! - [`cache`]: `matches` and `players` → Redis. Caches match summaries and
//!   player profiles (newest `observed_at_ms` wins) and drops a player's
//!   derived keys (the scout report) when a newer match arrives; falls back
//!   to a bounded in-process cache while Redis is away.
//! - [`persist`]: `matches` and `players` → PostgreSQL or SQLite. Batched,
//!   idempotent upserts (one transaction per runner batch), exactly once per
//!   group (its positions are written in the same transaction), source-ranked
//!   merge of one match from several sources, newest-profile-wins players,
//!   hero pools moved by deltas; serves the scout read model ([`persist::scout`]).
//! - [`jobs`]: `jobs` → background jobs (scout reports, profile refreshes
//!   from OpenDota, hero-pool recomputes) with retries, dead letters,
//!   idempotency keys, status in the database mirrored to Redis and
//!   published to `jobs.status`, Redis-shared rate limits, and an HTTP API.
//! - [`scout`]: the scout read model as users meet it: reports from the cache
//!   while fresh, from the database otherwise.

pub mod cache;
pub mod enrich;
pub mod jobs;
pub mod persist;
pub mod scout;
