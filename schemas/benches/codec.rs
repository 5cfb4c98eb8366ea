//! Codec benchmark: what Confluent framing with registry ids costs beside
//! single-object Avro, per event, on a 10-player match. Decodes go through
//! a codec whose ids a [`SchemaResolver`] learned from the real registry, and
//! the resolver's pass over a 500-event slice of known ids (what each slice
//! pays once the ids are known) is timed too. Run:
//! `cargo bench -p schemas --bench codec [-- EVENTS]`; needs the registry of
//! `scripts/services.sh` (or `SCOUTSTREAM_REGISTRY_URL`).
#![allow(clippy::unwrap_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use schemas::registry::{register_writers, RegistryClient, RegistryConfig, SchemaResolver};
use schemas::{Codec, Encoding, MatchCompleted};

const SLICE: usize = 500;
const ROUNDS: usize = 5;

/// Median nanoseconds per item of `f` over `items`, in `ROUNDS` rounds.
fn ns_per_item(items: usize, mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            f();
            started.elapsed().as_nanos() as f64 / items as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let events: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let url = std::env::var("SCOUTSTREAM_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into());
    let config = RegistryConfig {
        url,
        ..RegistryConfig::default()
    };
    let prefix = format!("codecbench{}.", std::process::id());
    let writer = Codec::default();
    let client = RegistryClient::new(&config).unwrap();
    register_writers(&client, &writer, &prefix, &["matches"])
        .await
        .unwrap();

    let event = common::match_completed();
    let single = writer.encode(&event, Encoding::SingleObject).unwrap();
    let confluent = writer.encode(&event, Encoding::Registered).unwrap();
    let resolver = SchemaResolver::new(
        Arc::new(RegistryClient::new(&config).unwrap()),
        Codec::default(),
    );
    resolver.resolve([&confluent[..]]).await.unwrap();
    let reader = resolver.codec().clone();

    let encode_single = ns_per_item(events, || {
        for _ in 0..events {
            black_box(
                writer
                    .encode(black_box(&event), Encoding::SingleObject)
                    .unwrap(),
            );
        }
    });
    let encode_registered = ns_per_item(events, || {
        for _ in 0..events {
            black_box(
                writer
                    .encode(black_box(&event), Encoding::Registered)
                    .unwrap(),
            );
        }
    });
    let decode_single = ns_per_item(events, || {
        for _ in 0..events {
            black_box(reader.decode::<MatchCompleted>(black_box(&single)).unwrap());
        }
    });
    let decode_confluent = ns_per_item(events, || {
        for _ in 0..events {
            black_box(
                reader
                    .decode::<MatchCompleted>(black_box(&confluent))
                    .unwrap(),
            );
        }
    });
    let slice: Vec<&[u8]> = vec![&confluent[..]; SLICE];
    let slices = events / SLICE;
    let mut resolve_ns = Vec::new();
    for _ in 0..ROUNDS {
        let started = Instant::now();
        for _ in 0..slices {
            black_box(resolver.resolve(slice.iter().copied()).await.unwrap());
        }
        resolve_ns.push(started.elapsed().as_nanos() as f64 / (slices * SLICE) as f64);
    }
    resolve_ns.sort_by(f64::total_cmp);

    println!("codec: {events} MatchCompleted (10 players), {} bytes single-object, {} bytes Confluent; median of {ROUNDS} rounds", single.len(), confluent.len());
    println!("  encode  single-object {encode_single:>8.0} ns/event   Confluent (registry id) {encode_registered:>8.0} ns/event   ratio {:.3}", encode_registered / encode_single);
    println!("  decode  single-object {decode_single:>8.0} ns/event   Confluent (registry id) {decode_confluent:>8.0} ns/event   ratio {:.3}", decode_confluent / decode_single);
    println!(
        "  resolver pass over {SLICE}-event slices of known ids: {:.1} ns/event",
        resolve_ns[ROUNDS / 2]
    );
    println!(
        "  registry requests: writer {}, resolver {} (one each: ids are cached)",
        client.requests_sent(),
        resolver.client().requests_sent()
    );
}
