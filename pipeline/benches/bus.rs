//! Bus benchmark: events/s for produce and consume on each backend, beside a
//! raw baseline on the same server in the same run, so our layer's overhead
//! shows as a ratio. Consume rates count from the first event received (group
//! join excluded); Kafka runs five alternating rounds per group protocol and
//! shows the medians. Run: `cargo bench -p pipeline --bench bus [-- EVENTS]`.
//! Needs the servers of `scripts/services.sh`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pipeline::bus::kafka::{GroupProtocol, KafkaBus, KafkaConfig};
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::bus::{Bus, Delivery, Record};
use pipeline::runner::{Handler, HandlerError, Runner, RunnerConfig};
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 4;
const PUBLISH_CHUNK: usize = 1000;

struct Counter(AtomicUsize);

#[async_trait]
impl Handler for Counter {
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        self.0.fetch_add(deliveries.len(), Ordering::Relaxed);
        vec![Ok(()); deliveries.len()]
    }
}

fn records(events: usize) -> Vec<Record> {
    (0..events)
        .map(|i| Record::new(format!("account-{}", i % 1000), format!("{i:0>100}")))
        .collect()
}

struct Figures {
    produce_per_s: f64,
    consume_per_s: f64,
    consume_cpu_us_per_event: f64,
}

async fn measure(bus: &dyn Bus, topic: &str, events: usize) -> Figures {
    bus.ensure_topic(topic, PARTITIONS).await.unwrap();
    let publisher = bus.publisher().await.unwrap();
    let all = records(events);
    let started = Instant::now();
    for chunk in all.chunks(PUBLISH_CHUNK) {
        publisher.publish_batch(topic, chunk).await.unwrap();
    }
    let produce_per_s = events as f64 / started.elapsed().as_secs_f64();

    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    let config = RunnerConfig {
        batch_size: 1000,
        batch_wait: Duration::from_millis(50),
        dead_letter_topic: format!("{topic}.dlq"),
        ..RunnerConfig::new(format!("{topic}-bench"))
    };
    let runner = Runner::new(config, counter.clone(), publisher);
    let subscription = bus
        .subscribe(&format!("{topic}-bench"), &[topic.to_string()])
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { runner.run(subscription, token).await });
    // The clock starts at the first event handled: joining the group is not
    // throughput, and the raw baselines do not join one.
    let handled = || counter.0.load(Ordering::Relaxed);
    while handled() == 0 {
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let (cpu_before, started, first) = (
        pipeline::baseline::process_cpu_seconds(),
        Instant::now(),
        handled(),
    );
    while handled() < events {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = pipeline::baseline::process_cpu_seconds() - cpu_before;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let timed = (events - first) as f64;
    Figures {
        produce_per_s,
        consume_per_s: timed / elapsed,
        consume_cpu_us_per_event: cpu * 1e6 / timed,
    }
}

/// Raw Redis: XADD pipelines, then XREADGROUP + XACK with a fresh group.
async fn raw_redis(url: &str, events: usize) -> (f64, f64) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("raw-bench-{}", uuid::Uuid::new_v4().simple());
    let all = records(events);
    let started = Instant::now();
    for chunk in all.chunks(PUBLISH_CHUNK) {
        let mut pipe = redis::pipe();
        for record in chunk {
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("*")
                .arg("k")
                .arg(&record.key)
                .arg("v")
                .arg(&record.payload)
                .ignore();
        }
        let () = pipe.query_async(&mut conn).await.unwrap();
    }
    let produce = events as f64 / started.elapsed().as_secs_f64();
    let () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    let mut got = 0;
    while got < events {
        let reply: redis::streams::StreamReadReply = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg("c")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">")
            .query_async(&mut conn)
            .await
            .unwrap();
        let ids: Vec<String> = reply
            .keys
            .iter()
            .flat_map(|k| k.ids.iter().map(|i| i.id.clone()))
            .collect();
        got += ids.len();
        let _: i64 = redis::cmd("XACK")
            .arg(&stream)
            .arg("g")
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let consume = events as f64 / started.elapsed().as_secs_f64();
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    (produce, consume)
}

