//! Backends and helpers shared by the contract, crash and lag tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipeline::bus::kafka::{GroupProtocol, KafkaBus, KafkaConfig};
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::bus::{Bus, Delivery, Record};
use pipeline::runner::{Handler, HandlerError};

pub const PARTITIONS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    /// Apache Kafka, classic group protocol (cooperative-sticky).
    Kafka,
    /// Apache Kafka, the KIP-848 `consumer` group protocol.
    KafkaConsumerProtocol,
    Redis,
}

pub fn unique(name: &str) -> String {
    format!(
        "{name}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn kafka_brokers() -> String {
    std::env::var("SCOUTSTREAM_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn redis_url() -> String {
    std::env::var("SCOUTSTREAM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A bus for one test: its own key prefix on Redis, short timeouts so dead
/// members are noticed within seconds.
pub async fn bus(backend: Backend) -> Arc<dyn Bus> {
    init_logs();
    match backend {
        Backend::Memory => Arc::new(MemoryBus::new(PARTITIONS)),
        Backend::Kafka => Arc::new(KafkaBus::new(kafka_config(GroupProtocol::Classic)).unwrap()),
        Backend::KafkaConsumerProtocol => {
            Arc::new(KafkaBus::new(kafka_config(GroupProtocol::Consumer)).unwrap())
        }
        Backend::Redis => Arc::new(redis_bus(&format!("{}:", unique("sstest"))).await),
    }
}

/// Kafka settings a user would have (batching on), with a short session timeout
/// so dead members are noticed within seconds. Under the `consumer` protocol the
/// test broker's `group.consumer.session.timeout.ms` (10 s) applies instead.
pub fn kafka_config(group_protocol: GroupProtocol) -> KafkaConfig {
    KafkaConfig {
        brokers: kafka_brokers(),
        session_timeout: Duration::from_secs(6),
        group_protocol,
        ..KafkaConfig::default()
    }
}

pub async fn redis_bus(key_prefix: &str) -> RedisStreamsBus {
    RedisStreamsBus::connect(RedisStreamsConfig {
        url: redis_url(),
        key_prefix: key_prefix.to_string(),
        default_partitions: PARTITIONS,
        session_timeout: Duration::from_millis(1500),
        claim_idle: Duration::from_millis(1000),
        ..RedisStreamsConfig::default()
    })
    .await
    .unwrap()
}

/// Numbered records `n:{i}` over `keys` keys, with a per-key sequence in the payload.
pub fn numbered_records(count: usize, keys: usize) -> Vec<Record> {
    let mut per_key: HashMap<usize, usize> = HashMap::new();
    (0..count)
        .map(|i| {
            let key = i % keys;
            let seq = per_key.entry(key).or_default();
            *seq += 1;
            Record::new(format!("key-{key}"), format!("n:{i}:{}", *seq))
        })
        .collect()
}

pub fn parse_number(payload: &[u8]) -> Option<(usize, usize)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.strip_prefix("n:")?.split(':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// One handler call: each delivery's partition and number.
pub type Call = Vec<(i32, Option<usize>)>;

/// Records what it handles; payloads that are not `n:{i}:{seq}` fail permanently.
#[derive(Default)]
pub struct Recorder {
    pub seen: Mutex<Vec<Delivery>>,
    pub delay_per_batch: Duration,
    /// Numbers that fail with a retriable error this many times before succeeding.
    pub flaky: Mutex<HashMap<usize, u32>>,
    /// Asks the runner for whole batches ([`Handler::takes_whole_batches`]).
    pub whole_batches: bool,
    /// The (partition, number) of each call's deliveries, in call order.
    pub calls: Mutex<Vec<Call>>,
}

impl Recorder {
    pub fn slow(delay_per_batch: Duration) -> Self {
        Self {
            delay_per_batch,
            ..Self::default()
        }
    }

    pub fn numbers(&self) -> Vec<usize> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|d| parse_number(&d.payload))
            .map(|(n, _)| n)
            .collect()
    }

    pub fn distinct(&self) -> std::collections::BTreeSet<usize> {
        self.numbers().into_iter().collect()
    }
}

#[async_trait]
impl Handler for Recorder {
    fn takes_whole_batches(&self) -> bool {
        self.whole_batches
    }

    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        self.calls.lock().unwrap().push(
            deliveries
                .iter()
                .map(|d| (d.partition, parse_number(&d.payload).map(|(n, _)| n)))
                .collect(),
        );
        if !self.delay_per_batch.is_zero() {
            tokio::time::sleep(self.delay_per_batch).await;
        }
        let mut out = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let Some((n, _)) = parse_number(&delivery.payload) else {
                out.push(Err(HandlerError::permanent(
                    "decode",
                    "payload is not a numbered record",
                )));
                continue;
            };
            let mut flaky = self.flaky.lock().unwrap();
            if let Some(left) = flaky.get_mut(&n) {
                if *left > 0 {
                    *left -= 1;
                    out.push(Err(HandlerError::retriable(
                        "flaky",
                        format!("record {n} fails for now"),
                    )));
                    continue;
                }
            }
            self.seen.lock().unwrap().push(delivery.clone());
            out.push(Ok(()));
        }
        out
    }
}

/// Polls `until` returns true or the timeout passes.
pub async fn eventually(timeout: Duration, mut until: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if until() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until()
}

/// Logs go to the test's output, filtered by RUST_LOG.
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
