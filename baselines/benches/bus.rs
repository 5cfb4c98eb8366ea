//! Bus benchmark: events/s for produce and consume on each backend, beside a
//! raw baseline on the same server in the same run, so our layer's overhead
//! shows as a ratio. Consume rates count from the first event received (group
//! join excluded). Kafka runs seven rounds per group protocol, alternating
//! whether ours or raw consumes first, and shows each round and the medians
//! (ratios: the median of the rounds' ratios). CPU is this process's, per event
//! consumed, librdkafka's threads included. Run: `cargo bench -p baselines --bench bus [-- EVENTS [memory|redis|kafka]...]`.
//! Needs the servers of `scripts/services.sh`.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baselines::ConsumeRate;
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
    let produce_per_s = produce(bus, topic, events).await;
    let (consume_per_s, consume_cpu_us_per_event) = consume(bus, topic, events).await;
    Figures {
        produce_per_s,
        consume_per_s,
        consume_cpu_us_per_event,
    }
}

/// Publishes `events` records through our layer; returns records per second.
async fn produce(bus: &dyn Bus, topic: &str, events: usize) -> f64 {
    bus.ensure_topic(topic, PARTITIONS).await.unwrap();
    let publisher = bus.publisher().await.unwrap();
    let all = records(events);
    let started = Instant::now();
    for chunk in all.chunks(PUBLISH_CHUNK) {
        publisher.publish_batch(topic, chunk).await.unwrap();
    }
    events as f64 / started.elapsed().as_secs_f64()
}

/// Runs a fresh group over `topic` until it has handled `events`; returns
/// events per second and CPU microseconds per event.
async fn consume(bus: &dyn Bus, topic: &str, events: usize) -> (f64, f64) {
    let publisher = bus.publisher().await.unwrap();
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
    let (cpu_before, started, first) =
        (baselines::process_cpu_seconds(), Instant::now(), handled());
    while handled() < events {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = baselines::process_cpu_seconds() - cpu_before;
    shutdown.cancel();
    task.await.unwrap().unwrap();
    let timed = (events - first) as f64;
    (timed / elapsed, cpu * 1e6 / timed)
}

/// Raw Redis: XADD pipelines, then XREADGROUP + XACK with a fresh group.
async fn raw_redis(url: &str, events: usize) -> (f64, ConsumeRate) {
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
    let (started, cpu) = (Instant::now(), baselines::process_cpu_seconds());
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
    let consume = ConsumeRate {
        per_second: events as f64 / started.elapsed().as_secs_f64(),
        cpu_us_per_event: (baselines::process_cpu_seconds() - cpu) * 1e6 / events as f64,
    };
    let _: i64 = redis::cmd("DEL")
        .arg(&stream)
        .query_async(&mut conn)
        .await
        .unwrap();
    (produce, consume)
}

/// One line of the table: ours beside the raw client, per backend.
struct Row {
    ours: Figures,
    raw_produce_per_s: Option<f64>,
    raw_consume: Option<ConsumeRate>,
}

impl Row {
    fn produce_ratio(&self) -> Option<f64> {
        Some(self.ours.produce_per_s / self.raw_produce_per_s?)
    }

    fn consume_ratio(&self) -> Option<f64> {
        Some(self.ours.consume_per_s / self.raw_consume?.per_second)
    }
}

const HEADER: [&str; 9] = [
    "backend",
    "produce/s",
    "raw prod/s",
    "ratio",
    "consume/s",
    "raw cons/s",
    "ratio",
    "cpu us/ev",
    "raw cpu us/ev",
];

/// Prints `row`; the ratios are given apart because over several rounds they
/// are the medians of each round's ratio, not the ratio of the medians.
fn print_row(backend: &str, row: &Row, produce_ratio: Option<f64>, consume_ratio: Option<f64>) {
    let cell = |v: Option<f64>, decimals: usize| {
        v.map_or("n/a".to_string(), |v| format!("{v:.decimals$}"))
    };
    let raw_consume = row.raw_consume.map(|r| r.per_second);
    let raw_cpu = row.raw_consume.map(|r| r.cpu_us_per_event);
    println!(
        "{backend:<14} {:>10.0} {:>10} {:>5} {:>10.0} {:>10} {:>5} {:>9.2} {:>13}",
        row.ours.produce_per_s,
        cell(row.raw_produce_per_s, 0),
        cell(produce_ratio, 2),
        row.ours.consume_per_s,
        cell(raw_consume, 0),
        cell(consume_ratio, 2),
        row.ours.consume_cpu_us_per_event,
        cell(raw_cpu, 2),
    );
}

fn print_single(backend: &str, row: &Row) {
    print_row(backend, row, row.produce_ratio(), row.consume_ratio());
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
        "{:<14} {:>10} {:>10} {:>5} {:>10} {:>10} {:>5} {:>9} {:>13}",
        HEADER[0],
        HEADER[1],
        HEADER[2],
        HEADER[3],
        HEADER[4],
        HEADER[5],
        HEADER[6],
        HEADER[7],
        HEADER[8]
    );

    if wanted("memory") {
        let memory = MemoryBus::new(PARTITIONS);
        let ours = measure(&memory, &format!("bench-{run}"), events).await;
        let row = Row {
            ours,
            raw_produce_per_s: None,
            raw_consume: None,
        };
        print_single("memory", &row);
    }
    if wanted("redis") {
        redis(&redis_url, &run, events).await;
    }
    if wanted("kafka") {
        kafka(&brokers, &run, events).await;
    }
}

