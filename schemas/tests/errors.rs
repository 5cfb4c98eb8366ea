//! Each way decoding fails has its own error, kind and retry answer.
#![allow(clippy::unwrap_used)]

mod common;

use apache_avro::types::Value;
use apache_avro::Schema;
use schemas::{
    Codec, CodecError, DeadLetter, Encoding, Event, JobRequested, MatchCompleted, PlayerProfile,
    MAX_ALLOCATION_BYTES,
};

fn decode_match(bytes: &[u8]) -> CodecError {
    common::codec_with_ids()
        .decode::<MatchCompleted>(bytes)
        .unwrap_err()
}

fn single_object(fingerprint: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0xC3, 0x01];
    bytes.extend(fingerprint.to_le_bytes());
    bytes.extend(body);
    bytes
}

/// Avro's zig-zag varint, for forging length prefixes.
fn varint(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = vec![];
    while z > 0x7f {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
    out
}

#[test]
fn empty_payload() {
    assert_eq!(decode_match(b""), CodecError::Empty);
    assert_eq!(decode_match(b"  \n"), CodecError::Empty);
}

#[test]
fn truncated_headers() {
    let single = decode_match(&[0xC3, 0x01, 0x12, 0x34]);
    assert_eq!(
        single,
        CodecError::Truncated {
            expected: 10,
            got: 4
        }
    );
    let confluent = decode_match(&[0x00, 0x00, 0x01]);
    assert_eq!(
        confluent,
        CodecError::Truncated {
            expected: 5,
            got: 3
        }
    );
}

#[test]
fn truncated_body_is_invalid_avro() {
    let bytes = Codec::default()
        .encode(&common::player_profile(), Encoding::SingleObject)
        .unwrap();
    for cut in [11, bytes.len() / 2, bytes.len() - 1] {
        let err = Codec::default()
            .decode::<PlayerProfile>(&bytes[..cut])
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_avro", "cut at {cut}: {err}");
    }
}

/// apache-avro 0.21 reads a union index cut off by the end of input as null:
/// a body cut just before a trailing optional field must still fail.
#[test]
fn body_cut_before_a_trailing_optional_field_is_invalid() {
    let job = common::job_requested();
    assert_eq!(job.max_attempts, Some(5)); // encoded last, as `02 0A`
    let bytes = Codec::default()
        .encode(&job, Encoding::SingleObject)
        .unwrap();
    let cut = &bytes[..bytes.len() - 2];
    let err = Codec::default().decode::<JobRequested>(cut).unwrap_err();
    assert_eq!(err.kind(), "invalid_avro", "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn unknown_fingerprint() {
    let bytes = single_object(0xABCD_EF01_2345_6789, &[0; 16]);
    assert_eq!(
        decode_match(&bytes),
        CodecError::UnknownFingerprint(0xABCD_EF01_2345_6789)
    );

    // A codec that knows nothing cannot read even a valid event.
    let valid = Codec::default()
        .encode(&common::match_completed(), Encoding::SingleObject)
        .unwrap();
    let err = Codec::empty().decode::<MatchCompleted>(&valid).unwrap_err();
    assert_eq!(
        err,
        CodecError::UnknownFingerprint(MatchCompleted::fingerprint())
    );
}

#[test]
fn unknown_schema_id() {
    let schema_id = common::MATCH_COMPLETED_ID;
    let bytes = common::codec_with_ids()
        .encode(
            &common::match_completed(),
            Encoding::Confluent { schema_id },
        )
        .unwrap();
    // The default codec has no Confluent ids.
    let err = Codec::default()
        .decode::<MatchCompleted>(&bytes)
        .unwrap_err();
    assert_eq!(err, CodecError::UnknownSchemaId(schema_id));
    let err = Codec::default()
        .encode(
            &common::match_completed(),
            Encoding::Confluent { schema_id: 9 },
        )
        .unwrap_err();
    assert_eq!(err, CodecError::UnknownSchemaId(9));
}

#[test]
fn wrong_type() {
    let codec = common::codec_with_ids();
    let profile = common::player_profile();
    let expected = CodecError::WrongType {
        expected: "scoutstream.MatchCompleted",
        found: "scoutstream.PlayerProfile".into(),
    };
    let encodings = [
        Encoding::SingleObject,
        Encoding::Confluent {
            schema_id: common::PLAYER_PROFILE_ID,
        },
    ];
    for encoding in encodings {
        let bytes = codec.encode(&profile, encoding).unwrap();
        assert_eq!(decode_match(&bytes), expected, "{encoding:?}");
    }
    // Encoding under another event's schema id is refused too.
    let schema_id = common::MATCH_COMPLETED_ID;
    let err = codec
        .encode(&profile, Encoding::Confluent { schema_id })
        .unwrap_err();
    assert_eq!(err.kind(), "wrong_type");
}

#[test]
fn missing_required_field_in_json() {
    let json = br#"{"start_time": 1, "duration_secs": 2, "radiant_win": true, "game_mode": 2,
        "lobby_type": 0, "league_id": 0, "cluster": 111, "players": [], "source": "json"}"#;
    assert_eq!(
        decode_match(json),
        CodecError::MissingField("match_id".into())
    );
}

#[test]
fn missing_required_field_in_avro() {
    // A writer schema without `observed_at_ms`, which the reader requires.
    let writer = Schema::parse_str(
        r#"{"type": "record", "name": "PlayerProfile", "namespace": "scoutstream",
            "fields": [{"name": "account_id", "type": "long"},
                       {"name": "source", "type": "string"}]}"#,
    )
    .unwrap();
    let record = Value::Record(vec![
        ("account_id".into(), Value::Long(42)),
        ("source".into(), Value::String("rank".into())),
    ]);
    let body = apache_avro::to_avro_datum(&writer, record).unwrap();
    let mut codec = Codec::default();
    let fingerprint = codec.register_schema(writer);
    let err = codec
        .decode::<PlayerProfile>(&single_object(fingerprint, &body))
        .unwrap_err();
    assert_eq!(err, CodecError::MissingField("observed_at_ms".into()));
}

