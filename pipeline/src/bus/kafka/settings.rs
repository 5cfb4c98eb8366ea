//! What a Kafka bus is configured with: plain data, compiled without librdkafka
//! so `[bus.kafka]` parses (and names its fields) in every build.

use std::collections::BTreeMap;
use std::time::Duration;

/// Which consumer group protocol members speak (`group.protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProtocol {
    /// The classic protocol, with cooperative-sticky assignment on the client.
    #[default]
    Classic,
    /// KIP-848: the broker assigns and keeps the session timeout (Kafka 4.0+).
    Consumer,
}

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub brokers: String,
    pub replication_factor: i32,
    /// Classic protocol: a member silent for this long is dropped from its group
    /// by the broker, and a member that cannot reach the coordinator for this
    /// long declares its partitions lost and re-reads what it had not committed.
    /// Kafka's own default (45 s) rides out a broker restart without redelivery.
    pub session_timeout: Duration,
    pub group_protocol: GroupProtocol,
    /// Upper bound of prefetched messages held in memory per consumer.
    pub max_prefetch_kbytes: u32,
    pub enable_idempotence: bool,
    /// Extra librdkafka properties, applied last (e.g. security settings).
    pub client_overrides: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            replication_factor: 1,
            session_timeout: Duration::from_secs(45),
            group_protocol: GroupProtocol::Classic,
            max_prefetch_kbytes: 16 * 1024,
            enable_idempotence: true,
            client_overrides: BTreeMap::new(),
        }
    }
}
