//! Realistic events shared by the integration tests.
#![allow(dead_code)] // Each test binary uses a different subset.

use schemas::{
    Codec, DeadLetter, EnrichedPlayer, JobRequested, JobStatus, JobStatusChanged, JobType,
    MatchCompleted, MatchEnriched, PickBan, PlayerPerformance, PlayerProfile, Team,
};

/// Confluent ids the tests register; a real registry assigns its own.
pub const MATCH_COMPLETED_ID: u32 = 101;
pub const MATCH_COMPLETED_V1_ID: u32 = 100;
pub const PLAYER_PROFILE_ID: u32 = 102;
pub const JOB_REQUESTED_ID: u32 = 103;
pub const JOB_STATUS_CHANGED_ID: u32 = 104;
pub const MATCH_ENRICHED_ID: u32 = 105;
pub const DEAD_LETTER_ID: u32 = 106;

pub const ALL_IDS: [u32; 7] = [
    MATCH_COMPLETED_ID,
    MATCH_COMPLETED_V1_ID,
    PLAYER_PROFILE_ID,
    JOB_REQUESTED_ID,
    JOB_STATUS_CHANGED_ID,
    MATCH_ENRICHED_ID,
    DEAD_LETTER_ID,
];

/// The record name behind a test Confluent id, if the id is one of ours.
pub fn confluent_schema_name(schema_id: u32) -> Option<String> {
    let name = match schema_id {
        MATCH_COMPLETED_ID | MATCH_COMPLETED_V1_ID => "MatchCompleted",
        PLAYER_PROFILE_ID => "PlayerProfile",
        JOB_REQUESTED_ID => "JobRequested",
        JOB_STATUS_CHANGED_ID => "JobStatusChanged",
        MATCH_ENRICHED_ID => "MatchEnriched",
        DEAD_LETTER_ID => "DeadLetter",
        _ => return None,
    };
    Some(format!("scoutstream.{name}"))
}

/// The default codec plus a Confluent id for every schema.
pub fn codec_with_ids() -> Codec {
    use schemas::Event;
    let codec = Codec::default();
    let ids = [
        (MATCH_COMPLETED_ID, MatchCompleted::schema()),
        (MATCH_COMPLETED_V1_ID, schemas::avro::match_completed_v1()),
        (PLAYER_PROFILE_ID, PlayerProfile::schema()),
        (JOB_REQUESTED_ID, JobRequested::schema()),
        (JOB_STATUS_CHANGED_ID, JobStatusChanged::schema()),
        (MATCH_ENRICHED_ID, MatchEnriched::schema()),
        (DEAD_LETTER_ID, DeadLetter::schema()),
    ];
    for (id, schema) in ids {
        codec.register_confluent(id, schema.clone());
    }
    codec
}

/// A ranked all-pick pro-league match: 10 players, one anonymous, a draft.
pub fn match_completed() -> MatchCompleted {
    MatchCompleted {
        match_id: 7_912_345_678,
        match_seq_num: Some(6_634_120_991),
        start_time: 1_726_000_000,
        duration_secs: 2_537,
        radiant_win: true,
        game_mode: 2,
        lobby_type: 1,
        league_id: 16_935,
        cluster: 133,
        radiant_team: Some(Team {
            team_id: 8_255_888,
            name: Some("Team Falcons".into()),
        }),
        dire_team: Some(Team {
            team_id: 9_247_354,
            name: None,
        }),
        radiant_score: Some(31),
        dire_score: Some(18),
        picks_bans: draft(),
        players: (0..10).map(player).collect(),
        source: "steam_api".into(),
    }
}

/// Captains mode: alternating bans then picks, both teams.
fn draft() -> Vec<PickBan> {
    (0..24)
        .map(|order| PickBan {
            is_pick: order % 3 == 2,
            hero_id: 1 + order * 5,
            team: order % 2,
            order,
        })
        .collect()
}

// A stat new in the schema stays empty in the fixture.
#[allow(clippy::needless_update)]
fn player(index: i32) -> PlayerPerformance {
    let radiant = index < 5;
    let slot = if radiant { index } else { 128 + index - 5 };
    let anonymous = index == 7;
    PlayerPerformance {
        account_id: (!anonymous).then_some(86_745_912 + i64::from(index)),
        player_slot: slot,
        hero_id: 10 + index * 7,
        kills: 3 + index,
        deaths: 9 - index % 5,
        assists: 11 + index % 4,
        last_hits: 120 + index * 30,
        denies: index * 2,
        gold_per_min: 380 + index * 25,
        xp_per_min: 450 + index * 20,
        level: 18 + index % 8,
        hero_damage: Some(14_000 + i64::from(index) * 1_500),
        tower_damage: (index % 3 != 0).then_some(1_200 + i64::from(index) * 100),
        hero_healing: (index == 4).then_some(5_400),
        gold: Some(900 + i64::from(index) * 40),
        gold_spent: Some(17_000 + i64::from(index) * 800),
        net_worth: Some(18_000 + i64::from(index) * 900),
        leaver_status: Some(0),
        items: vec![1, 36, 0, 116, 63, 48 + index],
        backpack: if index % 2 == 0 {
            vec![216, 0, 41]
        } else {
            vec![]
        },
        persona_name: (!anonymous).then(|| format!("player-{index} ✓")),
        ..PlayerPerformance::default()
    }
}

