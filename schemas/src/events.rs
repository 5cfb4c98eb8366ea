//! Typed events. Each struct mirrors one `.avsc` file under `schemas/avro/`
//! field for field: the `.avsc` file is the source of truth. The player
//! record, [`PlayerPerformance`], is generated from it (`build.rs`).
//!
//! Times are unix epoch values; the unit is in the field name or its doc.
//!
//! Every `Option` and `Vec` field carries `#[serde(default)]`: the `.avsc`
//! gives them defaults (`null`, `[]`), and JSON publishers outside this repo
//! may leave them out.

use serde::{Deserialize, Serialize};

/// Steam's marker for a player who hides their account: such players stay anonymous.
pub const ANONYMOUS_ACCOUNT_ID: i64 = 4_294_967_295;

/// A finished match with its players, as a scout needs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchCompleted {
    pub match_id: i64,
    #[serde(default)]
    pub match_seq_num: Option<i64>,
    /// Unix seconds.
    pub start_time: i64,
    pub duration_secs: i32,
    pub radiant_win: bool,
    /// Numeric game mode (dotaconstants `game_mode.json` id).
    pub game_mode: i32,
    /// Numeric lobby type (dotaconstants `lobby_type.json` id).
    pub lobby_type: i32,
    /// 0 when the match is not part of a league.
    pub league_id: i64,
    /// Server cluster; the region is derived from it (dotaconstants `cluster.json`).
    pub cluster: i32,
    #[serde(default)]
    pub radiant_team: Option<Team>,
    #[serde(default)]
    pub dire_team: Option<Team>,
    #[serde(default)]
    pub radiant_score: Option<i32>,
    #[serde(default)]
    pub dire_score: Option<i32>,
    #[serde(default)]
    pub picks_bans: Vec<PickBan>,
    #[serde(default)]
    pub players: Vec<PlayerPerformance>,
    /// Where the record came from: `steam_api`, `game_coordinator` or `json`.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub team_id: i64,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PickBan {
    pub is_pick: bool,
    pub hero_id: i32,
    /// 0 radiant, 1 dire.
    pub team: i32,
    pub order: i32,
}

// `PlayerPerformance` and `with_player_numbers!`, generated from the `.avsc`
// by `build.rs`: a new player stat is one field in `MatchCompleted.avsc`.
include!(concat!(env!("OUT_DIR"), "/player_performance.rs"));

impl PlayerPerformance {
    pub fn is_radiant(&self) -> bool {
        self.player_slot < 128
    }
}

/// Scout data about one player.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlayerProfile {
    pub account_id: i64,
    #[serde(default)]
    pub persona_name: Option<String>,
    #[serde(default)]
    pub rank_tier: Option<i32>,
    #[serde(default)]
    pub leaderboard_rank: Option<i32>,
    /// ISO 3166 country code.
    #[serde(default)]
    pub country: Option<String>,
    /// Unix seconds the player was last seen online.
    #[serde(default)]
    pub last_seen: Option<i64>,
    #[serde(default)]
    pub avatar_url: Option<String>,
    #[serde(default)]
    pub profile_url: Option<String>,
    /// Unix milliseconds when this record was observed; newer wins.
    pub observed_at_ms: i64,
    /// `steam_summaries`, `rank`, `opendota` or `json`.
    pub source: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobType {
    ScoutReportPlayer,
    ScoutReportTeam,
    RefreshPlayer,
    RecomputeHeroPool,
    /// Fetch a match (an OpenDota parse request) and publish it on `matches`.
    ParseMatch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    RetryScheduled,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRequested {
    pub job_id: String,
    pub job_type: JobType,
    /// Account id or team id, by job type.
    pub subject_id: i64,
    /// Requests with the same key while one is queued or running run once.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Unix milliseconds; run at or after this time.
    #[serde(default)]
    pub run_at_ms: Option<i64>,
    pub requested_at_ms: i64,
    #[serde(default)]
    pub max_attempts: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobStatusChanged {
    pub job_id: String,
    pub job_type: JobType,
    pub status: JobStatus,
    pub attempt: i32,
    pub at_ms: i64,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub next_run_at_ms: Option<i64>,
}

/// A match joined with reference data and derived stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchEnriched {
    pub match_id: i64,
    pub start_time: i64,
    pub duration_secs: i32,
    pub radiant_win: bool,
    pub game_mode: i32,
    #[serde(default)]
    pub game_mode_name: Option<String>,
    pub lobby_type: i32,
    #[serde(default)]
    pub lobby_type_name: Option<String>,
    pub cluster: i32,
    #[serde(default)]
    pub region: Option<String>,
    pub league_id: i64,
    #[serde(default)]
    pub radiant_team: Option<Team>,
    #[serde(default)]
    pub dire_team: Option<Team>,
    pub radiant_kills: i32,
    pub dire_kills: i32,
    #[serde(default)]
    pub players: Vec<EnrichedPlayer>,
    /// Ids the reference data did not know, as `hero:150`, `item:9999`.
    #[serde(default)]
    pub unknown_ids: Vec<String>,
    pub enriched_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedPlayer {
    #[serde(default)]
    pub account_id: Option<i64>,
    pub player_slot: i32,
    pub is_radiant: bool,
    pub won: bool,
    pub hero_id: i32,
    #[serde(default)]
    pub hero_name: Option<String>,
    #[serde(default)]
    pub primary_attr: Option<String>,
    #[serde(default)]
    pub hero_roles: Vec<String>,
    pub kills: i32,
    pub deaths: i32,
    pub assists: i32,
    pub gold_per_min: i32,
    pub xp_per_min: i32,
    /// (kills + assists) / max(deaths, 1).
    pub kda: f64,
    /// (kills + assists) / team kills; 0 when the team has no kills.
    pub kill_participation: f64,
    #[serde(default)]
    pub net_worth_share: Option<f64>,
    /// `core`, `offlane`, `support` or `unknown`: an estimate from farm.
    pub lane_role: String,
    #[serde(default)]
    pub item_names: Vec<String>,
}

/// An event the pipeline could not handle, with why and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The bytes exactly as they were read.
    #[serde(with = "apache_avro::serde_avro_bytes")]
    pub original: Vec<u8>,
    #[serde(default, with = "apache_avro::serde_avro_bytes_opt")]
    pub key: Option<Vec<u8>>,
    pub topic: String,
    #[serde(default)]
    pub partition: Option<i32>,
    #[serde(default)]
    pub offset: Option<i64>,
    /// Redis Streams entry id, when the source was a stream.
    #[serde(default)]
    pub stream_id: Option<String>,
    pub consumer_group: String,
    /// Short machine-readable kind, e.g. `decode`, `handler`, `retries_exhausted`.
    pub error_kind: String,
    pub error_message: String,
    pub first_seen_ms: i64,
    pub attempts: i32,
}
