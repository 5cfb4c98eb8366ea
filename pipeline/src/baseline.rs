//! Raw writes and reads of a topic with the plain clients, no scoutstream
//! layer: the baselines benchmarks print beside our figures, measured in the
//! same run.

use std::time::{Duration, Instant};

#[cfg(feature = "kafka")]
use rdkafka::consumer::{BaseConsumer, Consumer};
#[cfg(feature = "kafka")]
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
#[cfg(feature = "kafka")]
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::bus::BusError;
#[cfg(feature = "kafka")]
use crate::bus::Record;

/// Publishes `records` to `topic` with a bare librdkafka producer set up as our
/// Kafka bus sets its own (acks=all, idempotence, linger 5 ms), awaiting each
/// chunk of `chunk` sends as our `publish_batch` does; returns records per second.
#[cfg(feature = "kafka")]
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
#[cfg(feature = "kafka")]
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

/// How fast a consumer read, and the CPU this process spent per record doing it.
#[derive(Debug, Clone, Copy)]
pub struct ConsumeRate {
    pub per_second: f64,
    pub cpu_us_per_event: f64,
}

/// Reads every entry of `streams` with XREADGROUP (a fresh group) and XACKs it;
/// returns entries per second.
pub async fn raw_redis_consume(
    url: &str,
    streams: &[String],
    events: usize,
    timeout: Duration,
) -> Result<f64, BusError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let group = format!("raw-baseline-{}", uuid::Uuid::new_v4().simple());
    for stream in streams {
        let () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(stream)
            .arg(&group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await?;
    }
    let started = Instant::now();
    let mut got = 0;
    while got < events && started.elapsed() < timeout {
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(&group)
            .arg("raw")
            .arg("COUNT")
            .arg(1000)
            .arg("STREAMS")
            .arg(streams);
        for _ in streams {
            read.arg(">");
        }
        let reply: Option<redis::streams::StreamReadReply> = read.query_async(&mut conn).await?;
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let ids: Vec<&str> = key.ids.iter().map(|i| i.id.as_str()).collect();
            got += ids.len();
            if !ids.is_empty() {
                let _: i64 = redis::cmd("XACK")
                    .arg(&key.key)
                    .arg(&group)
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await?;
            }
        }
    }
    for stream in streams {
        let _: i64 = redis::cmd("XGROUP")
            .arg("DESTROY")
            .arg(stream)
            .arg(&group)
            .query_async(&mut conn)
            .await?;
    }
    Ok(got as f64 / started.elapsed().as_secs_f64())
}

/// User + system CPU seconds of this process so far, to the microsecond
/// (`CLOCK_PROCESS_CPUTIME_ID`; `/proc` ticks are too coarse for short runs).
pub fn process_cpu_seconds() -> f64 {
    cpu_time::ProcessTime::try_now()
        .map(|t| t.as_duration().as_secs_f64())
        .unwrap_or(0.0)
}

/// Peak resident memory of this process (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
