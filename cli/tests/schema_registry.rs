//! The schema registry end to end, on Apache Kafka, PostgreSQL and the real
//! Apicurio Registry `scripts/registry.sh` runs: the `scoutstream` binary
//! publishes Confluent-framed Avro with the registry's ids, the persist group
//! resolves them, an id the registry does not know becomes a dead letter with
//! that reason, and `schemas check` gates incompatible versions.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use std::process::Stdio;
use std::time::Duration;

use pipeline::bus::Record;
use schemas::registry::{value_subject, RegistryClient, RegistryConfig};
use schemas::{Codec, Format};

fn registry_client() -> RegistryClient {
    RegistryClient::new(&RegistryConfig {
        url: schema_registry_url(),
        ..RegistryConfig::default()
    })
    .unwrap()
}

async fn registry_deployment() -> Deployment {
    let mut deployment = Deployment::new("kafka").await;
    deployment.schema_registry = Some(schema_registry_url());
    deployment
}

/// The framing of the first record on `topic`, read with a throwaway group.
async fn first_format(deployment: &Deployment, topic: &str) -> Format {
    let bus = deployment_bus(deployment).await;
    let group = unique("framing");
    let mut subscription = bus.subscribe(&group, &[topic.to_string()]).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let batch = subscription
            .poll(10, Duration::from_millis(500))
            .await
            .unwrap();
        if let Some(first) = batch.first() {
            return Codec::describe(&first.payload).unwrap();
        }
        assert!(tokio::time::Instant::now() < deadline, "nothing on {topic}");
    }
}

/// Distinct matches of the fixtures plus `generated` generated ones.
fn expected_matches(generated: usize, seed: u64) -> i64 {
    use producers::ingest::{ingest_file, IngestedEvent};
    let mut ids = std::collections::HashSet::new();
    for path in fixture_paths() {
        for event in ingest_file(std::path::Path::new(&path), 0).unwrap() {
            if let IngestedEvent::Match(m) = event {
                ids.insert(m.match_id);
            }
        }
    }
    ids.extend(
        producers::loadgen::generate_matches(generated, seed)
            .iter()
            .map(|m| m.match_id),
    );
    ids.len() as i64
}

