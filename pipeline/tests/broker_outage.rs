//! The Apache Kafka broker SIGKILLed mid-run and restarted, while a producer
//! publishes and a runner consumes: both recover by themselves, every event is
//! handled, none is handled twice, and the group's commits catch up to the end.
//!
//! Each test starts a private broker (`scripts/kafka.sh` with its own ports and
//! state dir) so that killing it cannot disturb tests running beside it.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{eventually, numbered_records, unique, Recorder, PARTITIONS};
use pipeline::bus::kafka::{GroupProtocol, KafkaBus, KafkaConfig};
use pipeline::bus::Bus;
use pipeline::runner::{Runner, RunnerConfig};
use testkit::kafka::PrivateBroker;
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 30_000;
const BATCHES: usize = 60;

async fn broker_killed_mid_run(group_protocol: GroupProtocol) {
    common::init_logs();
    let broker = PrivateBroker::start();
    let bus: Arc<dyn Bus> = Arc::new(
        KafkaBus::new(KafkaConfig {
            brokers: broker.address(),
            // Kafka's default: a classic member that cannot reach the coordinator
            // for longer declares its partitions lost and re-reads what it had not
            // committed. The restart here takes 15-25 s.
            session_timeout: Duration::from_secs(45),
            ..common::kafka_config(group_protocol)
        })
        .unwrap(),
    );
    let topic = unique("outage");
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    bus.ensure_topic(&format!("{topic}.dlq"), 1).await.unwrap();
    let group = unique("g");

    let recorder = Arc::new(Recorder::default());
    let shutdown = CancellationToken::new();
    let runner = Runner::new(
        RunnerConfig {
            batch_size: 200,
            dead_letter_topic: format!("{topic}.dlq"),
            ..RunnerConfig::new(&group)
        },
        recorder.clone(),
        bus.publisher().await.unwrap(),
    );
    let subscription = bus
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let token = shutdown.clone();
    let consumer = tokio::spawn(async move { runner.run(subscription, token).await });

    // The producer keeps publishing through the outage; a batch that fails fails the test.
    let publisher = bus.publisher().await.unwrap();
    let producer_topic = topic.clone();
    let published = Arc::new(AtomicUsize::new(0));
    let published_count = published.clone();
    let producer = tokio::spawn(async move {
        let records = numbered_records(EVENTS, 97);
        for chunk in records.chunks(EVENTS / BATCHES) {
            publisher.publish_batch(&producer_topic, chunk).await?;
            published_count.fetch_add(chunk.len(), Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, pipeline::bus::BusError>(())
    });

    assert!(
        eventually(Duration::from_secs(60), || recorder.numbers().len()
            >= EVENTS / 6)
        .await,
        "the consumer made progress before the kill"
    );
    assert!(
        committed_some(&bus, &group, &topic, &published).await,
        "the group committed before the kill"
    );
    let handled_at_kill = recorder.numbers().len();
    let healthy_before = bus.check_health().await;
    broker.kill();
    let outage = Instant::now();
    // `/readyz` asks this: the broker is gone, and the check must say so.
    let healthy_during = bus.check_health().await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(outage.elapsed())).await;
    broker.restart();
    eprintln!(
        "broker down for {:.1}s; {handled_at_kill} handled at the kill",
        outage.elapsed().as_secs_f64()
    );

    producer
        .await
        .unwrap()
        .expect("the producer recovers by itself");
    let all_handled = eventually(Duration::from_secs(120), || {
        recorder.distinct().len() == EVENTS
    })
    .await;
    let lag_cleared = eventually_async_lag_zero(&bus, &group, &topic).await;
    let healthy_after = bus.check_health().await;
    shutdown.cancel();
    consumer.await.unwrap().unwrap();

    let mut deliveries: BTreeMap<usize, usize> = BTreeMap::new();
    for number in recorder.numbers() {
        *deliveries.entry(number).or_default() += 1;
    }
    let twice: Vec<_> = deliveries.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "{group_protocol:?}: {} handled, {} distinct, {} handled more than once",
        recorder.numbers().len(),
        deliveries.len(),
        twice.len()
    );
    assert!(healthy_before.is_ok(), "{healthy_before:?}");
    assert!(
        healthy_during.is_err(),
        "the health check answered ok with the broker killed"
    );
    assert!(healthy_after.is_ok(), "{healthy_after:?}");
    assert!(all_handled, "every event was handled after the restart");
    assert_eq!(deliveries.len(), EVENTS);
    assert!(
        twice.is_empty(),
        "no event is handled twice across a broker restart: {:?}",
        &twice[..twice.len().min(10)]
    );
    assert!(
        lag_cleared,
        "the group's commits caught up after the restart"
    );
}

/// True once the group's committed offsets add up to a sixth of the events.
async fn committed_some(
    bus: &Arc<dyn Bus>,
    group: &str,
    topic: &str,
    published: &AtomicUsize,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let published_before = published.load(Ordering::SeqCst) as u64;
        if let Ok(lag) = bus.lag(group, &[topic.to_string()]).await {
            let behind: u64 = lag.iter().map(|l| l.messages).sum();
            if !lag.is_empty() && published_before >= behind + (EVENTS / 6) as u64 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn eventually_async_lag_zero(bus: &Arc<dyn Bus>, group: &str, topic: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(lag) = bus.lag(group, &[topic.to_string()]).await {
            if !lag.is_empty() && lag.iter().all(|l| l.messages == 0) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_protocol_survives_a_broker_sigkill() {
    broker_killed_mid_run(GroupProtocol::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_survives_a_broker_sigkill() {
    broker_killed_mid_run(GroupProtocol::Consumer).await;
}
