//! Topic names every producer and consumer agrees on, and the keys that keep
//! per-entity order (all events of one match, or one player, share a partition).

pub const MATCHES: &str = "matches";
pub const PLAYERS: &str = "players";
pub const MATCHES_ENRICHED: &str = "matches.enriched";
pub const JOBS: &str = "jobs";
pub const JOB_STATUS: &str = "jobs.status";
pub const DEAD_LETTERS: &str = "dead-letters";

pub fn match_key(match_id: i64) -> Vec<u8> {
    match_id.to_string().into_bytes()
}

pub fn player_key(account_id: i64) -> Vec<u8> {
    account_id.to_string().into_bytes()
}
