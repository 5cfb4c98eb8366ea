//! No input makes decoding panic; every failure is a typed, consistent error.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::LazyLock;

use proptest::prelude::*;
use schemas::{
    avro, Codec, CodecError, DeadLetter, Encoding, Event, Format, JobRequested, JobStatusChanged,
    MatchCompleted, MatchEnriched, PlayerProfile,
};

/// Decodes `bytes` as `E` and checks the outcome agrees with the framing.
fn check<E: Event>(codec: &Codec, bytes: &[u8]) -> Result<(), TestCaseError> {
    let result = codec.decode::<E>(bytes);
    let Err(err) = result else { return Ok(()) };
    prop_assert!(!err.is_retriable());
    match Codec::describe(bytes) {
        Err(framing) => prop_assert_eq!(err, framing),
        Ok(Format::Json) => {
            prop_assert!(
                matches!(err.kind(), "invalid_json" | "missing_field"),
                "{err}"
            );
        }
        Ok(Format::SingleObject { fingerprint }) => {
            let writer = avro_writer(fingerprint);
            check_avro_error::<E>(&err, writer, CodecError::UnknownFingerprint(fingerprint))?;
        }
        Ok(Format::Confluent { schema_id }) => {
            let writer = common::confluent_schema_name(schema_id);
            check_avro_error::<E>(&err, writer, CodecError::UnknownSchemaId(schema_id))?;
        }
    }
    Ok(())
}

/// With the writer unknown, the error must say so; with another record as
/// writer, it must be `WrongType`; otherwise the body itself is bad.
fn check_avro_error<E: Event>(
    err: &CodecError,
    writer: Option<String>,
    unknown: CodecError,
) -> Result<(), TestCaseError> {
    match writer {
        None => prop_assert_eq!(err, &unknown),
        Some(name) if name != E::NAME => {
            let wrong = CodecError::WrongType {
                expected: E::NAME,
                found: name,
            };
            prop_assert_eq!(err, &wrong);
        }
        Some(_) => prop_assert!(
            matches!(
                err.kind(),
                "invalid_avro" | "trailing_bytes" | "missing_field"
            ),
            "{err}"
        ),
    }
    Ok(())
}

fn avro_writer(fingerprint: u64) -> Option<String> {
    avro::current_schemas()
        .into_iter()
        .chain(avro::historic_schemas())
        .find(|schema| avro::fingerprint(schema) == fingerprint)
        .map(avro::full_name)
}

static CODEC: LazyLock<Codec> = LazyLock::new(common::codec_with_ids);

fn check_all(bytes: &[u8]) -> Result<(), TestCaseError> {
    let codec = &*CODEC;
    check::<MatchCompleted>(codec, bytes)?;
    check::<PlayerProfile>(codec, bytes)?;
    check::<JobRequested>(codec, bytes)?;
    check::<JobStatusChanged>(codec, bytes)?;
    check::<MatchEnriched>(codec, bytes)?;
    check::<DeadLetter>(codec, bytes)
}

/// A header every codec in these tests knows, in front of any body.
fn known_header() -> impl Strategy<Value = Vec<u8>> {
    let fingerprints: Vec<u64> = avro::current_schemas()
        .into_iter()
        .chain(avro::historic_schemas())
        .map(avro::fingerprint)
        .collect();
    let single = proptest::sample::select(fingerprints).prop_map(|fingerprint| {
        let mut header = vec![0xC3, 0x01];
        header.extend(fingerprint.to_le_bytes());
        header
    });
    let confluent = proptest::sample::select(common::ALL_IDS.to_vec()).prop_map(|id| {
        let mut header = vec![0x00];
        header.extend(id.to_be_bytes());
        header
    });
    prop_oneof![single, confluent]
}

/// Real encodings of every fixture, to mutate.
fn valid_payloads() -> Vec<Vec<u8>> {
    let codec = common::codec_with_ids();
    let mut payloads = vec![];
    let mut push = |bytes: Result<Vec<u8>, CodecError>| payloads.push(bytes.unwrap());
    for encoding in [Encoding::SingleObject, Encoding::Json] {
        push(codec.encode(&common::match_completed(), encoding));
        push(codec.encode(&common::player_profile(), encoding));
        push(codec.encode(&common::job_requested(), encoding));
        push(codec.encode(&common::job_status_changed(), encoding));
        push(codec.encode(&common::match_enriched(), encoding));
        push(codec.encode(&common::dead_letter(), encoding));
    }
    let schema_id = common::MATCH_COMPLETED_V1_ID;
    push(codec.encode(
        &common::match_completed(),
        Encoding::Confluent { schema_id },
    ));
    payloads
}

/// A valid payload with a few bytes overwritten and maybe cut short.
fn mutated_payload() -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6);
    (
        proptest::sample::select(valid_payloads()),
        edits,
        proptest::option::of(any::<prop::sample::Index>()),
    )
        .prop_map(|(mut bytes, edits, cut)| {
            // Keep the header: the point is to reach the body decoder.
            let keep = 10.min(bytes.len());
            for (index, byte) in edits {
                let at = keep + index.index(bytes.len() - keep);
                bytes[at] = byte;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

// Case count: proptest's default (256) or `PROPTEST_CASES` for a longer run.
proptest! {
    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_all(&bytes)?;
    }

    #[test]
    fn arbitrary_body_behind_a_known_header(
        header in known_header(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        check_all(&[header, body].concat())?;
    }

    #[test]
    fn arbitrary_json_like_text(text in "[ \n]{0,2}\\{.{0,120}") {
        check_all(text.as_bytes())?;
    }

    #[test]
    fn mutated_valid_payloads(bytes in mutated_payload()) {
        check_all(&bytes)?;
    }
}

#[test]
fn the_checks_can_fail() {
    // A known PlayerProfile header decoded as MatchCompleted is WrongType;
    // claiming it is UnknownFingerprint must be rejected by the checker.
    let bytes = common::codec_with_ids()
        .encode(&common::player_profile(), Encoding::SingleObject)
        .unwrap();
    let err = common::codec_with_ids()
        .decode::<MatchCompleted>(&bytes)
        .unwrap_err();
    let writer = avro_writer(PlayerProfile::fingerprint());
    let lie = CodecError::UnknownFingerprint(0);
    assert!(check_avro_error::<MatchCompleted>(&err, writer.clone(), lie.clone()).is_ok());
    assert!(check_avro_error::<MatchCompleted>(&lie, writer, lie.clone()).is_err());
}
