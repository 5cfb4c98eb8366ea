//! Delivery and membership: every event, per-key order, redelivery of what a
//! dead member left, splitting the work and rebalancing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{eventually, numbered_records, parse_number, unique, Backend, Recorder};
use crate::{all, config, drain, start, stop, topic_with, WAIT};

pub async fn delivers_every_event(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(300, 30)).await;
    let recorder = Arc::new(Recorder::default());
    let running = start(&topic, &unique("g"), recorder.clone(), config(&topic, "g")).await;
    assert!(
        eventually(WAIT, || recorder.distinct().len() == 300).await,
        "handled {} of 300",
        recorder.distinct().len()
    );
    let stats = stop(running).await;
    assert_eq!(recorder.distinct(), all(300));
    assert_eq!(stats.dead_lettered, 0);
}

pub async fn keeps_per_key_order(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(400, 7)).await;
    let recorder = Arc::new(Recorder::default());
    let running = start(&topic, &unique("g"), recorder.clone(), config(&topic, "g")).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 400).await);
    stop(running).await;
    let mut per_key: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for delivery in recorder.seen.lock().unwrap().iter() {
        let (_, seq) = parse_number(&delivery.payload).unwrap();
        per_key
            .entry(delivery.key.as_deref().unwrap().to_vec())
            .or_default()
            .push(seq);
    }
    assert_eq!(per_key.len(), 7);
    for (key, seqs) in per_key {
        let expected: Vec<usize> = (1..=seqs.len()).collect();
        assert_eq!(
            seqs,
            expected,
            "key {:?} out of order",
            String::from_utf8_lossy(&key)
        );
    }
}

pub async fn redelivers_what_a_dead_member_did_not_ack(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(120, 12)).await;
    let group = unique("g");
    let mut first = topic
        .bus
        .subscribe(&group, std::slice::from_ref(&topic.name))
        .await
        .unwrap();
    let mut taken = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while taken.is_empty() && tokio::time::Instant::now() < deadline {
        taken = first.poll(50, Duration::from_millis(500)).await.unwrap();
    }
    assert!(!taken.is_empty(), "the first member received nothing");
    drop(first); // dies without acking
    let seen = drain(&topic, &group, &topic.name, Duration::from_secs(6)).await;
    let numbers: BTreeSet<usize> = seen
        .iter()
        .filter_map(|d| parse_number(&d.payload))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        numbers,
        all(120),
        "everything, the unacked ones included, reaches the next member"
    );
    // And in order: a partition's unacked records come back before any later
    // record of it, which persist's "applied up to position P" relies on.
    let mut last_of_partition: HashMap<i32, usize> = HashMap::new();
    for delivery in &seen {
        let (number, _) = parse_number(&delivery.payload).unwrap();
        if let Some(last) = last_of_partition.insert(delivery.partition, number) {
            assert!(
                last < number,
                "partition {}: {number} came after {last}",
                delivery.partition
            );
        }
    }
}

pub async fn two_members_split_the_work(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(400, 40)).await;
    let group = unique("g");
    let slow = Duration::from_millis(50);
    let (a, b) = (
        Arc::new(Recorder::slow(slow)),
        Arc::new(Recorder::slow(slow)),
    );
    let mut small = config(&topic, &group);
    small.batch_size = 10;
    let run_a = start(&topic, &group, a.clone(), small.clone()).await;
    let run_b = start(&topic, &group, b.clone(), small).await;
    let done = || a.distinct().union(&b.distinct()).count() == 400;
    assert!(
        eventually(WAIT * 2, done).await,
        "handled {} + {}",
        a.distinct().len(),
        b.distinct().len()
    );
    stop(run_a).await;
    stop(run_b).await;
    assert!(
        !a.numbers().is_empty() && !b.numbers().is_empty(),
        "both members worked: {} and {}",
        a.numbers().len(),
        b.numbers().len()
    );
    let union: BTreeSet<usize> = a.distinct().union(&b.distinct()).copied().collect();
    assert_eq!(union, all(400));
}

pub async fn survives_a_rebalance_mid_run(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(500, 50)).await;
    let group = unique("g");
    let (a, b) = (
        Arc::new(Recorder::slow(Duration::from_millis(40))),
        Arc::new(Recorder::slow(Duration::from_millis(10))),
    );
    let mut small = config(&topic, &group);
    small.batch_size = 10;
    let run_a = start(&topic, &group, a.clone(), small.clone()).await;
    assert!(eventually(WAIT, || a.numbers().len() >= 50).await);
    let run_b = start(&topic, &group, b.clone(), small).await; // joins: partitions move
    assert!(
        eventually(WAIT, || !b.numbers().is_empty()).await,
        "the new member got work"
    );
    stop(run_a).await; // leaves: its partitions move again
    let done = || a.distinct().union(&b.distinct()).count() == 500;
    assert!(
        eventually(WAIT * 2, done).await,
        "handled {} + {}",
        a.distinct().len(),
        b.distinct().len()
    );
    stop(run_b).await;
    let union: BTreeSet<usize> = a.distinct().union(&b.distinct()).copied().collect();
    assert_eq!(union, all(500));
}
