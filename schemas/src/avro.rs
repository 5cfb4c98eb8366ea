//! The `.avsc` files under `schemas/avro/`, compiled into the crate and
//! parsed once on first use.
//!
//! Each file is self-contained (named types such as `Team` are defined inline
//! where first used) so it can be registered as-is with a Confluent registry.

use std::sync::LazyLock;

use apache_avro::{rabin::Rabin, Schema};

/// Raw text of `MatchCompleted.avsc`, e.g. for registering with a registry.
pub const MATCH_COMPLETED_AVSC: &str = include_str!("../avro/MatchCompleted.avsc");
/// Raw text of `v1/MatchCompleted.avsc`: before picks/bans, scores and
/// player backpack/net worth. Kept to prove old data still reads.
pub const MATCH_COMPLETED_V1_AVSC: &str = include_str!("../avro/v1/MatchCompleted.avsc");
pub const PLAYER_PROFILE_AVSC: &str = include_str!("../avro/PlayerProfile.avsc");
pub const JOB_REQUESTED_AVSC: &str = include_str!("../avro/JobRequested.avsc");
/// Raw text of `v1/JobRequested.avsc`: before the `ParseMatch` job type.
pub const JOB_REQUESTED_V1_AVSC: &str = include_str!("../avro/v1/JobRequested.avsc");
pub const JOB_STATUS_CHANGED_AVSC: &str = include_str!("../avro/JobStatusChanged.avsc");
/// Raw text of `v1/JobStatusChanged.avsc`: before the `ParseMatch` job type.
pub const JOB_STATUS_CHANGED_V1_AVSC: &str = include_str!("../avro/v1/JobStatusChanged.avsc");
pub const MATCH_ENRICHED_AVSC: &str = include_str!("../avro/MatchEnriched.avsc");
pub const DEAD_LETTER_AVSC: &str = include_str!("../avro/DeadLetter.avsc");

/// A parsed schema with its fingerprint, both computed once.
#[derive(Debug)]
pub struct Embedded {
    pub schema: Schema,
    pub fingerprint: u64,
}

impl Embedded {
    /// Panics only if an embedded `.avsc` is broken: a build defect that
    /// `every_embedded_schema_parses` catches, never a runtime input.
    fn parse(file: &str, text: &str) -> Self {
        let schema = Schema::parse_str(text)
            .unwrap_or_else(|e| panic!("embedded schema {file} is invalid: {e}"));
        let fingerprint = fingerprint(&schema);
        Self {
            schema,
            fingerprint,
        }
    }
}

macro_rules! embedded {
    ($($static:ident = $text:ident;)*) => {$(
        pub(crate) static $static: LazyLock<Embedded> =
            LazyLock::new(|| Embedded::parse(stringify!($text), $text));
    )*};
}

embedded! {
    MATCH_COMPLETED = MATCH_COMPLETED_AVSC;
    MATCH_COMPLETED_V1 = MATCH_COMPLETED_V1_AVSC;
    PLAYER_PROFILE = PLAYER_PROFILE_AVSC;
    JOB_REQUESTED = JOB_REQUESTED_AVSC;
    JOB_REQUESTED_V1 = JOB_REQUESTED_V1_AVSC;
    JOB_STATUS_CHANGED = JOB_STATUS_CHANGED_AVSC;
    JOB_STATUS_CHANGED_V1 = JOB_STATUS_CHANGED_V1_AVSC;
    MATCH_ENRICHED = MATCH_ENRICHED_AVSC;
    DEAD_LETTER = DEAD_LETTER_AVSC;
}

/// The current schema of every top-level event.
pub fn current_schemas() -> [&'static Schema; 6] {
    [
        &MATCH_COMPLETED.schema,
        &PLAYER_PROFILE.schema,
        &JOB_REQUESTED.schema,
        &JOB_STATUS_CHANGED.schema,
        &MATCH_ENRICHED.schema,
        &DEAD_LETTER.schema,
    ]
}

/// Older schemas whose data may still be in topics and streams.
pub fn historic_schemas() -> [&'static Schema; 3] {
    [
        &MATCH_COMPLETED_V1.schema,
        &JOB_REQUESTED_V1.schema,
        &JOB_STATUS_CHANGED_V1.schema,
    ]
}

/// `JobRequested` before the `ParseMatch` job type.
pub fn job_requested_v1() -> &'static Schema {
    &JOB_REQUESTED_V1.schema
}

/// `MatchCompleted` as first published (see [`MATCH_COMPLETED_V1_AVSC`]).
pub fn match_completed_v1() -> &'static Schema {
    &MATCH_COMPLETED_V1.schema
}

/// CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form,
/// as carried little-endian in the single-object header.
pub fn fingerprint(schema: &Schema) -> u64 {
    let bytes = schema.fingerprint::<Rabin>().bytes;
    // Little-endian fold: no fallible slice-to-array conversion needed.
    bytes
        .iter()
        .rev()
        .fold(0, |acc, byte| (acc << 8) | u64::from(*byte))
}

/// Full name (`namespace.Name`) of a named schema; the canonical form for
/// anything else, which is still enough to say what it is in an error.
pub fn full_name(schema: &Schema) -> String {
    match schema.name() {
        Some(name) => name.fullname(None),
        None => schema.canonical_form(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_embedded_schema_parses() {
        let all = current_schemas().into_iter().chain(historic_schemas());
        for schema in all {
            assert!(full_name(schema).starts_with("scoutstream."));
        }
    }
}
