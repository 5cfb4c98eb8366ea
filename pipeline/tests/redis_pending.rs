//! Redis Streams: what a dead member left pending comes back in time. A member
//! holding 10,000 pending entries dies (no ack, no leave); another member of
//! the group must have them all within `claim_idle` + 5 s, and `XPENDING` ends
//! at 0. Entries trimmed away while pending are dropped, not claimed forever.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{numbered_records, parse_number, redis_url, unique, PARTITIONS};
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::bus::Bus;

const PENDING: usize = 10_000;

fn config(prefix: &str) -> RedisStreamsConfig {
    RedisStreamsConfig {
        url: redis_url(),
        key_prefix: prefix.to_string(),
        default_partitions: PARTITIONS,
        session_timeout: Duration::from_secs(3),
        claim_idle: Duration::from_secs(5),
        ..RedisStreamsConfig::default()
    }
}

async fn publish(bus: &RedisStreamsBus, topic: &str, count: usize) {
    let publisher = bus.publisher().await.unwrap();
    for chunk in numbered_records(count, 97).chunks(1000) {
        publisher.publish_batch(topic, chunk).await.unwrap();
    }
}

/// A member that takes `count` entries and dies holding them: no ack, no
/// leave, no more heartbeats.
async fn die_holding(bus: &RedisStreamsBus, group: &str, topic: &str, count: usize) {
    let mut member = bus.subscribe(group, &[topic.to_string()]).await.unwrap();
    let mut held = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while held < count && Instant::now() < deadline {
        held += member
            .poll(1000, Duration::from_secs(1))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(held, count, "the doomed member took every entry");
    std::mem::forget(member);
}

/// Entries pending in the group over every partition of `topic` (`XPENDING`).
async fn pending(prefix: &str, group: &str, topic: &str) -> u64 {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(format!("{prefix}{topic}:{partition}"))
            .arg(group)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let redis::Value::Array(fields) = summary {
            total += redis::from_redis_value::<u64>(&fields[0]).unwrap();
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_members_pending_entries_come_back_in_time_and_trimmed_ones_do_not_loop() {
    let prefix = format!("{}:", unique("sspending"));
    let config = config(&prefix);
    let bus = RedisStreamsBus::connect(config.clone()).await.unwrap();
    let topic = unique("pending");
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    publish(&bus, &topic, PENDING).await;
    let group = unique("g");

    die_holding(&bus, &group, &topic, PENDING).await;
    let died = Instant::now();
    assert_eq!(pending(&prefix, &group, &topic).await, PENDING as u64);
    let limit = config.claim_idle + Duration::from_secs(5);
    let mut survivor = bus
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mut reclaimed = BTreeSet::new();
    while reclaimed.len() < PENDING && died.elapsed() < limit + Duration::from_secs(30) {
        let batch = survivor
            .poll(500, Duration::from_millis(500))
            .await
            .unwrap();
        survivor.ack(&batch).await.unwrap();
        reclaimed.extend(
            batch
                .iter()
                .filter_map(|d| parse_number(&d.payload))
                .map(|(n, _)| n),
        );
    }
    let took = died.elapsed();
    eprintln!("{PENDING} abandoned entries reclaimed {took:?} after their holder died");
    assert_eq!(
        reclaimed.len(),
        PENDING,
        "every abandoned entry came back within {took:?}"
    );
    assert_eq!(reclaimed.last(), Some(&(PENDING - 1)));
    assert!(
        took <= limit,
        "reclaiming took {took:?}, more than claim_idle + 5 s"
    );
    assert_eq!(pending(&prefix, &group, &topic).await, 0);

    // Entries trimmed away while a dead member holds them: XAUTOCLAIM drops
    // them from the pending list instead of handing them out again and again.
    publish(&bus, &topic, 500).await;
    die_holding(&bus, &group, &topic, 500).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for partition in 0..PARTITIONS {
        let _: i64 = redis::cmd("XTRIM")
            .arg(format!("{prefix}{topic}:{partition}"))
            .arg("MAXLEN")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let trimmed = Instant::now();
    let mut delivered = 0;
    while pending(&prefix, &group, &topic).await > 0 && trimmed.elapsed() < limit * 2 {
        let batch = survivor
            .poll(500, Duration::from_millis(500))
            .await
            .unwrap();
        delivered += batch.len();
        survivor.ack(&batch).await.unwrap();
    }
    eprintln!(
        "trimmed pending entries gone {:?} after the trim",
        trimmed.elapsed()
    );
    assert_eq!(delivered, 0, "trimmed entries are not delivered");
    assert_eq!(
        pending(&prefix, &group, &topic).await,
        0,
        "trimmed entries leave the pending list"
    );
    assert!(
        trimmed.elapsed() <= limit,
        "the pending list emptied within claim_idle + 5 s"
    );
    survivor.close().await.unwrap();
}
