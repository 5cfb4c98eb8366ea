#![allow(clippy::unwrap_used)]
use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sample {
    #[serde(default)]
    bus: BusConfig,
    #[serde(default)]
    runner: RunnerSection,
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_the_embedded_memory_bus() {
    let sample: Sample = load(None, env(&[])).unwrap();
    assert_eq!(sample.bus.backend, Backend::Memory);
    sample.bus.validate().unwrap();
    sample.runner.validate().unwrap();
}

#[test]
fn environment_overrides_the_file() {
    let dir = std::env::temp_dir().join(format!("sscfg-{}", uuid::Uuid::new_v4()));
    std::fs::write(&dir, "[bus]\nbackend = \"kafka\"\npartitions = 3\n").unwrap();
    let sample: Sample = load(
        Some(&dir),
        env(&[
            ("SCOUTSTREAM__BUS__PARTITIONS", "12"),
            ("SCOUTSTREAM__BUS__KAFKA__BROKERS", "k1:9092,k2:9092"),
            ("SCOUTSTREAM__BUS__KAFKA__GROUP_PROTOCOL", "consumer"),
            ("OTHER", "x"),
        ]),
    )
    .unwrap();
    std::fs::remove_file(dir).ok();
    assert_eq!(sample.bus.backend, Backend::Kafka);
    assert_eq!(sample.bus.partitions, 12);
    assert_eq!(sample.bus.kafka.brokers, "k1:9092,k2:9092");
    assert_eq!(sample.bus.kafka.group_protocol, GroupProtocol::Consumer);
}

#[test]
fn an_unknown_group_protocol_names_the_field() {
    let error = load::<Sample>(
        None,
        env(&[("SCOUTSTREAM__BUS__KAFKA__GROUP_PROTOCOL", "eager")]),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("`bus.kafka.group_protocol`"), "{error}");
    assert!(
        error.contains("classic") && error.contains("consumer"),
        "{error}"
    );
}

#[test]
fn errors_name_the_field() {
    let unknown = load::<Sample>(None, env(&[("SCOUTSTREAM__BUS__BAKEND", "kafka")])).unwrap_err();
    assert!(unknown.to_string().contains("bakend"), "{unknown}");
    let wrong_type =
        load::<Sample>(None, env(&[("SCOUTSTREAM__RUNNER__BATCH_SIZE", "many")])).unwrap_err();
    assert!(
        wrong_type.to_string().contains("`runner.batch_size`"),
        "{wrong_type}"
    );
    let zero: Sample = load(None, env(&[("SCOUTSTREAM__RUNNER__BATCH_SIZE", "0")])).unwrap();
    assert!(zero
        .runner
        .validate()
        .unwrap_err()
        .to_string()
        .contains("runner.batch_size"));
    let bad_url: Sample = load(
        None,
        env(&[
            ("SCOUTSTREAM__BUS__BACKEND", "redis-streams"),
            ("SCOUTSTREAM__BUS__REDIS__URL", "http://x"),
        ]),
    )
    .unwrap();
    assert!(bad_url
        .bus
        .validate()
        .unwrap_err()
        .to_string()
        .contains("bus.redis.url"));
}

/// A config written for a backend (`backend`, cargo feature `feature`) still
/// parses in a build without it, and start-up stops naming the field rather
/// than failing on the first poll.
fn backend_is_there_exactly_when_built_in(backend: &str, feature: &str, built_in: bool) {
    let sample: Sample = load(None, env(&[("SCOUTSTREAM__BUS__BACKEND", backend)])).unwrap();
    let validated = sample.bus.validate();
    if built_in {
        validated.unwrap();
    } else {
        let error = validated.unwrap_err().to_string();
        assert!(error.contains("`bus.backend`"), "{error}");
        assert!(error.contains(&format!("feature `{feature}`")), "{error}");
    }
}

#[test]
fn the_kafka_backend_is_there_exactly_when_built_in() {
    backend_is_there_exactly_when_built_in("kafka", "kafka", cfg!(feature = "kafka"));
}

#[test]
fn the_redis_streams_backend_is_there_exactly_when_built_in() {
    backend_is_there_exactly_when_built_in(
        "redis-streams",
        "redis-streams",
        cfg!(feature = "redis-streams"),
    );
}

#[test]
fn a_certificate_without_its_key_names_the_missing_field() {
    let tls = crate::redis_tls::RedisTls {
        cert: "CERT PEM".into(),
        ..crate::redis_tls::RedisTls::default()
    };
    let err = super::redis_tls("redis_tls", &tls)
        .expect_err("half a client identity")
        .to_string();
    assert!(err.contains("redis_tls.key"), "{err}");
}
