//! The JSON cached at `match:{id}`: what a scout reads about a match at a
//! glance, without the full event.

use schemas::{MatchCompleted, PlayerPerformance, Team};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchSummary {
    pub match_id: i64,
    /// Unix seconds.
    pub start_time: i64,
    pub duration_secs: i32,
    pub radiant_win: bool,
    pub game_mode: i32,
    pub radiant_team: Option<Team>,
    pub dire_team: Option<Team>,
    pub players: Vec<PlayerSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerSummary {
    /// `None` for anonymous players.
    pub account_id: Option<i64>,
    pub player_slot: i32,
    pub hero_id: i32,
    pub kills: i32,
    pub deaths: i32,
    pub assists: i32,
    pub gold_per_min: i32,
    pub xp_per_min: i32,
}

impl From<&MatchCompleted> for MatchSummary {
    fn from(m: &MatchCompleted) -> Self {
        Self {
            match_id: m.match_id,
            start_time: m.start_time,
            duration_secs: m.duration_secs,
            radiant_win: m.radiant_win,
            game_mode: m.game_mode,
            radiant_team: m.radiant_team.clone(),
            dire_team: m.dire_team.clone(),
            players: m.players.iter().map(PlayerSummary::from).collect(),
        }
    }
}

impl From<&PlayerPerformance> for PlayerSummary {
    fn from(p: &PlayerPerformance) -> Self {
        Self {
            account_id: p.account_id,
            player_slot: p.player_slot,
            hero_id: p.hero_id,
            kills: p.kills,
            deaths: p.deaths,
            assists: p.assists,
            gold_per_min: p.gold_per_min,
            xp_per_min: p.xp_per_min,
        }
    }
}