/// An id far above any the local registry hands out.
const UNKNOWN_ID: u32 = 2_147_483_392;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_framed_events_persist_and_unknown_ids_become_dead_letters() {
    let deployment = registry_deployment().await;
    deployment.produce(&fixture_paths(), 40, 5);

    let subject = value_subject(&format!("{}matches", deployment.topic_prefix));
    let registered = registry_client().latest(&subject).await.unwrap().unwrap();
    assert_eq!(
        first_format(&deployment, "matches").await,
        Format::Confluent {
            schema_id: registered.id
        }
    );

    let bus = deployment_bus(&deployment).await;
    let mut poison = vec![0u8];
    poison.extend(UNKNOWN_ID.to_be_bytes());
    poison.extend([2, 4, 6]);
    let publisher = bus.publisher().await.unwrap();
    publisher
        .publish_batch("matches", &[Record::new("poison", poison)])
        .await
        .unwrap();

    // A match Confluent-framed with the registry's id that persist refuses
    // (two players in one slot): its dead letter is decodable through the registry.
    let codec = Codec::default();
    let prefix = deployment.topic_prefix.clone();
    schemas::registry::register_writers(&registry_client(), &codec, &prefix, &["matches"])
        .await
        .unwrap();
    let mut invalid = producers::loadgen::generate_matches(1, 77).remove(0);
    invalid.match_id = 9_100_000_001;
    invalid.players[1].player_slot = invalid.players[0].player_slot;
    let framed = codec
        .encode(&invalid, schemas::Encoding::Registered)
        .unwrap();
    publisher
        .publish_batch("matches", &[Record::new("invalid", framed)])
        .await
        .unwrap();

    let report = persist_until_caught_up(&deployment).await;
    assert!(report.contains("dead-lettered 2,"), "{report}");
    let pool = deployment.pool().await;
    check_fixture_rows(&pool).await;
    assert_eq!(
        count(&pool, "SELECT count(*) FROM matches").await,
        expected_matches(40, 5)
    );

    let letters = scoutstream::operate::read_all(bus.as_ref(), "dead-letters")
        .await
        .unwrap();
    assert_eq!(letters.len(), 2);
    let kind = |i: usize| letters[i].letter.as_ref().unwrap().error_kind.clone();
    let (unknown, invalid) = if kind(0) == "invalid" { (1, 0) } else { (0, 1) };
    let letter = letters[unknown].letter.as_ref().unwrap();
    assert_eq!(letter.topic, "matches");
    assert!(
        letter
            .error_message
            .contains(&format!("unknown Confluent schema id {UNKNOWN_ID}")),
        "{letter:?}"
    );
    assert_eq!(kind(invalid), "invalid");
    // Each `dlq` command reads the topic anew; partitions may come in another order.
    let inspected: Vec<String> = (0..2)
        .map(|i| run_ok(&deployment, &["dlq", "inspect", &i.to_string()]))
        .collect();
    assert!(
        inspected
            .iter()
            .any(|out| out.contains("error kind:     invalid")
                && out.contains("\"match_id\": 9100000001")),
        "{inspected:?}"
    );
    pool.close().await;
    deployment.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_check_passes_then_fails_on_an_incompatible_registered_version() {
    let deployment = registry_deployment().await;
    let offline = run_ok(&deployment, &["schemas", "check", "--offline"]);
    assert!(offline.contains("3 checks, 0 incompatible"), "{offline}");
    assert!(offline.contains("ok    MatchCompleted.avsc reads v1/MatchCompleted.avsc"));

    let registered = run_ok(&deployment, &["schemas", "register"]);
    let players = value_subject(&format!("{}players", deployment.topic_prefix));
    assert_eq!(registered.lines().count(), 6, "{registered}");
    assert!(
        registered.contains(&format!("{players}: id ")),
        "{registered}"
    );
    let online = run_ok(&deployment, &["schemas", "check"]);
    assert!(online.contains("9 checks, 0 incompatible"), "{online}");

    // BACKWARD, set by `register`, refuses a version whose account ids are
    // strings; with the rule lifted it lands, and the gate catches it.
    let client = registry_client();
    let incompatible = schemas::avro::PLAYER_PROFILE_AVSC.replacen(
        r#""name": "account_id", "type": "long""#,
        r#""name": "account_id", "type": "string""#,
        1,
    );
    assert_ne!(incompatible, schemas::avro::PLAYER_PROFILE_AVSC);
    let refused = client.register(&players, &incompatible).await.unwrap_err();
    assert!(matches!(
        refused,
        schemas::registry::RegistryError::Incompatible { .. }
    ));
    client.set_compatibility(&players, "NONE").await.unwrap();
    client.register(&players, &incompatible).await.unwrap();

    let gate = deployment
        .command(&["schemas", "check"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&gate.stdout);
    assert!(!gate.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "FAIL  PlayerProfile.avsc cannot read {players} version 2"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("9 checks, 1 incompatible"), "{stdout}");
    assert!(String::from_utf8_lossy(&gate.stderr).contains("cannot read earlier data"));
    deployment.drop_database().await;
}

fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The real fixtures as our ingest reads them, at a fixed observation time.
fn fixture_events() -> Vec<producers::ingest::IngestedEvent> {
    fixture_paths()
        .iter()
        .flat_map(|path| {
            producers::ingest::ingest_file(std::path::Path::new(path), 1_700_000_000_000).unwrap()
        })
        .collect()
}

/// The events as lines for the interop publisher: wire topic, key, `.avsc`, JSON value.
fn interop_lines(events: &[producers::ingest::IngestedEvent], topic_prefix: &str) -> String {
    use producers::ingest::IngestedEvent;
    let avsc = |file: &str| repo_root().join("schemas/avro").join(file);
    let mut lines = String::new();
    for event in events {
        let (topic, key, file, value) = match event {
            IngestedEvent::Match(m) => (
                "matches",
                m.match_id.to_string(),
                "MatchCompleted.avsc",
                serde_json::to_value(m).unwrap(),
            ),
            IngestedEvent::Player(p) => (
                "players",
                p.account_id.to_string(),
                "PlayerProfile.avsc",
                serde_json::to_value(p).unwrap(),
            ),
            IngestedEvent::Job(_) => continue,
        };
        let line = serde_json::json!({
            "topic": format!("{topic_prefix}{topic}"),
            "key": key,
            "schema_file": avsc(file),
            "value": value,
        });
        lines += &format!("{line}\n");
    }
    lines
}

/// The interpreter of the pinned confluent-kafka virtualenv (created on first use).
fn interop_python() -> String {
    let output = std::process::Command::new("bash")
        .arg(repo_root().join("scripts/python-env.sh"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(output.status.success(), "scripts/python-env.sh failed");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Matches and profiles published by Python's confluent-kafka `AvroSerializer`
/// (its own schema registry client, auto-registering under TopicNameStrategy)
/// land in PostgreSQL row for row as the same events published by us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_confluent_python_serializer_persist_like_our_own() {
    let events = fixture_events();
    let confluent = registry_deployment().await;
    confluent.produce(&[], 0, 1); // creates the topics, nothing else
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        input.path(),
        interop_lines(&events, &confluent.topic_prefix),
    )
    .unwrap();
    let published = std::process::Command::new(interop_python())
        .arg(repo_root().join("producers/interop/confluent_avro_publish.py"))
        .args(["--brokers", "127.0.0.1:9092", "--registry"])
        .arg(schema_registry_url())
        .arg("--input")
        .arg(input.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&published.stdout);
    assert!(
        published.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&published.stderr)
    );
    let sent = events
        .iter()
        .filter(|e| !matches!(e, producers::ingest::IngestedEvent::Job(_)))
        .count();
    assert!(
        stdout.contains(&format!("published {sent} events")),
        "{stdout}"
    );

    let report = persist_until_caught_up(&confluent).await;
    assert!(report.contains("dead-lettered 0,"), "{report}");
    let pool = confluent.pool().await;
    check_fixture_rows(&pool).await;

    // The same events through our own publisher, single-object Avro, no registry.
    let ours = Deployment::new("kafka").await;
    ours.produce(&[], 0, 1);
    let bus = deployment_bus(&ours).await;
    let publisher = producers::publish::EventPublisher::new(
        bus.publisher().await.unwrap(),
        schemas::Encoding::SingleObject,
    );
    publisher.publish_ingested(&events).await.unwrap();
    persist_until_caught_up(&ours).await;
    let reference = ours.pool().await;
    let (theirs, mine) = (dump(&pool).await, dump(&reference).await);
    assert!(theirs.len() > 40, "{}", theirs.len());
    assert_eq!(theirs, mine);
    pool.close().await;
    reference.close().await;
    confluent.drop_database().await;
    ours.drop_database().await;
}

/// With a registry, the jobs API writes job requests Confluent-framed with the
/// registry's id, and the jobs group (same process) resolves it and runs the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_requests_go_through_the_registry_and_run() {
    let deployment = registry_deployment().await;
    deployment.produce(&[], 0, 1);
    let run = deployment.start("jobs");
    let body = r#"{"job_type": "recompute_hero_pool", "subject_id": 120269134}"#;
    let deadline = tokio::time::Instant::now() + WAIT;
    let job_id = loop {
        let (status, answer) = http(deployment.observe_port, "POST", "/jobs", Some(body));
        if status == 202 {
            let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
            break answer["job_id"].as_str().unwrap().to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "{status}: {answer}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let view = loop {
        let (_, view) = http_get(deployment.observe_port, &format!("/jobs/{job_id}"));
        let view: serde_json::Value = serde_json::from_str(&view).unwrap_or_default();
        if view["status"] == "succeeded" || view["status"] == "dead" {
            break view;
        }
        assert!(tokio::time::Instant::now() < deadline, "{view}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(view["status"], "succeeded", "{view}");

    let subject = value_subject(&format!("{}jobs", deployment.topic_prefix));
    let registered = registry_client().latest(&subject).await.unwrap().unwrap();
    assert_eq!(
        first_format(&deployment, "jobs").await,
        Format::Confluent {
            schema_id: registered.id
        }
    );
    let (out, _) = stop(run);
    assert!(
        out.contains("group jobs: handled 1, dead-lettered 0"),
        "{out}"
    );
    deployment.drop_database().await;
}
