//! The registry client against the real Apicurio Registry that
//! `scripts/registry.sh` runs (its Confluent-compatible API), at
//! `SCOUTSTREAM_REGISTRY_URL` (default `http://127.0.0.1:8081/apis/ccompat/v7`).
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use schemas::registry::{
    register_writers, value_subject, RegistryClient, RegistryConfig, RegistryError, SchemaResolver,
};
use schemas::{Codec, Encoding, Event, MatchCompleted, PlayerProfile};

mod common;

fn registry() -> RegistryClient {
    let url = std::env::var("SCOUTSTREAM_REGISTRY_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8081/apis/ccompat/v7".into());
    RegistryClient::new(&RegistryConfig {
        url,
        ..RegistryConfig::default()
    })
    .unwrap()
}

/// A subject no other run uses: the registry outlives test runs.
fn unique_subject(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("regtest{nanos:x}{}-{name}-value", std::process::id())
}

const T_V1: &str =
    r#"{"type":"record","name":"T","namespace":"regtest","fields":[{"name":"a","type":"long"}]}"#;
const T_V2_WITH_DEFAULT: &str = r#"{"type":"record","name":"T","namespace":"regtest","fields":[{"name":"a","type":"long"},{"name":"b","type":"string","default":"x"}]}"#;
const T_V2_NO_DEFAULT: &str = r#"{"type":"record","name":"T","namespace":"regtest","fields":[{"name":"a","type":"long"},{"name":"b","type":"string"}]}"#;

#[tokio::test]
async fn registers_fetches_by_id_and_serves_known_ids_from_its_cache() {
    let client = registry();
    let subject = unique_subject("t");
    let id = client.register(&subject, T_V1).await.unwrap();
    assert_eq!(client.register(&subject, T_V1).await.unwrap(), id);

    // A second client has no cache: the schema comes from the registry.
    let reader = registry();
    let fetched = reader.schema_by_id(id).await.unwrap().unwrap();
    let parsed = apache_avro::Schema::parse_str(&fetched).unwrap();
    assert_eq!(parsed, apache_avro::Schema::parse_str(T_V1).unwrap());
    let sent = reader.requests_sent();
    for _ in 0..100 {
        reader.schema_by_id(id).await.unwrap().unwrap();
    }
    assert_eq!(
        reader.requests_sent(),
        sent,
        "a known id costs no round trip"
    );

    let latest = reader.latest(&subject).await.unwrap().unwrap();
    assert_eq!((latest.id, latest.version), (id, 1));
    assert_eq!(reader.latest(&unique_subject("none")).await.unwrap(), None);
}

#[tokio::test]
async fn an_id_the_registry_does_not_know_is_none_not_an_error() {
    assert_eq!(registry().schema_by_id(2_000_000_000).await.unwrap(), None);
}

#[tokio::test]
async fn a_backward_rule_refuses_a_field_without_default() {
    let client = registry();
    let subject = unique_subject("t");
    client.register(&subject, T_V1).await.unwrap();
    client
        .set_compatibility(&subject, "BACKWARD")
        .await
        .unwrap();

    let ok = client
        .check_compatibility(&subject, T_V2_WITH_DEFAULT)
        .await;
    assert!(ok.unwrap().unwrap().is_compatible);
    let bad = client.check_compatibility(&subject, T_V2_NO_DEFAULT).await;
    assert!(!bad.unwrap().unwrap().is_compatible);

    let refused = client
        .register(&subject, T_V2_NO_DEFAULT)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, RegistryError::Incompatible { subject: s, .. } if *s == subject),
        "{refused}"
    );
    assert!(!refused.is_retriable());
    let v2 = client.register(&subject, T_V2_WITH_DEFAULT).await.unwrap();
    assert_eq!(client.latest(&subject).await.unwrap().unwrap().id, v2);
}

#[tokio::test]
async fn a_producer_registers_and_a_consumer_resolves_through_the_registry() {
    let client = Arc::new(registry());
    let prefix = unique_subject("p").replace("-p-value", ".");
    let producer = Codec::default();
    register_writers(&client, &producer, &prefix, &["matches", "players"])
        .await
        .unwrap();
    let event = common::match_completed();
    let bytes = producer.encode(&event, Encoding::Registered).unwrap();
    let subject = value_subject(&format!("{prefix}matches"));
    let id = client.latest(&subject).await.unwrap().unwrap().id;
    assert_eq!(&bytes[..5], [&[0u8][..], &id.to_be_bytes()].concat());

    // The consumer knows no ids: it learns this one once, and only this one.
    let resolver = SchemaResolver::new(Arc::new(registry()), Codec::default());
    let handler_codec = resolver.codec().clone();
    let unknown = [0u8, 0x77, 0x35, 0x94, 0x00, 0x02];
    let payloads = [&bytes[..], &bytes[..], &unknown[..]];
    let resolved = resolver.resolve(payloads).await.unwrap();
    assert_eq!(resolved.learned, vec![id]);
    assert_eq!(resolved.unknown.len(), 1, "{resolved:?}");
    assert_eq!(
        handler_codec.decode::<MatchCompleted>(&bytes).unwrap(),
        event
    );
    let err = handler_codec
        .decode::<MatchCompleted>(&unknown)
        .unwrap_err();
    assert_eq!(err.kind(), "unknown_schema_id");

    // Asked again at once: nothing to fetch, the unknown id is not re-asked.
    let sent = resolver.client().requests_sent();
    let again = resolver.resolve(payloads).await.unwrap();
    assert_eq!(again, Default::default());
    assert_eq!(resolver.client().requests_sent(), sent);
    assert!(producer.schema_id_for(PlayerProfile::NAME).is_some());
}

#[tokio::test]
async fn an_unreachable_registry_is_a_retriable_error() {
    let client = RegistryClient::new(&RegistryConfig {
        url: "http://127.0.0.1:9".into(),
        timeout_ms: 500,
        max_attempts: 2,
    })
    .unwrap();
    let err = client.schema_by_id(1).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert_eq!(client.requests_sent(), 2, "retried once");
}
