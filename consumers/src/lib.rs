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

pub mod enrich;
