//! Key names, without the configured prefix (the [`Cache`](super::Cache)
//! adds it). Every key the cache group writes is built here.

/// A match summary ([`MatchSummary`](super::MatchSummary) as JSON).
pub fn match_key(match_id: i64) -> String {
    format!("match:{match_id}")
}

/// A player profile ([`schemas::PlayerProfile`] as JSON).
pub fn player_key(account_id: i64) -> String {
    format!("player:{account_id}")
}

/// The scout report of a player: derived from their matches, so it is
/// dropped when a newer match arrives and recomputed on the next read.
pub fn scout_player_key(account_id: i64) -> String {
    format!("scout:player:{account_id}")
}

/// Start time (unix seconds) of the newest match seen with this player: what
/// "newer" is measured against.
pub fn latest_match_key(account_id: i64) -> String {
    format!("player:{account_id}:latest_match")
}

/// Keys computed from a player's matches, all dropped when a newer match
/// arrives.
pub fn derived_player_keys(account_id: i64) -> Vec<String> {
    vec![scout_player_key(account_id)]
}
