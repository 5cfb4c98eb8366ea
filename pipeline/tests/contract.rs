//! Bus contract: written once, run against every backend (in-memory always,
//! Apache Kafka with each consumer group protocol, Redis Streams against the
//! local Redis).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::{
    bus, eventually, numbered_records, parse_number, unique, Backend, Call, Recorder, PARTITIONS,
};
use pipeline::bus::{Bus, Delivery, Record, ResetTo};
use pipeline::runner::{RunStats, Runner, RunnerConfig};
use schemas::codec::Codec;
use schemas::DeadLetter;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

struct Topic {
    bus: Arc<dyn Bus>,
    name: String,
    dead_letters: String,
}

async fn topic_with(backend: Backend, records: &[Record]) -> Topic {
    let bus = bus(backend).await;
    let name = unique("contract");
    let dead_letters = format!("{name}.dlq");
    bus.ensure_topic(&name, PARTITIONS).await.unwrap();
    bus.ensure_topic(&dead_letters, 1).await.unwrap();
    if !records.is_empty() {
        bus.publisher()
            .await
            .unwrap()
            .publish_batch(&name, records)
            .await
            .unwrap();
    }
    Topic {
        bus,
        name,
        dead_letters,
    }
}

fn config(topic: &Topic, group: &str) -> RunnerConfig {
    RunnerConfig {
        batch_size: 50,
        batch_wait: Duration::from_millis(100),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        dead_letter_topic: topic.dead_letters.clone(),
        ..RunnerConfig::new(group)
    }
}

/// Starts a runner for `group`; cancel the token to drain and stop it.
async fn start(
    topic: &Topic,
    group: &str,
    handler: Arc<Recorder>,
    config: RunnerConfig,
) -> (CancellationToken, JoinHandle<RunStats>) {
    let subscription = topic
        .bus
        .subscribe(group, std::slice::from_ref(&topic.name))
        .await
        .unwrap();
    let dead_letters = topic.bus.publisher().await.unwrap();
    let runner = Runner::new(config, handler, dead_letters);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { runner.run(subscription, token).await.unwrap() });
    (shutdown, task)
}

async fn stop(running: (CancellationToken, JoinHandle<RunStats>)) -> RunStats {
    running.0.cancel();
    running.1.await.unwrap()
}

fn all(count: usize) -> BTreeSet<usize> {
    (0..count).collect()
}

/// Reads everything a group can get within `quiet` of silence, counted from
/// when the member owns partitions: a slow join must not pass for "nothing left".
async fn drain(topic: &Topic, group: &str, topic_name: &str, quiet: Duration) -> Vec<Delivery> {
    let mut subscription = topic
        .bus
        .subscribe(group, &[topic_name.to_string()])
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut joined = false;
    let mut idle_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + WAIT;
    while (!joined || idle_since.elapsed() < quiet) && tokio::time::Instant::now() < deadline {
        let batch = subscription
            .poll(100, Duration::from_millis(200))
            .await
            .unwrap();
        if !batch.is_empty() {
            idle_since = tokio::time::Instant::now();
            subscription.ack(&batch).await.unwrap();
            out.extend(batch);
        }
        if !joined && !subscription.assignment().is_empty() {
            joined = true;
            idle_since = tokio::time::Instant::now();
        }
    }
    assert!(joined, "the drain never joined the group {group}");
    subscription.close().await.unwrap();
    out
}

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

/// A handler that takes whole batches gets several partitions in one call,
/// each in order, and its failures are retried partition by partition.
pub async fn whole_batches_keep_order_and_retry_per_partition(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(400, 24)).await;
    let recorder = Arc::new(Recorder {
        whole_batches: true,
        ..Recorder::default()
    });
    recorder.flaky.lock().unwrap().extend([(7, 1), (8, 2)]);
    let group = unique("g");
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 400).await);
    let stats = stop(running).await;
    assert_eq!(stats.retries, 3);
    assert_eq!(stats.dead_lettered, 0);
    let calls = recorder.calls.lock().unwrap().clone();
    let partitions_of = |call: &[(i32, Option<usize>)]| -> BTreeSet<i32> {
        call.iter().map(|(partition, _)| *partition).collect()
    };
    assert!(
        calls.iter().any(|call| partitions_of(call).len() > 1),
        "no call held more than one partition"
    );
    // Record 8 is tried three times: once with its batch, then twice alone or
    // with the other failures of its partition, never with other partitions.
    let with_8: Vec<&Call> = calls
        .iter()
        .filter(|call| call.iter().any(|(_, n)| *n == Some(8)))
        .collect();
    assert_eq!(with_8.len(), 3);
    for retry in &with_8[1..] {
        assert_eq!(
            partitions_of(retry).len(),
            1,
            "a retry spanned partitions: {retry:?}"
        );
        assert!(
            retry.iter().all(|(_, n)| matches!(n, Some(7 | 8))),
            "{retry:?}"
        );
    }
    let mut per_key: HashMap<Vec<u8>, Vec<usize>> = HashMap::new();
    for delivery in recorder.seen.lock().unwrap().iter() {
        let (n, seq) = parse_number(&delivery.payload).unwrap();
        // The retried records come back after their successors: skip them.
        if n != 7 && n != 8 {
            per_key
                .entry(delivery.key.as_deref().unwrap().to_vec())
                .or_default()
                .push(seq);
        }
    }
    for (key, seqs) in per_key {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(
            seqs,
            sorted,
            "key {:?} out of order",
            String::from_utf8_lossy(&key)
        );
    }
}