fn row(backend: &str, ours: &Figures, raw_produce: Option<f64>, raw_consume: Option<f64>) {
    let cell = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{v:.0}"));
    let ratio = |ours: f64, raw: Option<f64>| {
        raw.map_or("n/a".to_string(), |raw| format!("{:.2}", ours / raw))
    };
    println!(
        "{backend:<14} {:>12.0} {:>12} {:>7} {:>12.0} {:>12} {:>7} {:>10.1}",
        ours.produce_per_s,
        cell(raw_produce),
        ratio(ours.produce_per_s, raw_produce),
        ours.consume_per_s,
        cell(raw_consume),
        ratio(ours.consume_per_s, raw_consume),
        ours.consume_cpu_us_per_event,
    );
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50_000);
    let brokers =
        std::env::var("SCOUTSTREAM_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let redis_url =
        std::env::var("SCOUTSTREAM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let run = uuid::Uuid::new_v4().simple().to_string();
    println!("scoutstream bus benchmark: {events} events of 100 bytes, {PARTITIONS} partitions, 1000 keys");
    println!(
        "{:<14} {:>12} {:>12} {:>7} {:>12} {:>12} {:>7} {:>10}",
        "backend",
        "produce/s",
        "raw prod/s",
        "ratio",
        "consume/s",
        "raw cons/s",
        "ratio",
        "cpu us/ev"
    );

    let memory = MemoryBus::new(PARTITIONS);
    let figures = measure(&memory, &format!("bench-{run}"), events).await;
    row("memory", &figures, None, None);

    let redis_bus = RedisStreamsBus::connect(RedisStreamsConfig {
        url: redis_url.clone(),
        key_prefix: format!("bench-{run}:"),
        ..RedisStreamsConfig::default()
    })
    .await
    .unwrap();
    let figures = measure(&redis_bus, "bench", events).await;
    let (raw_produce, raw_consume) = raw_redis(&redis_url, events).await;
    row(
        "redis-streams",
        &figures,
        Some(raw_produce),
        Some(raw_consume),
    );

    for group_protocol in [GroupProtocol::Classic, GroupProtocol::Consumer] {
        let kafka = KafkaBus::new(KafkaConfig {
            brokers: brokers.clone(),
            group_protocol,
            ..KafkaConfig::default()
        })
        .unwrap();
        let mut rounds = Vec::new();
        for round in 0..KAFKA_ROUNDS {
            let topic = format!("bench-{run}-{group_protocol:?}-{round}");
            let figures = measure(&kafka, &topic, events).await;
            let raw_topic = format!("bench-raw-{run}-{group_protocol:?}-{round}");
            kafka.ensure_topic(&raw_topic, PARTITIONS).await.unwrap();
            let raw_produce = pipeline::baseline::raw_kafka_produce(
                &brokers,
                &raw_topic,
                &records(events),
                PUBLISH_CHUNK,
            )
            .await
            .unwrap();
            let consume_from = brokers.clone();
            let raw_consume = tokio::task::spawn_blocking(move || {
                pipeline::baseline::raw_kafka_consume(
                    &consume_from,
                    &topic,
                    PARTITIONS,
                    events,
                    KafkaConfig::default().max_prefetch_kbytes,
                    Duration::from_secs(300),
                )
            })
            .await
            .unwrap()
            .unwrap();
            rounds.push((figures, raw_produce, raw_consume));
        }
        let (figures, raw_produce, raw_consume) = medians(&rounds);
        let name = format!("kafka {group_protocol:?}").to_lowercase();
        row(&name, &figures, Some(raw_produce), Some(raw_consume));
    }
}

/// Rounds alternate ours and raw on fresh topics; each column's median is shown.
const KAFKA_ROUNDS: usize = 5;

fn medians(rounds: &[(Figures, f64, f64)]) -> (Figures, f64, f64) {
    let median = |pick: &dyn Fn(&(Figures, f64, f64)) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    (
        Figures {
            produce_per_s: median(&|r| r.0.produce_per_s),
            consume_per_s: median(&|r| r.0.consume_per_s),
            consume_cpu_us_per_event: median(&|r| r.0.consume_cpu_us_per_event),
        },
        median(&|r| r.1),
        median(&|r| r.2),
    )
}