#[test]
fn trailing_bytes() {
    let mut bytes = Codec::default()
        .encode(&common::player_profile(), Encoding::SingleObject)
        .unwrap();
    bytes.extend([0, 0, 0]);
    let err = Codec::default()
        .decode::<PlayerProfile>(&bytes)
        .unwrap_err();
    assert_eq!(err, CodecError::TrailingBytes { count: 3 });
}

#[test]
fn invalid_json() {
    let err = decode_match(br#"{"match_id": 1,"#);
    assert_eq!(err.kind(), "invalid_json", "{err}");
    let err = decode_match(br#"{"match_id": "seven"}"#);
    assert_eq!(err.kind(), "invalid_json", "{err}");
}

#[test]
fn unknown_format() {
    assert_eq!(decode_match(b"hello"), CodecError::UnknownFormat(b'h'));
    assert_eq!(decode_match(b"  [1, 2]"), CodecError::UnknownFormat(b'['));
    assert_eq!(
        decode_match(&[0xC3, 0x02, 0, 0]),
        CodecError::UnknownFormat(0xC3)
    );
}

/// Forged lengths must fail cleanly, not allocate what they claim.
#[test]
fn hostile_length_prefixes_fail_without_allocating() {
    let codec = Codec::default();
    // DeadLetter starts with `original: bytes`: claim an exabyte of it.
    let bytes = single_object(DeadLetter::fingerprint(), &varint(1 << 60));
    let err = codec.decode::<DeadLetter>(&bytes).unwrap_err();
    assert_eq!(err.kind(), "invalid_avro", "{err}");

    // MatchCompleted: 13 one-byte zero/null fields, then `picks_bans`.
    let leading = [0u8; 13];
    let limit = MAX_ALLOCATION_BYTES as i64;
    for count in [limit + 1, limit - 1, i64::MAX, i64::MIN + 1] {
        let mut body = leading.to_vec();
        body.extend(varint(count));
        let err = decode_match(&single_object(MatchCompleted::fingerprint(), &body));
        assert_eq!(err.kind(), "invalid_avro", "count {count}: {err}");
    }
}

#[test]
fn kinds_are_stable_and_nothing_is_retriable() {
    let cases = [
        (CodecError::Empty, "empty"),
        (
            CodecError::Truncated {
                expected: 10,
                got: 1,
            },
            "truncated",
        ),
        (CodecError::UnknownFingerprint(1), "unknown_fingerprint"),
        (CodecError::UnknownSchemaId(1), "unknown_schema_id"),
        (
            CodecError::WrongType {
                expected: "a",
                found: "b".into(),
            },
            "wrong_type",
        ),
        (CodecError::MissingField("f".into()), "missing_field"),
        (CodecError::InvalidAvro("x".into()), "invalid_avro"),
        (CodecError::TrailingBytes { count: 1 }, "trailing_bytes"),
        (CodecError::InvalidJson("x".into()), "invalid_json"),
        (CodecError::UnknownFormat(b'x'), "unknown_format"),
        (
            CodecError::Encode {
                event: "e",
                message: "m".into(),
            },
            "encode",
        ),
    ];
    for (error, kind) in cases {
        assert_eq!(error.kind(), kind);
        assert!(!error.is_retriable(), "{kind}");
    }
}

#[test]
fn messages_name_the_problem() {
    let wrong = CodecError::WrongType {
        expected: MatchCompleted::NAME,
        found: PlayerProfile::NAME.into(),
    };
    assert_eq!(
        wrong.to_string(),
        "wrong event type: expected scoutstream.MatchCompleted, \
         the writer schema is scoutstream.PlayerProfile"
    );
    let unknown = CodecError::UnknownFingerprint(0xAB);
    assert_eq!(
        unknown.to_string(),
        "unknown writer schema fingerprint 0x00000000000000ab"
    );
}
