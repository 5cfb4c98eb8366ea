//! MatchCompleted v1 and the current schema read each other's data.
#![allow(clippy::unwrap_used)]

mod common;

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use schemas::{avro, Codec, Encoding, Event, JobRequested, JobType, MatchCompleted, Team};
use serde::{Deserialize, Serialize};

/// MatchCompleted as a producer or consumer still on v1 has it. Unknown
/// fields are an error, so a field the v1 reader should drop cannot sneak in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchCompletedV1 {
    match_id: i64,
    match_seq_num: Option<i64>,
    start_time: i64,
    duration_secs: i32,
    radiant_win: bool,
    game_mode: i32,
    lobby_type: i32,
    league_id: i64,
    cluster: i32,
    radiant_team: Option<Team>,
    dire_team: Option<Team>,
    players: Vec<PlayerV1>,
    source: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayerV1 {
    account_id: Option<i64>,
    player_slot: i32,
    hero_id: i32,
    kills: i32,
    deaths: i32,
    assists: i32,
    last_hits: i32,
    denies: i32,
    gold_per_min: i32,
    xp_per_min: i32,
    level: i32,
    hero_damage: Option<i64>,
    tower_damage: Option<i64>,
    hero_healing: Option<i64>,
    gold: Option<i64>,
    gold_spent: Option<i64>,
    leaver_status: Option<i32>,
    items: Vec<i32>,
    persona_name: Option<String>,
}

impl Event for MatchCompletedV1 {
    const NAME: &'static str = MatchCompleted::NAME;

    fn schema() -> &'static Schema {
        avro::match_completed_v1()
    }
}