pub async fn dead_letters_garbage_without_blocking(backend: Backend) {
    let mut records = numbered_records(60, 3);
    let garbage = [
        b"\x00\xff garbage".to_vec(),
        Vec::new(),
        b"{\"not\": \"numbered\"}".to_vec(),
    ];
    for (i, bytes) in garbage.iter().enumerate() {
        // Poison in the middle of each key's run: what follows must still be handled.
        records.insert(10 + i * 20, Record::new(format!("key-{i}"), bytes.clone()));
    }
    let topic = topic_with(backend, &records).await;
    let recorder = Arc::new(Recorder::default());
    let group = unique("g");
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 60).await);
    let stats = stop(running).await;
    assert_eq!(stats.dead_lettered, 3);
    let letters = drain(
        &topic,
        &unique("dlq-reader"),
        &topic.dead_letters,
        Duration::from_secs(3),
    )
    .await;
    let codec = Codec::default();
    let mut decoded: Vec<DeadLetter> = letters
        .iter()
        .map(|d| codec.decode::<DeadLetter>(&d.payload).unwrap())
        .collect();
    decoded.sort_by(|a, b| a.original.cmp(&b.original));
    let mut expected = garbage.to_vec();
    expected.sort();
    assert_eq!(
        decoded
            .iter()
            .map(|l| l.original.clone())
            .collect::<Vec<_>>(),
        expected
    );
    for letter in &decoded {
        assert_eq!(letter.topic, topic.name);
        assert_eq!(letter.consumer_group, group);
        assert_eq!(letter.error_kind, "decode");
        assert_eq!(letter.attempts, 1);
        assert!(letter.offset.is_some() || letter.stream_id.is_some());
    }
}

pub async fn commits_only_after_success(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(40, 4)).await;
    let group = unique("g");
    // Every record fails retriably for longer than the run lasts: nothing may be acked.
    let failing = Arc::new(Recorder::default());
    failing
        .flaky
        .lock()
        .unwrap()
        .extend((0..40).map(|n| (n, u32::MAX)));
    let mut patient = config(&topic, &group);
    patient.max_attempts = u32::MAX;
    let running = start(&topic, &group, failing.clone(), patient).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stats = stop(running).await;
    assert!(stats.retries > 0, "the handler was tried");
    assert_eq!(stats.handled, 0);
    // A second member of the group gets every record again, then handles them.
    let recorder = Arc::new(Recorder::default());
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(
        eventually(WAIT, || recorder.distinct().len() == 40).await,
        "got {} again",
        recorder.distinct().len()
    );
    stop(running).await;
    // Those were acked: a third member finds nothing left.
    let left = drain(&topic, &group, &topic.name, Duration::from_secs(4)).await;
    assert!(
        left.is_empty(),
        "{} records were redelivered after a successful ack",
        left.len()
    );
}

pub async fn retries_then_succeeds(backend: Backend) {
    let topic = topic_with(backend, &numbered_records(20, 2)).await;
    let recorder = Arc::new(Recorder::default());
    recorder.flaky.lock().unwrap().insert(5, 2);
    let group = unique("g");
    let running = start(&topic, &group, recorder.clone(), config(&topic, &group)).await;
    assert!(eventually(WAIT, || recorder.distinct().len() == 20).await);
    let stats = stop(running).await;
    assert_eq!(stats.retries, 2);
    assert_eq!(stats.dead_lettered, 0);
}

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

macro_rules! contract_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delivers_every_event() {
                super::delivers_every_event($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keeps_per_key_order() {
                super::keeps_per_key_order($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redelivers_what_a_dead_member_did_not_ack() {
                super::redelivers_what_a_dead_member_did_not_ack($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_members_split_the_work() {
                super::two_members_split_the_work($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn survives_a_rebalance_mid_run() {
                super::survives_a_rebalance_mid_run($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn whole_batches_keep_order_and_retry_per_partition() {
                super::whole_batches_keep_order_and_retry_per_partition($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dead_letters_garbage_without_blocking() {
                super::dead_letters_garbage_without_blocking($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn commits_only_after_success() {
                super::commits_only_after_success($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retries_then_succeeds() {
                super::retries_then_succeeds($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lag_shows_a_backlog_then_falls_to_zero() {
                super::lag_shows_a_backlog_then_falls_to_zero($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reset_moves_a_stopped_group() {
                super::reset_moves_a_stopped_group($backend).await
            }
        }
    };
}

contract_tests!(memory, Backend::Memory);
contract_tests!(redis_streams, Backend::Redis);
contract_tests!(kafka, Backend::Kafka);
contract_tests!(kafka_consumer_protocol, Backend::KafkaConsumerProtocol);
