//! The `.avsc` files and the Rust types say the same thing.
#![allow(clippy::unwrap_used)]

mod common;

use apache_avro::schema::{RecordSchema, Schema, UnionSchema};
use apache_avro::types::Value;
use schemas::{
    avro, DeadLetter, Event, JobRequested, JobStatusChanged, MatchCompleted, MatchEnriched,
    PlayerProfile,
};
use serde::Serialize;

/// Walks a serialized event beside its schema and returns every place where
/// a record's fields (names and order) differ from the schema's.
fn mismatches(value: &Value, schema: &Schema, path: &str) -> Vec<String> {
    match (value, schema) {
        (
            Value::Record(fields),
            Schema::Record(RecordSchema {
                fields: expected, ..
            }),
        ) => {
            let names: Vec<_> = fields.iter().map(|(name, _)| name.as_str()).collect();
            let expected_names: Vec<_> = expected.iter().map(|f| f.name.as_str()).collect();
            if names != expected_names {
                return vec![format!("{path}: rust {names:?} vs avsc {expected_names:?}")];
            }
            fields
                .iter()
                .zip(expected)
                .flat_map(|((name, v), f)| mismatches(v, &f.schema, &format!("{path}.{name}")))
                .collect()
        }
        (Value::Union(_, inner), Schema::Union(union)) => match non_null(union) {
            Some(branch) if **inner != Value::Null => mismatches(inner, branch, path),
            _ => vec![],
        },
        (Value::Array(items), Schema::Array(array)) => items
            .iter()
            .flat_map(|item| mismatches(item, &array.items, &format!("{path}[]")))
            .collect(),
        _ => vec![],
    }
}

fn non_null(union: &UnionSchema) -> Option<&Schema> {
    union.variants().iter().find(|s| **s != Schema::Null)
}

fn assert_mirrors<E: Event + Serialize>(event: &E) {
    let value = apache_avro::to_value(event).unwrap();
    let problems = mismatches(&value, E::schema(), E::NAME);
    assert!(problems.is_empty(), "{problems:#?}");
    // The walk must have seen a record, or it proves nothing.
    assert!(matches!(value, Value::Record(ref fields) if !fields.is_empty()));
}

#[test]
fn rust_fields_mirror_the_avsc_files() {
    assert_mirrors(&common::match_completed());
    assert_mirrors(&common::player_profile());
    assert_mirrors(&common::job_requested());
    assert_mirrors(&common::job_status_changed());
    assert_mirrors(&common::match_enriched());
    assert_mirrors(&common::dead_letter());
}

#[test]
fn field_walk_notices_a_difference() {
    // The v1 schema lacks fields the current type has: the walk must say so.
    let value = apache_avro::to_value(common::match_completed()).unwrap();
    assert!(!mismatches(&value, avro::match_completed_v1(), "v1").is_empty());
}

/// The Avro spec's CRC-64-AVRO, written out independently of apache-avro.
fn spec_rabin(bytes: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let table: Vec<u64> = (0..256u64)
        .map(|i| (0..8).fold(i, |fp, _| (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg())))
        .collect();
    bytes.iter().fold(EMPTY, |fp, b| {
        (fp >> 8) ^ table[((fp ^ u64::from(*b)) & 0xff) as usize]
    })
}

#[test]
fn fingerprints_follow_the_spec() {
    // Test vector from the Avro project: the schema "null".
    let null = Schema::parse_str(r#""null""#).unwrap();
    assert_eq!(avro::fingerprint(&null), 0x63dd_24e7_cc25_8f8a);
    let all = avro::current_schemas()
        .into_iter()
        .chain(avro::historic_schemas());
    for schema in all {
        let expected = spec_rabin(schema.canonical_form().as_bytes());
        assert_eq!(
            avro::fingerprint(schema),
            expected,
            "{}",
            avro::full_name(schema)
        );
    }
}

#[test]
fn every_schema_has_its_own_fingerprint() {
    let mut seen: Vec<u64> = avro::current_schemas()
        .into_iter()
        .chain(avro::historic_schemas())
        .map(avro::fingerprint)
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 9, "6 current schemas, 3 historic");
}