pub fn player_profile() -> PlayerProfile {
    PlayerProfile {
        account_id: 86_745_912,
        persona_name: Some("Miracle-".into()),
        rank_tier: Some(80),
        leaderboard_rank: Some(12),
        country: Some("JO".into()),
        last_seen: Some(1_726_100_000),
        avatar_url: Some("https://avatars.example/abc_full.jpg".into()),
        profile_url: None,
        observed_at_ms: 1_726_100_123_456,
        source: "steam_summaries".into(),
    }
}

pub fn job_requested() -> JobRequested {
    JobRequested {
        job_id: "0f6d1d6e-6a0e-4d8e-9a51-3b1f1c1b2a77".into(),
        job_type: JobType::ScoutReportTeam,
        subject_id: 8_255_888,
        idempotency_key: Some("team:8255888:2024-09-11".into()),
        run_at_ms: None,
        requested_at_ms: 1_726_100_000_000,
        max_attempts: Some(5),
    }
}

pub fn job_status_changed() -> JobStatusChanged {
    JobStatusChanged {
        job_id: "0f6d1d6e-6a0e-4d8e-9a51-3b1f1c1b2a77".into(),
        job_type: JobType::RecomputeHeroPool,
        status: JobStatus::RetryScheduled,
        attempt: 2,
        at_ms: 1_726_100_005_000,
        error: Some("opendota: 429 Too Many Requests".into()),
        next_run_at_ms: Some(1_726_100_065_000),
    }
}

pub fn match_enriched() -> MatchEnriched {
    let source = match_completed();
    MatchEnriched {
        match_id: source.match_id,
        start_time: source.start_time,
        duration_secs: source.duration_secs,
        radiant_win: source.radiant_win,
        game_mode: source.game_mode,
        game_mode_name: Some("All Pick".into()),
        lobby_type: source.lobby_type,
        lobby_type_name: Some("Practice".into()),
        cluster: source.cluster,
        region: Some("EUROPE".into()),
        league_id: source.league_id,
        radiant_team: source.radiant_team.clone(),
        dire_team: source.dire_team.clone(),
        radiant_kills: 31,
        dire_kills: 18,
        players: source.players.iter().map(enriched_player).collect(),
        unknown_ids: vec!["item:9999".into()],
        enriched_at_ms: 1_726_100_200_000,
    }
}

fn enriched_player(player: &PlayerPerformance) -> EnrichedPlayer {
    let deaths = player.deaths.max(1);
    EnrichedPlayer {
        account_id: player.account_id,
        player_slot: player.player_slot,
        is_radiant: player.is_radiant(),
        won: player.is_radiant(),
        hero_id: player.hero_id,
        hero_name: (player.hero_id != 73).then(|| format!("npc_dota_hero_{}", player.hero_id)),
        primary_attr: Some("agi".into()),
        hero_roles: vec!["Carry".into(), "Escape".into()],
        kills: player.kills,
        deaths: player.deaths,
        assists: player.assists,
        gold_per_min: player.gold_per_min,
        xp_per_min: player.xp_per_min,
        kda: f64::from(player.kills + player.assists) / f64::from(deaths),
        kill_participation: 0.61,
        net_worth_share: player.net_worth.map(|n| n as f64 / 100_000.0),
        lane_role: "core".into(),
        item_names: vec!["blink".into(), "black_king_bar".into()],
    }
}

pub fn dead_letter() -> DeadLetter {
    DeadLetter {
        original: vec![0xC3, 0x01, 0xFF, 0x00, 0x7B, 0x22],
        key: Some(b"7912345678".to_vec()),
        topic: "matches.completed".into(),
        partition: Some(3),
        offset: Some(1_048_576),
        stream_id: None,
        consumer_group: "enricher".into(),
        error_kind: "unknown_fingerprint".into(),
        error_message: "unknown writer schema fingerprint 0x22007b00ff01c3".into(),
        first_seen_ms: 1_726_100_300_000,
        attempts: 1,
    }
}