/// Backends named after the event count (`memory`, `redis`, `kafka`) limit the
/// run to them; none named runs all.
fn wanted(backend: &str) -> bool {
    let named: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| ["memory", "redis", "kafka"].contains(&a.as_str()))
        .collect();
    named.is_empty() || named.iter().any(|n| n == backend)
}

async fn redis(redis_url: &str, run: &str, events: usize) {
    let redis_bus = RedisStreamsBus::connect(RedisStreamsConfig {
        url: redis_url.to_string(),
        key_prefix: format!("bench-{run}:"),
        ..RedisStreamsConfig::default()
    })
    .await
    .unwrap();
    let ours = measure(&redis_bus, "bench", events).await;
    let (raw_produce, raw_consume) = raw_redis(redis_url, events).await;
    let row = Row {
        ours,
        raw_produce_per_s: Some(raw_produce),
        raw_consume: Some(raw_consume),
    };
    print_single("redis-streams", &row);
}

async fn kafka(brokers: &str, run: &str, events: usize) {
    for group_protocol in [GroupProtocol::Classic, GroupProtocol::Consumer] {
        let kafka = KafkaBus::new(KafkaConfig {
            brokers: brokers.to_string(),
            group_protocol,
            ..KafkaConfig::default()
        })
        .unwrap();
        let mut rounds = Vec::new();
        for round in 0..KAFKA_ROUNDS {
            let topic = format!("bench-{run}-{group_protocol:?}-{round}");
            let produce_per_s = produce(&kafka, &topic, events).await;
            let raw_topic = format!("bench-raw-{run}-{group_protocol:?}-{round}");
            kafka.ensure_topic(&raw_topic, PARTITIONS).await.unwrap();
            let raw_produce =
                baselines::raw_kafka_produce(brokers, &raw_topic, &records(events), PUBLISH_CHUNK)
                    .await
                    .unwrap();
            // Both read the same topic; who reads first alternates, so neither
            // always meets a broker whose caches the other warmed.
            let (ours, raw_consume) = if round % 2 == 0 {
                let ours = consume(&kafka, &topic, events).await;
                (ours, raw_consume(brokers, &topic, events).await)
            } else {
                let raw = raw_consume(brokers, &topic, events).await;
                (consume(&kafka, &topic, events).await, raw)
            };
            let row = Row {
                ours: Figures {
                    produce_per_s,
                    consume_per_s: ours.0,
                    consume_cpu_us_per_event: ours.1,
                },
                raw_produce_per_s: Some(raw_produce),
                raw_consume: Some(raw_consume),
            };
            print_row(
                &format!("  round {round}"),
                &row,
                row.produce_ratio(),
                row.consume_ratio(),
            );
            rounds.push(row);
        }
        let name = format!("kafka {group_protocol:?}").to_lowercase();
        print_medians(&name, &rounds);
    }
}

/// A raw librdkafka consumer (assigned, no group) reading all of `topic`.
async fn raw_consume(brokers: &str, topic: &str, events: usize) -> ConsumeRate {
    let (brokers, topic) = (brokers.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        baselines::raw_kafka_consume(
            &brokers,
            &topic,
            PARTITIONS,
            events,
            KafkaConfig::default().max_prefetch_kbytes,
            Duration::from_secs(300),
        )
    })
    .await
    .unwrap()
    .unwrap()
}

/// Rounds alternate which of ours and raw consumes first, on fresh topics.
const KAFKA_ROUNDS: usize = 7;

/// The median of each column over `rounds`, and of each round's ratios.
fn print_medians(backend: &str, rounds: &[Row]) {
    let median = |pick: &dyn Fn(&Row) -> Option<f64>| {
        let mut values: Vec<f64> = rounds.iter().filter_map(pick).collect();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    };
    let medians = Row {
        ours: Figures {
            produce_per_s: median(&|r| Some(r.ours.produce_per_s)).unwrap_or(f64::NAN),
            consume_per_s: median(&|r| Some(r.ours.consume_per_s)).unwrap_or(f64::NAN),
            consume_cpu_us_per_event: median(&|r| Some(r.ours.consume_cpu_us_per_event))
                .unwrap_or(f64::NAN),
        },
        raw_produce_per_s: median(&|r| r.raw_produce_per_s),
        raw_consume: median(&|r| r.raw_consume.map(|c| c.per_second)).map(|per_second| {
            ConsumeRate {
                per_second,
                cpu_us_per_event: median(&|r| r.raw_consume.map(|c| c.cpu_us_per_event))
                    .unwrap_or(f64::NAN),
            }
        }),
    };
    print_row(
        backend,
        &medians,
        median(&Row::produce_ratio),
        median(&Row::consume_ratio),
    );
}
