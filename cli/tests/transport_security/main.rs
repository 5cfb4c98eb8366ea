//! Every connection encrypted and authenticated: Apache Kafka over SASL_SSL
//! (SCRAM-SHA-512) and mutual TLS, Redis over TLS with an ACL user per client,
//! PostgreSQL with `sslmode=verify-full` and a role that may only read and
//! write rows. Each server is the test's own, with certificates made here;
//! wrong passwords, certificates for another host and missing rights are refused.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod deployment;
mod postgres_roles;
mod redis_acl;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use common::tls::*;
use common::*;
use pipeline::bus::kafka::{KafkaBus, KafkaConfig};
use pipeline::bus::{Bus, Record};

fn kafka_bus(brokers: String, client: BTreeMap<String, String>) -> KafkaBus {
    KafkaBus::new(KafkaConfig {
        brokers,
        client_overrides: client,
        session_timeout: Duration::from_secs(6),
        ..KafkaConfig::default()
    })
    .unwrap()
}

/// Publishes 50 records and reads every one back as a new group.
async fn roundtrip(bus: &dyn Bus, topic: &str) {
    bus.ensure_topic(topic, 2).await.unwrap();
    let records: Vec<Record> = (0..50)
        .map(|i| Record::new(format!("key-{i}"), format!("payload-{i}")))
        .collect();
    let publisher = bus.publisher().await.unwrap();
    publisher.publish_batch(topic, &records).await.unwrap();
    let mut subscription = bus
        .subscribe(&unique("tls-group"), &[topic.to_string()])
        .await
        .unwrap();
    let wanted: BTreeSet<Vec<u8>> = records.iter().map(|r| r.payload.clone()).collect();
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while seen.len() < wanted.len() && tokio::time::Instant::now() < deadline {
        for delivery in subscription
            .poll(100, Duration::from_secs(1))
            .await
            .unwrap()
        {
            seen.insert(delivery.payload.to_vec());
        }
    }
    assert_eq!(seen, wanted, "{} read back what it published", bus.name());
}

async fn refusal(bus: KafkaBus) -> String {
    let err = bus
        .check_access()
        .await
        .expect_err("the broker should refuse this client")
        .to_string();
    println!("refused: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_serves_sasl_ssl_and_mutual_tls_and_refuses_wrong_credentials() {
    let ca = TestCa::new("scoutstream test CA");
    let kafka = SecureKafka::start(&ca);

    let (brokers, client) = kafka.sasl_client(&ca, "127.0.0.1", KAFKA_PASSWORD);
    let bus = kafka_bus(brokers, client);
    bus.check_access().await.unwrap();
    roundtrip(&bus, &unique("tls-sasl")).await;

    let certificate = ca.client("scoutstream-persist");
    let (brokers, client) = kafka.mtls_client(&ca, Some(&certificate));
    let bus = kafka_bus(brokers, client);
    bus.check_access().await.unwrap();
    roundtrip(&bus, &unique("tls-mtls")).await;

    let (brokers, client) = kafka.sasl_client(&ca, "127.0.0.1", "not-the-password");
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(
        err.contains("refused this client") && err.contains("SCRAM-SHA-512"),
        "a wrong password is named as such: {err}"
    );
    assert!(!err.contains("not-the-password"), "{err}");

    let (brokers, client) = kafka.sasl_client(&ca, "localhost", KAFKA_PASSWORD);
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(
        err.contains("refused this client") && err.contains("certificate"),
        "a certificate for another host is refused: {err}"
    );

    let stranger = TestCa::new("an authority the broker's certificate is not from");
    let (brokers, client) = kafka.sasl_client(&stranger, "127.0.0.1", KAFKA_PASSWORD);
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(err.contains("certificate"), "{err}");

    let (brokers, client) = kafka.mtls_client(&ca, None);
    let err = refusal(kafka_bus(brokers, client)).await;
    assert!(
        err.contains("refused this client"),
        "mutual TLS without a client certificate is refused: {err}"
    );
}

fn succeeded(output: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{what} failed: {text}");
    text
}
