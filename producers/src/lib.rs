//! Producers: turn real Dota 2 records into events and publish them.
//!
//! Module map:
//!
//! - [`ingest`]: parses Steam Web API matches and player summaries, game coordinator
//!   matches and rank records (JSON documents or JSON lines) into
//!   [`schemas::MatchCompleted`] and [`schemas::PlayerProfile`]; reports skipped files.
//! - [`loadgen`]: deterministic synthetic matches for load tests and demos.
//! - [`publish`]: the publishing API: encodes typed events and publishes them,
//!   keyed by match or account id, on their topics.
//!
//! Reference data (heroes, items, game modes, regions, patches) lives in
//! [`schemas::reference`].

pub mod ingest;
pub mod loadgen;
pub mod publish;
