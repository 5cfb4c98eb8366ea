//! Group positions: lag of a backlog, and resetting a stopped group.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use pipeline::bus::ResetTo;

use crate::common::{
    eventually, numbered_records, parse_number, unique, Backend, Recorder, PARTITIONS,
};
use crate::{config, drain, start, stop, topic_with, WAIT};

pub async fn lag_shows_a_backlog_then_falls_to_zero(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(120, 12)).await;
    let group = unique("g");
    let topics = [topic.name.clone()];
    // Consumers are stopped: the backlog is lag, in messages and in seconds.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = topic.bus.lag(&group, &topics).await.unwrap();
    assert_eq!(before.len(), PARTITIONS as usize, "one row per partition");
    assert_eq!(before.iter().map(|l| l.messages).sum::<u64>(), 120);
    let oldest = before.iter().map(|l| l.seconds).fold(0.0, f64::max);
    assert!(
        oldest >= 1.0,
        "the oldest unprocessed event is {oldest}s old"
    );
    // Every partition behind has its age read, not only the slowest one.
    for lag in before.iter().filter(|l| l.messages > 0) {
        assert!(
            lag.seconds >= 1.0,
            "partition {} is {}s behind",
            lag.partition,
            lag.seconds
        );
    }
    let recorder = Arc::new(Recorder::default());
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 120).await);
    // Kafka commits stored offsets on its auto-commit interval: allow a moment.
    let mut after = Vec::new();
    for _ in 0..40 {
        after = topic.bus.lag(&group, &topics).await.unwrap();
        if after.iter().all(|l| l.messages == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop(running).await;
    assert!(
        after.iter().all(|l| l.messages == 0 && l.seconds == 0.0),
        "lag after catching up: {after:?}"
    );
}

pub async fn reset_moves_a_stopped_group(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(60, 6)).await;
    let group = unique("g");
    let topics = [topic.name.clone()];
    let first = drain(&topic, &group, &topic.name, Duration::from_secs(3)).await;
    assert_eq!(first.len(), 60);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let cutoff_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let later = numbered_records(80, 6).split_off(60);
    topic
        .bus
        .publisher()
        .await
        .unwrap()
        .publish_batch(&topic.name, &later)
        .await
        .unwrap();

    topic
        .bus
        .reset_group(&group, &topics, ResetTo::Timestamp(cutoff_ms))
        .await
        .unwrap();
    let since = drain(&topic, &group, &topic.name, Duration::from_secs(3)).await;
    let numbers: BTreeSet<usize> = since
        .iter()
        .filter_map(|d| parse_number(&d.payload))
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        numbers,
        (60..80).collect(),
        "a reset to a time replays what came after it"
    );

    let moved = topic
        .bus
        .reset_group(&group, &topics, ResetTo::Earliest)
        .await
        .unwrap();
    assert_eq!(moved.len(), PARTITIONS as usize);
    let everything = drain(&topic, &group, &topic.name, Duration::from_secs(3)).await;
    assert_eq!(
        everything.len(),
        80,
        "a reset to earliest replays everything"
    );

    topic
        .bus
        .reset_group(&group, &topics, ResetTo::Earliest)
        .await
        .unwrap();
    topic
        .bus
        .reset_group(&group, &topics, ResetTo::Latest)
        .await
        .unwrap();
    let nothing = drain(&topic, &group, &topic.name, Duration::from_secs(2)).await;
    assert!(
        nothing.is_empty(),
        "a reset to latest skips the backlog, got {}",
        nothing.len()
    );
}
