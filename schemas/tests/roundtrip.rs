//! Every event survives every encoding unchanged.
#![allow(clippy::unwrap_used)]

mod common;

use std::fmt::Debug;

use proptest::prelude::*;
use schemas::{
    Codec, Encoding, Event, Format, JobStatus, JobStatusChanged, JobType, PlayerProfile,
};

fn encodings(schema_id: u32) -> [Encoding; 3] {
    [
        Encoding::SingleObject,
        Encoding::Confluent { schema_id },
        Encoding::Json,
    ]
}

/// Encodes with one codec and decodes with another, as producer and
/// consumer would, then checks the value and the framing. Each Avro body is
/// decoded both ways: straight into the struct (the codec's direct path, for
/// events written with their own schema) and through apache-avro's
/// resolution.
fn assert_round_trips<E: Event + PartialEq + Debug>(event: &E, schema_id: u32) {
    let producer = common::codec_with_ids();
    let consumer = common::codec_with_ids();
    for encoding in encodings(schema_id) {
        let bytes = producer.encode(event, encoding).unwrap();
        let decoded: E = consumer.decode(&bytes).unwrap();
        assert_eq!(&decoded, event, "{} via {encoding:?}", E::NAME);
        let resolved: E = consumer
            .decode_with_reader_schema(&bytes, E::schema())
            .unwrap();
        assert_eq!(&resolved, event, "{} resolved via {encoding:?}", E::NAME);
        assert_eq!(
            Codec::describe(&bytes).unwrap(),
            expected_format::<E>(encoding)
        );
    }
}

fn expected_format<E: Event>(encoding: Encoding) -> Format {
    match encoding {
        Encoding::SingleObject => Format::SingleObject {
            fingerprint: E::fingerprint(),
        },
        Encoding::Confluent { schema_id } => Format::Confluent { schema_id },
        Encoding::Registered => panic!("round trips name their ids"),
        Encoding::Json => Format::Json,
    }
}

/// `Registered` writes each record with the id set for its name; a consumer
/// whose clone learned the id later decodes it.
#[test]
fn registered_ids_are_written_per_record_and_shared_by_clones() {
    let producer = Codec::default();
    let event = common::match_completed();
    assert_eq!(
        producer.encode(&event, Encoding::Registered),
        Err(schemas::CodecError::NotRegistered(
            "scoutstream.MatchCompleted"
        ))
    );
    producer.write_with_schema_id(41, schemas::MatchCompleted::schema().clone());
    producer.write_with_schema_id(42, PlayerProfile::schema().clone());
    let bytes = producer.encode(&event, Encoding::Registered).unwrap();
    assert_eq!(
        Codec::describe(&bytes).unwrap(),
        Format::Confluent { schema_id: 41 }
    );

    let consumer = Codec::default();
    let handler_clone = consumer.clone();
    assert!(handler_clone
        .decode::<schemas::MatchCompleted>(&bytes)
        .is_err());
    consumer.register_confluent(41, schemas::MatchCompleted::schema().clone());
    assert!(handler_clone.knows_schema_id(41));
    assert_eq!(
        handler_clone
            .decode::<schemas::MatchCompleted>(&bytes)
            .unwrap(),
        event
    );
}

#[test]
fn match_completed_round_trips() {
    let event = common::match_completed();
    assert_eq!(event.players.len(), 10);
    assert!(event.players.iter().any(|p| p.account_id.is_none()));
    assert_round_trips(&event, common::MATCH_COMPLETED_ID);
}

#[test]
fn player_profile_round_trips() {
    assert_round_trips(&common::player_profile(), common::PLAYER_PROFILE_ID);
}

#[test]
fn job_requested_round_trips() {
    assert_round_trips(&common::job_requested(), common::JOB_REQUESTED_ID);
}

#[test]
fn job_status_changed_round_trips() {
    assert_round_trips(&common::job_status_changed(), common::JOB_STATUS_CHANGED_ID);
}

#[test]
fn match_enriched_round_trips() {
    assert_round_trips(&common::match_enriched(), common::MATCH_ENRICHED_ID);
}