/// The names of a record's fields in an `.avsc`.
fn field_names(record: &serde_json::Value) -> Vec<String> {
    record["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field["name"].as_str().unwrap().to_string())
        .collect()
}

/// `current` as JSON with only the fields v1's schema has: every field added
/// since, whatever it is, is left out.
fn v1_json(current: &MatchCompleted) -> serde_json::Value {
    let v1: serde_json::Value = serde_json::from_str(avro::MATCH_COMPLETED_V1_AVSC).unwrap();
    let match_fields = field_names(&v1);
    let players = v1["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|field| field["name"] == "players")
        .unwrap();
    let player_fields = field_names(&players["type"]["items"]);
    let mut json = serde_json::to_value(current).unwrap();
    let event = json.as_object_mut().unwrap();
    event.retain(|name, _| match_fields.contains(name));
    for player in event["players"].as_array_mut().unwrap() {
        let player = player.as_object_mut().unwrap();
        player.retain(|name, _| player_fields.contains(name));
    }
    json
}

/// What a v1 producer would have sent for the same match.
fn v1_of(current: &MatchCompleted) -> MatchCompletedV1 {
    serde_json::from_value(v1_json(current)).unwrap()
}

/// The current value with everything v1 cannot carry reset to its default.
fn without_new_fields(event: MatchCompleted) -> MatchCompleted {
    serde_json::from_value(v1_json(&event)).unwrap()
}

fn current_with_new_fields() -> MatchCompleted {
    let event = common::match_completed();
    // Otherwise "the new fields were dropped" could pass vacuously.
    assert!(!event.picks_bans.is_empty() && event.radiant_score.is_some());
    assert!(event.players.iter().any(|p| !p.backpack.is_empty()));
    assert!(event.players.iter().all(|p| p.net_worth.is_some()));
    event
}

#[test]
fn schemas_are_mutually_compatible() {
    let current = MatchCompleted::schema();
    let v1 = avro::match_completed_v1();
    SchemaCompatibility::can_read(v1, current).unwrap();
    SchemaCompatibility::can_read(current, v1).unwrap();
    assert_ne!(avro::fingerprint(v1), MatchCompleted::fingerprint());
}

#[test]
fn v1_single_object_reads_as_current_with_defaults() {
    let current = current_with_new_fields();
    let old = v1_of(&current);
    let bytes = Codec::default()
        .encode(&old, Encoding::SingleObject)
        .unwrap();
    assert_eq!(
        bytes[2..10],
        avro::fingerprint(avro::match_completed_v1()).to_le_bytes()
    );

    let decoded: MatchCompleted = Codec::default().decode(&bytes).unwrap();
    assert_eq!(decoded, without_new_fields(current));
    assert!(decoded.picks_bans.is_empty() && decoded.dire_score.is_none());
}

#[test]
fn v1_confluent_reads_as_current_with_defaults() {
    let current = current_with_new_fields();
    let codec = common::codec_with_ids();
    // Encoding through the v1 id writes with the v1 schema.
    let schema_id = common::MATCH_COMPLETED_V1_ID;
    let bytes = codec
        .encode(&current, Encoding::Confluent { schema_id })
        .unwrap();
    let current_bytes = codec
        .encode(
            &current,
            Encoding::Confluent {
                schema_id: common::MATCH_COMPLETED_ID,
            },
        )
        .unwrap();
    assert!(bytes.len() < current_bytes.len());

    let decoded: MatchCompleted = codec.decode(&bytes).unwrap();
    assert_eq!(decoded, without_new_fields(current));
}

#[test]
fn current_data_reads_through_v1_dropping_new_fields() {
    let current = current_with_new_fields();
    let codec = common::codec_with_ids();
    let encodings = [
        Encoding::SingleObject,
        Encoding::Confluent {
            schema_id: common::MATCH_COMPLETED_ID,
        },
    ];
    for encoding in encodings {
        let bytes = codec.encode(&current, encoding).unwrap();
        // A v1 consumer's own type: would fail on any field v1 lacks.
        let old: MatchCompletedV1 = codec.decode(&bytes).unwrap();
        assert_eq!(old, v1_of(&current), "{encoding:?}");
        // The current type read through the v1 schema: new fields default.
        let v1 = avro::match_completed_v1();
        let through_v1: MatchCompleted = codec.decode_with_reader_schema(&bytes, v1).unwrap();
        assert_eq!(
            through_v1,
            without_new_fields(current.clone()),
            "{encoding:?}"
        );
    }
}

#[test]
fn v1_type_rejects_fields_it_does_not_know() {
    // Proves `deny_unknown_fields` bites, so the test above is meaningful.
    let codec = Codec::default();
    let bytes = codec
        .encode(&current_with_new_fields(), Encoding::SingleObject)
        .unwrap();
    let current = MatchCompleted::schema();
    let err = codec
        .decode_with_reader_schema::<MatchCompletedV1>(&bytes, current)
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_avro", "{err}");
}

/// A `JobRequested` as a producer still on v1 (before `ParseMatch`) writes it:
/// the same fields, written with the v1 schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct JobRequestedV1(JobRequested);

impl Event for JobRequestedV1 {
    const NAME: &'static str = JobRequested::NAME;

    fn schema() -> &'static Schema {
        avro::job_requested_v1()
    }
}

#[test]
fn job_requests_of_v1_producers_still_read() {
    let current = JobRequested::schema();
    let v1 = avro::job_requested_v1();
    // Current readers read v1 data; v1 readers read current data unless it
    // names the new job type (Avro enums have no default here).
    SchemaCompatibility::can_read(v1, current).unwrap();
    assert_ne!(avro::fingerprint(v1), JobRequested::fingerprint());
    let request = JobRequested {
        job_id: "j-1".into(),
        job_type: JobType::RefreshPlayer,
        subject_id: 86_745_912,
        idempotency_key: Some("refresh:86745912".into()),
        run_at_ms: None,
        requested_at_ms: 1_700_000_000_000,
        max_attempts: Some(4),
    };
    let bytes = Codec::default()
        .encode(&JobRequestedV1(request.clone()), Encoding::SingleObject)
        .unwrap();
    assert_eq!(bytes[2..10], avro::fingerprint(v1).to_le_bytes());
    let decoded: JobRequested = Codec::default().decode(&bytes).unwrap();
    assert_eq!(decoded, request);
}