#[test]
fn event_names_are_the_record_names() {
    let names = [
        (MatchCompleted::NAME, MatchCompleted::schema()),
        (PlayerProfile::NAME, PlayerProfile::schema()),
        (JobRequested::NAME, JobRequested::schema()),
        (JobStatusChanged::NAME, JobStatusChanged::schema()),
        (MatchEnriched::NAME, MatchEnriched::schema()),
        (DeadLetter::NAME, DeadLetter::schema()),
    ];
    for (name, schema) in names {
        assert_eq!(avro::full_name(schema), name);
    }
    assert_eq!(MatchCompleted::NAME, "scoutstream.MatchCompleted");
    assert_eq!(
        avro::full_name(avro::match_completed_v1()),
        MatchCompleted::NAME
    );
}

/// `Team` is defined inline in two files; both must say the same.
#[test]
fn team_is_defined_alike_everywhere() {
    fn team(avsc: &str) -> serde_json::Value {
        let json: serde_json::Value = serde_json::from_str(avsc).unwrap();
        let field = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "radiant_team")
            .unwrap();
        field["type"][1].clone()
    }
    let in_match = team(avro::MATCH_COMPLETED_AVSC);
    assert_eq!(in_match["name"], "Team");
    assert_eq!(in_match, team(avro::MATCH_ENRICHED_AVSC));
}

/// The house rules from the brief: optional means `["null", T]` defaulting
/// to null, arrays default to `[]`.
#[test]
fn optional_and_array_fields_have_defaults() {
    let files = [
        avro::MATCH_COMPLETED_AVSC,
        avro::MATCH_COMPLETED_V1_AVSC,
        avro::PLAYER_PROFILE_AVSC,
        avro::JOB_REQUESTED_AVSC,
        avro::JOB_STATUS_CHANGED_AVSC,
        avro::MATCH_ENRICHED_AVSC,
        avro::DEAD_LETTER_AVSC,
    ];
    for avsc in files {
        let json: serde_json::Value = serde_json::from_str(avsc).unwrap();
        assert_eq!(json["namespace"], "scoutstream");
        check_defaults(&json);
    }
}

fn check_defaults(node: &serde_json::Value) {
    if let Some(fields) = node.get("fields").and_then(|f| f.as_array()) {
        for field in fields {
            let ty = &field["type"];
            if ty.is_array() {
                assert_eq!(ty[0], "null", "{field}");
                assert_eq!(
                    field.get("default"),
                    Some(&serde_json::Value::Null),
                    "{field}"
                );
            }
            if ty["type"] == "array" {
                assert_eq!(field["default"], serde_json::json!([]), "{field}");
            }
        }
    }
    match node {
        serde_json::Value::Object(map) => map.values().for_each(check_defaults),
        serde_json::Value::Array(items) => items.iter().for_each(check_defaults),
        _ => {}
    }
}

/// `schemas check` and the registry cover every file: each `.avsc` under
/// `schemas/avro/` is a topic's current schema or a kept earlier version,
/// with the same text the build embeds.
#[test]
fn every_avsc_file_belongs_to_a_topic() {
    use schemas::registry::TOPIC_SCHEMAS;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
    let mut on_disk = Vec::new();
    for dir in [root.clone(), root.join("v1")] {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "avsc") {
                let name = path.strip_prefix(&root).unwrap().display().to_string();
                on_disk.push((name, std::fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut known: Vec<(String, String)> = TOPIC_SCHEMAS
        .iter()
        .flat_map(|t| {
            let earlier = t
                .earlier
                .iter()
                .map(|(f, text)| (f.to_string(), text.to_string()));
            std::iter::once((t.file.to_string(), t.current.to_string())).chain(earlier)
        })
        .collect();
    on_disk.sort();
    known.sort();
    assert_eq!(on_disk.len(), 9);
    assert_eq!(on_disk, known);
}
