//! [`KafkaBus`]: topics, publishing, groups, lag and resets on librdkafka.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::subscription::{GroupContext, KafkaSubscription};
use super::{access, admin, GroupProtocol, KafkaConfig};
use crate::bus::{
    Bus, BusError, PartitionLag, Publisher, Record, ResetPosition, ResetTo, Subscription,
};

#[derive(Clone)]
pub struct KafkaBus {
    config: Arc<KafkaConfig>,
    producer: FutureProducer,
    readers: Arc<admin::Readers>,
}

impl KafkaBus {
    pub fn new(config: KafkaConfig) -> Result<Self, BusError> {
        let producer = producer_config(&config).create()?;
        Ok(Self {
            config: Arc::new(config),
            producer,
            readers: Arc::default(),
        })
    }

    fn base_config(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.config.brokers);
        for (key, value) in &self.config.client_overrides {
            client.set(key, value);
        }
        client
    }

    /// Under KIP-848 the broker owns assignment and session timeouts, and
    /// librdkafka refuses the classic protocol's client-side settings.
    fn set_group_protocol(&self, client: &mut ClientConfig) {
        match self.config.group_protocol {
            GroupProtocol::Consumer => {
                client.set("group.protocol", "consumer");
            }
            GroupProtocol::Classic => {
                let session_ms = self.config.session_timeout.as_millis();
                client
                    .set("group.protocol", "classic")
                    .set("partition.assignment.strategy", "cooperative-sticky")
                    .set("session.timeout.ms", session_ms.to_string())
                    .set(
                        "heartbeat.interval.ms",
                        heartbeat_ms(session_ms).to_string(),
                    );
            }
        }
    }

    /// Fails when the brokers refuse this client (wrong password, a broker
    /// certificate that does not verify): librdkafka would otherwise retry
    /// forever and only log it. A broker that is merely down is not an error
    /// here; clients wait for it as they always do.
    pub async fn check_access(&self) -> Result<(), BusError> {
        let client = self.base_config();
        let brokers = self.config.brokers.clone();
        tokio::task::spawn_blocking(move || access::probe(client, &brokers))
            .await
            .map_err(|e| BusError::Config(format!("access check failed: {e}")))?
    }

    /// Low and high watermark of a partition, for lag and tests.
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), BusError> {
        let consumer: BaseConsumer = self.base_config().create()?;
        Ok(consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?)
    }
}

/// A classic member's heartbeat: how soon it hears of a rebalance another
/// member's join or leave started, so every rebalance waits about this long
/// per round (cooperative-sticky takes two). Kafka's default of 3 s, and a
/// quarter of shorter sessions so a few missed beats never expire one.
fn heartbeat_ms(session_ms: u128) -> u128 {
    (session_ms / 4).clamp(100, 3_000)
}

fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "60000")
        .set("enable.idempotence", config.enable_idempotence.to_string());
    if !config.enable_idempotence {
        // Without idempotence, one request in flight keeps per-key order across retries.
        client.set("max.in.flight.requests.per.connection", "1");
    }
    for (key, value) in &config.client_overrides {
        client.set(key, value);
    }
    client
}

#[async_trait]
impl Bus for KafkaBus {
    fn name(&self) -> &'static str {
        "kafka"
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        let admin: AdminClient<DefaultClientContext> = self.base_config().create()?;
        let new_topic = NewTopic::new(
            topic,
            partitions.max(1) as i32,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics([&new_topic], &options).await? {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(BusError::Kafka(KafkaError::AdminOp(code))).inspect_err(|_| {
                        tracing::error!(topic = %name, error = %code, "creating topic failed");
                    })
                }
            }
        }
        Ok(())
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BusError> {
        Ok(Arc::new(self.clone()))
    }

    async fn check_health(&self) -> Result<(), BusError> {
        let (client, readers) = (self.base_config(), self.readers.clone());
        tokio::task::spawn_blocking(move || readers.check_cluster(&client))
            .await
            .map_err(|e| BusError::Config(format!("health task failed: {e}")))?
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>, BusError> {
        let (client, readers) = (self.base_config(), self.readers.clone());
        let (group, topics) = (group.to_string(), topics.to_vec());
        // librdkafka's metadata and offset calls block: keep them off the runtime.
        tokio::task::spawn_blocking(move || readers.group_lag(&client, &group, &topics))
            .await
            .map_err(|e| BusError::Config(format!("lag task failed: {e}")))?
    }

    async fn reset_group(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<ResetPosition>, BusError> {
        let client = self.base_config();
        let (group, topics) = (group.to_string(), topics.to_vec());
        tokio::task::spawn_blocking(move || admin::reset_group_offsets(client, &group, &topics, to))
            .await
            .map_err(|e| BusError::Config(format!("reset task failed: {e}")))?
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let context = GroupContext::default();
        let rebalances = context.rebalances.clone();
        let mut client = self.base_config();
        client
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "queued.max.messages.kbytes",
                self.config.max_prefetch_kbytes.to_string(),
            )
            // When the prefetch bound is reached librdkafka stops fetching and, by
            // default, looks again only after 1 s: a stall per bound's worth of backlog.
            .set("fetch.queue.backoff.ms", "20");
        self.set_group_protocol(&mut client);
        for (key, value) in &self.config.client_overrides {
            client.set(key, value);
        }
        let consumer: StreamConsumer<GroupContext> = client.create_with_context(context)?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topic_refs)?;
        Ok(Box::new(KafkaSubscription::new(consumer, rebalances)))
    }
}

#[async_trait]
impl Publisher for KafkaBus {
    async fn publish_batch(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        let sends = records.iter().map(|record| {
            let message = FutureRecord::to(topic)
                .key(&record.key)
                .payload(&record.payload);
            self.producer.send(message, Duration::from_secs(60))
        });
        for result in join_all(sends).await {
            result.map_err(|(err, _)| BusError::Kafka(err))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::heartbeat_ms;

    #[test]
    fn heartbeats_are_kafkas_three_seconds_or_a_quarter_of_a_shorter_session() {
        assert_eq!(heartbeat_ms(45_000), 3_000);
        assert_eq!(heartbeat_ms(6_000), 1_500);
        assert_eq!(heartbeat_ms(200), 100);
    }
}
