//! Feeds arbitrary bytes to `Codec::decode` for every event type.
//!
//! Random bytes rarely hit a known 8-byte fingerprint, so the first input
//! byte may also pick a valid header to put in front of the rest: that way
//! the fuzzer spends its time in the Avro body decoder.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use schemas::{
    avro, Codec, DeadLetter, Event, JobRequested, JobStatusChanged, MatchCompleted, MatchEnriched,
    PlayerProfile,
};

/// The default codec, plus Confluent ids 1..=n for every known schema.
static CODEC: LazyLock<Codec> = LazyLock::new(|| {
    let codec = Codec::default();
    let historic = avro::historic_schemas();
    let known = avro::current_schemas().into_iter().chain(historic);
    for (id, schema) in (1..).zip(known) {
        codec.register_confluent(id, schema.clone());
    }
    codec
});

/// Fingerprints of every known schema, in the order of the Confluent ids.
static FINGERPRINTS: LazyLock<Vec<u64>> = LazyLock::new(|| {
    let historic = avro::historic_schemas();
    let known = avro::current_schemas().into_iter().chain(historic);
    known.map(avro::fingerprint).collect()
});

/// Selector byte: below n, a single-object header for schema n; below 2n, a
/// Confluent header for id n + 1; otherwise the input goes in unchanged.
fn framed(data: &[u8]) -> Option<Vec<u8>> {
    let (&selector, body) = data.split_first()?;
    let known = FINGERPRINTS.len();
    let index = usize::from(selector);
    let mut bytes = if let Some(fingerprint) = FINGERPRINTS.get(index) {
        let mut header = vec![0xC3, 0x01];
        header.extend(fingerprint.to_le_bytes());
        header
    } else if index < 2 * known {
        let id = u32::try_from(index - known + 1).ok()?;
        let mut header = vec![0x00];
        header.extend(id.to_be_bytes());
        header
    } else {
        return None;
    };
    bytes.extend_from_slice(body);
    Some(bytes)
}

fn decode<E: Event>(bytes: &[u8]) {
    if let Err(err) = CODEC.decode::<E>(bytes) {
        // Decode errors are facts about the bytes, never worth a retry.
        assert!(!err.is_retriable(), "{err}");
    }
}

fn decode_all(bytes: &[u8]) {
    decode::<MatchCompleted>(bytes);
    decode::<PlayerProfile>(bytes);
    decode::<JobRequested>(bytes);
    decode::<JobStatusChanged>(bytes);
    decode::<MatchEnriched>(bytes);
    decode::<DeadLetter>(bytes);
}

fuzz_target!(|data: &[u8]| {
    decode_all(data);
    if let Some(bytes) = framed(data) {
        decode_all(&bytes);
    }
});