#[test]
fn dead_letter_round_trips() {
    assert_round_trips(&common::dead_letter(), common::DEAD_LETTER_ID);
}

#[test]
fn single_object_header_is_magic_then_little_endian_fingerprint() {
    let bytes = Codec::default()
        .encode(&common::player_profile(), Encoding::SingleObject)
        .unwrap();
    assert_eq!(bytes[..2], [0xC3, 0x01]);
    assert_eq!(bytes[2..10], PlayerProfile::fingerprint().to_le_bytes());
}

#[test]
fn confluent_header_is_zero_then_big_endian_id() {
    let bytes = common::codec_with_ids()
        .encode(
            &common::player_profile(),
            Encoding::Confluent {
                schema_id: common::PLAYER_PROFILE_ID,
            },
        )
        .unwrap();
    assert_eq!(bytes[..5], [0, 0, 0, 0, common::PLAYER_PROFILE_ID as u8]);
}

#[test]
fn avro_is_smaller_than_json() {
    let codec = common::codec_with_ids();
    let event = common::match_completed();
    let avro = codec.encode(&event, Encoding::SingleObject).unwrap();
    let json = codec.encode(&event, Encoding::Json).unwrap();
    assert!(
        avro.len() * 3 < json.len(),
        "{} vs {}",
        avro.len(),
        json.len()
    );
}

fn job_type() -> impl Strategy<Value = JobType> {
    prop_oneof![
        Just(JobType::ScoutReportPlayer),
        Just(JobType::ScoutReportTeam),
        Just(JobType::RefreshPlayer),
        Just(JobType::RecomputeHeroPool),
    ]
}

fn job_status() -> impl Strategy<Value = JobStatus> {
    prop_oneof![
        Just(JobStatus::Queued),
        Just(JobStatus::Running),
        Just(JobStatus::Succeeded),
        Just(JobStatus::RetryScheduled),
        Just(JobStatus::Dead),
    ]
}

prop_compose! {
    fn player_profile()(
        account_id in any::<i64>(),
        persona_name in proptest::option::of(any::<String>()),
        rank_tier in proptest::option::of(any::<i32>()),
        leaderboard_rank in proptest::option::of(any::<i32>()),
        country in proptest::option::of("[A-Z]{2}"),
        last_seen in proptest::option::of(any::<i64>()),
        avatar_url in proptest::option::of(any::<String>()),
        profile_url in proptest::option::of(any::<String>()),
        observed_at_ms in any::<i64>(),
        source in any::<String>(),
    ) -> PlayerProfile {
        PlayerProfile {
            account_id, persona_name, rank_tier, leaderboard_rank, country, last_seen,
            avatar_url, profile_url, observed_at_ms, source,
        }
    }
}

prop_compose! {
    fn job_status_changed()(
        job_id in any::<String>(),
        job_type in job_type(),
        status in job_status(),
        attempt in any::<i32>(),
        at_ms in any::<i64>(),
        error in proptest::option::of(any::<String>()),
        next_run_at_ms in proptest::option::of(any::<i64>()),
    ) -> JobStatusChanged {
        JobStatusChanged { job_id, job_type, status, attempt, at_ms, error, next_run_at_ms }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_player_profile_round_trips(event in player_profile()) {
        let codec = common::codec_with_ids();
        for encoding in encodings(common::PLAYER_PROFILE_ID) {
            let bytes = codec.encode(&event, encoding).unwrap();
            prop_assert_eq!(codec.decode::<PlayerProfile>(&bytes).unwrap(), event.clone());
        }
    }

    #[test]
    fn any_job_status_change_round_trips(event in job_status_changed()) {
        let codec = common::codec_with_ids();
        for encoding in encodings(common::JOB_STATUS_CHANGED_ID) {
            let bytes = codec.encode(&event, encoding).unwrap();
            prop_assert_eq!(codec.decode::<JobStatusChanged>(&bytes).unwrap(), event.clone());
        }
    }
}
