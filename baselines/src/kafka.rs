//! A bare librdkafka producer and consumer doing what our Kafka bus does.

use std::time::{Duration, Instant};

use pipeline::bus::{BusError, Record};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::process::process_cpu_seconds;
use crate::ConsumeRate;

/// Publishes `records` to `topic` with a bare librdkafka producer set up as our
/// Kafka bus sets its own (acks=all, idempotence, linger 5 ms), awaiting each
/// chunk of `chunk` sends as our `publish_batch` does; returns records per second.
pub async fn raw_kafka_produce(
    brokers: &str,
    topic: &str,
    records: &[Record],
    chunk: usize,
) -> Result<f64, BusError> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create()?;
    // Connect and learn the topic's leaders before the clock starts, as a
    // long-lived producer (ours) already has.
    producer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let started = Instant::now();
    for slice in records.chunks(chunk.max(1)) {
        let sends = slice.iter().map(|r| {
            producer.send(
                FutureRecord::to(topic).key(&r.key).payload(&r.payload),
                Duration::from_secs(60),
            )
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(err, _)| BusError::Kafka(err))?;
        }
    }
    Ok(records.len() as f64 / started.elapsed().as_secs_f64())
}

/// Reads `events` records of `topic` from the beginning with a bare librdkafka
/// consumer (assigned, no group, no commits) whose prefetch is bounded as ours
/// is (`prefetch_kbytes`); returns records per second from the first record on
/// (connecting is not counted, as it is not for ours).
pub fn raw_kafka_consume(
    brokers: &str,
    topic: &str,
    partitions: u32,
    events: usize,
    prefetch_kbytes: u32,
    timeout: Duration,
) -> Result<ConsumeRate, BusError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-raw-baseline"))
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", prefetch_kbytes.to_string())
        .set("fetch.queue.backoff.ms", "20")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions as i32 {
        tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut started = None;
    let mut got = 0;
    while got < events && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            std::hint::black_box(message.payload());
            started.get_or_insert_with(|| (Instant::now(), process_cpu_seconds()));
            got += 1;
        }
    }
    let timed = got.saturating_sub(1) as f64;
    Ok(match started {
        None => ConsumeRate {
            per_second: 0.0,
            cpu_us_per_event: f64::NAN,
        },
        Some((at, cpu)) => ConsumeRate {
            per_second: timed / at.elapsed().as_secs_f64(),
            cpu_us_per_event: (process_cpu_seconds() - cpu) * 1e6 / timed,
        },
    })
}
