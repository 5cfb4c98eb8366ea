//! Producers: turn real Dota 2 records into events and publish them.
//!
//! Module map:
//!
//! - [`ingest`]: parses Steam Web API matches and player summaries, game coordinator
//!   matches and rank records (JSON documents or JSON lines) into
//!   [`schemas::MatchCompleted`] and [`schemas::PlayerProfile`]; reports skipped files.
//! - [`loadgen`]: deterministic synthetic matches for load tests and demos.
//!
//! Reference data (heroes, items, game modes, regions, patches) lives in
//! [`schemas::reference`].

pub mod ingest;
pub mod loadgen;
