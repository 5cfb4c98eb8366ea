//! Operator commands: replaying consumer groups and dead letters.

use crate::common::*;

use std::process::Stdio;

async fn operators_replay_groups_and_dead_letters(backend: &'static str) {
    use pipeline::bus::Record;
    use schemas::{Codec, DeadLetter, Encoding};
    let deployment = Deployment::new(backend).await;
    deployment.produce(&[], 300, 3);
    let bus = deployment_bus(&deployment).await;
    let publisher = bus.publisher().await.unwrap();
    publisher
        .publish_batch(
            "matches",
            &[Record::new("poison", b"not an event".to_vec())],
        )
        .await
        .unwrap();
    // A dead letter holding a good match that failed once (say, the database was down).
    let mut late = producers::loadgen::generate_matches(1, 99).remove(0);
    late.match_id = 9_000_000_001;
    let codec = Codec::default();
    let letter = DeadLetter {
        original: codec.encode(&late, Encoding::SingleObject).unwrap(),
        key: Some(late.match_id.to_string().into_bytes()),
        topic: "matches".into(),
        partition: Some(0),
        offset: Some(0),
        stream_id: None,
        consumer_group: "earlier-run".into(),
        error_kind: "database".into(),
        error_message: "connection refused".into(),
        first_seen_ms: 1,
        attempts: 5,
    };
    publisher
        .publish_batch(
            "dead-letters",
            &[Record::new(
                "late",
                codec.encode(&letter, Encoding::SingleObject).unwrap(),
            )],
        )
        .await
        .unwrap();
    let pool = deployment.pool().await;

    let report = persist_until_caught_up(&deployment).await;
    assert!(report.contains("handled 300, dead-lettered 1"), "{report}");
    let before = dump(&pool).await;

    // Replay asks first; without a terminal the answer is no and nothing moves.
    let refused = deployment
        .command(&["replay", "--group", "persist", "--to", "earliest"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not confirmed"));
    assert_eq!(persist_lag(&deployment, &deployment.group_prefix).await, 0);

    let moved = run_ok(
        &deployment,
        &["replay", "--group", "persist", "--to", "earliest", "--yes"],
    );
    assert!(moved.contains("matches partition 0 -> "), "{moved}");
    assert_eq!(
        persist_lag(&deployment, &deployment.group_prefix).await,
        301,
        "everything is due again"
    );
    let report = persist_until_caught_up(&deployment).await;
    assert!(
        report.contains("handled 300, dead-lettered 1"),
        "the replay ran everything again: {report}"
    );
    assert_eq!(dump(&pool).await, before, "and changed no row");

    let list = run_ok(&deployment, &["dlq", "list"]);
    assert!(list.contains("3 dead letters"), "{list}");
    assert_eq!(list.matches(" decode ").count(), 2, "{list}");
    let index = list
        .lines()
        .find(|l| l.contains(" database "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let inspected = run_ok(&deployment, &["dlq", "inspect", &index]);
    assert!(
        inspected.contains("error kind:     database") && inspected.contains("9000000001"),
        "{inspected}"
    );

    let replayed = run_ok(
        &deployment,
        &["dlq", "replay", "--kind", "database", "--yes"],
    );
    assert!(
        replayed.contains("replayed 1 dead letters, passed over 2"),
        "{replayed}"
    );
    persist_until_caught_up(&deployment).await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM matches WHERE match_id = 9000000001"
        )
        .await,
        1,
        "the fixed event landed"
    );
    let again = run_ok(
        &deployment,
        &["dlq", "replay", "--kind", "database", "--yes"],
    );
    assert!(
        again.contains("replayed 0 dead letters"),
        "the outcome is remembered: {again}"
    );
    pool.close().await;
    deployment.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_operators_replay_groups_and_dead_letters() {
    operators_replay_groups_and_dead_letters("kafka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_operators_replay_groups_and_dead_letters() {
    operators_replay_groups_and_dead_letters("redis-streams").await;
}
