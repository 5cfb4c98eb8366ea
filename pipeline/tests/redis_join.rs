//! Redis Streams: a member that joins a busy group gets its share within a
//! poll or two of the others, not at their next heartbeat. Every read returns
//! the group's member count with the entries, and a member that sees it
//! change rebalances at its next poll. Heartbeats here are 10 s apart.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{numbered_records, redis_url, unique};
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::bus::{Bus, Subscription};

const PARTITIONS: u32 = 4;
/// A third of it is the heartbeat interval: 10 s.
const SESSION: Duration = Duration::from_secs(30);
/// Well under one heartbeat interval.
const REBALANCED_WITHIN: Duration = Duration::from_secs(3);

async fn poll_and_ack(member: &mut Box<dyn Subscription>) {
    let batch = member.poll(10, Duration::from_millis(50)).await.unwrap();
    member.ack(&batch).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_gets_its_share_before_the_next_heartbeat() {
    let bus = RedisStreamsBus::connect(RedisStreamsConfig {
        url: redis_url(),
        key_prefix: format!("{}:", unique("ssjoin")),
        default_partitions: PARTITIONS,
        session_timeout: SESSION,
        claim_idle: SESSION,
        ..RedisStreamsConfig::default()
    })
    .await
    .unwrap();
    let topic = unique("join");
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    bus.publisher()
        .await
        .unwrap()
        .publish_batch(&topic, &numbered_records(2_000, 97))
        .await
        .unwrap();
    let topics = [topic.clone()];

    let mut first = bus.subscribe("g", &topics).await.unwrap();
    poll_and_ack(&mut first).await;
    assert_eq!(first.assignment().len(), PARTITIONS as usize);

    let mut second = bus.subscribe("g", &topics).await.unwrap();
    let joined = Instant::now();
    while (first.assignment().len() != 2 || second.assignment().len() != 2)
        && joined.elapsed() < REBALANCED_WITHIN
    {
        poll_and_ack(&mut first).await;
        poll_and_ack(&mut second).await;
    }

    let (a, b): (BTreeSet<_>, BTreeSet<_>) = (
        first.assignment().into_iter().collect(),
        second.assignment().into_iter().collect(),
    );
    assert_eq!(
        (a.len(), b.len()),
        (2, 2),
        "after {:?} the members hold {a:?} and {b:?}",
        joined.elapsed()
    );
    assert!(a.is_disjoint(&b));
    first.close().await.unwrap();
    second.close().await.unwrap();
}
