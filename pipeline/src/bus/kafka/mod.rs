//! Kafka backend on rdkafka (bundled librdkafka).
//!
//! Follows rust-rdkafka's `at_least_once` example: auto-commit is on but
//! `enable.auto.offset.store` is off, so only offsets the runner *stored* after
//! the handler's effects were durable are ever committed. Partitions are
//! assigned cooperative-sticky; when some are revoked, the stored offsets are
//! committed synchronously first and deliveries of revoked partitions still in
//! hand are dropped (the new owner gets them again from the committed offset).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use futures::{FutureExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, MessageStream, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

mod access;
mod admin;
mod batch;

use batch::{BatchBuilder, TopicNames};

use super::{
    Bus, BusError, Delivery, PartitionLag, Publisher, Record, ResetPosition, ResetTo, Subscription,
};

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
                        (session_ms / 4).max(100).to_string(),
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
        Ok(Box::new(KafkaSubscription {
            consumer,
            rebalances,
            assignment_cache: std::sync::Mutex::new(None),
            topics: TopicNames::default(),
        }))
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

/// Commits stored offsets before partitions leave, and counts rebalances so a
/// poll can tell that its assignment moved under it.
#[derive(Default)]
struct GroupContext {
    rebalances: Arc<AtomicU64>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::info!(
                partitions = partitions.count(),
                "kafka partitions revoked; committing stored offsets"
            );
            match consumer.commit_consumer_state(CommitMode::Sync) {
                Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                Err(err) => tracing::warn!(error = %err, "commit before revoke failed"),
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Counted again once applied, so an assignment read in between is refreshed.
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Assign(partitions) = rebalance {
            tracing::info!(partitions = %describe(partitions), "kafka partitions assigned");
        }
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    let parts: Vec<String> = partitions
        .elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect();
    parts.join(",")
}

/// The partitions owned, as of a rebalance count.
type AssignmentAt = (u64, Vec<(String, i32)>);

pub struct KafkaSubscription {
    consumer: StreamConsumer<GroupContext>,
    rebalances: Arc<AtomicU64>,
    /// The assignment as of a rebalance count: asking librdkafka is a round trip
    /// to its main thread, too dear once per batch.
    assignment_cache: std::sync::Mutex<Option<AssignmentAt>>,
    topics: TopicNames,
}

impl KafkaSubscription {
    fn owned(&self) -> Vec<(String, i32)> {
        self.consumer
            .assignment()
            .map(|tpl| {
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Takes the next message of `stream`, waiting until `deadline` at most. One
/// stream serves a whole poll: each new one registers (and drops) a waker under
/// a lock. A message already queued is taken without reading the clock or
/// arming a timer.
async fn next_message<'a>(
    stream: &mut MessageStream<'a, GroupContext>,
    deadline: tokio::time::Instant,
) -> Result<Option<BorrowedMessage<'a>>, BusError> {
    let received = match stream.next().now_or_never() {
        Some(received) => received,
        None => match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_elapsed) => return Ok(None),
            Ok(received) => received,
        },
    };
    match received {
        None => Ok(None),
        Some(message) => Ok(Some(message?)),
    }
}

/// Adds the messages already queued to `builder`, up to `max` in all, without
/// waiting: no future, timer or waker per message.
fn take_queued(
    stream: &mut MessageStream<'_, GroupContext>,
    builder: &mut BatchBuilder,
    topics: &mut TopicNames,
    max: usize,
) -> Result<(), BusError> {
    let mut context = Context::from_waker(futures::task::noop_waker_ref());
    while builder.len() < max {
        match stream.poll_next_unpin(&mut context) {
            Poll::Ready(Some(message)) => builder.push(&message?, topics),
            // Empty (or a non-message event served): the caller waits properly.
            Poll::Ready(None) | Poll::Pending => break,
        }
    }
    Ok(())
}

/// The highest offset of each topic-partition among `deliveries`. Deliveries
/// come in runs of one partition, so the run in hand is checked first.
fn highest_offsets(deliveries: &[Delivery]) -> Vec<(&str, i32, i64)> {
    let mut highest: Vec<(&str, i32, i64)> = Vec::new();
    let mut current = 0;
    for delivery in deliveries {
        let Some(offset) = delivery.offset() else {
            continue;
        };
        let same = |h: &(&str, i32, i64)| h.1 == delivery.partition && *h.0 == *delivery.topic;
        if !highest.get(current).is_some_and(same) {
            current = match highest.iter().position(same) {
                Some(index) => index,
                None => {
                    highest.push((&delivery.topic, delivery.partition, offset));
                    highest.len() - 1
                }
            };
        }
        let entry = &mut highest[current];
        entry.2 = entry.2.max(offset);
    }
    highest
}

/// Commit errors that say this member no longer belongs to the group's
/// current generation (classic) or epoch (KIP-848).
fn membership_lost(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::IllegalGeneration
            | RDKafkaErrorCode::UnknownMemberId
            | RDKafkaErrorCode::RebalanceInProgress
            | RDKafkaErrorCode::FencedMemberEpoch
            | RDKafkaErrorCode::StaleMemberEpoch
    )
}

/// How long a poll keeps filling a batch once the first message is in hand.
const BATCH_LINGER: Duration = Duration::from_millis(5);

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let generation = self.rebalances.load(Ordering::SeqCst);
        let mut builder = BatchBuilder::new(max);
        let mut stream = self.consumer.stream();
        let first_by = tokio::time::Instant::now() + wait;
        let Some(first) = next_message(&mut stream, first_by).await? else {
            return Ok(Vec::new());
        };
        builder.push(&first, &mut self.topics);
        drop(first);
        let deadline = tokio::time::Instant::now() + BATCH_LINGER;
        loop {
            take_queued(&mut stream, &mut builder, &mut self.topics, max)?;
            if builder.len() >= max {
                break;
            }
            match next_message(&mut stream, deadline).await? {
                Some(message) => builder.push(&message, &mut self.topics),
                None => break,
            }
        }
        drop(stream);
        let mut batch = builder.finish();
        if self.rebalances.load(Ordering::SeqCst) != generation {
            // Partitions may have moved while we were fetching: what is no longer ours
            // is the new owner's to process, from the committed offset.
            let owned = self.owned();
            batch.retain(|d| {
                owned
                    .iter()
                    .any(|(t, p)| **t == *d.topic && *p == d.partition)
            });
        }
        Ok(batch)
    }

    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), BusError> {
        for (topic, partition, last) in highest_offsets(deliveries) {
            let mut tpl = TopicPartitionList::new();
            // Kafka commits the *next* offset to read.
            tpl.add_partition_offset(topic, partition, Offset::Offset(last + 1))?;
            match self.consumer.store_offsets(&tpl) {
                Ok(()) => {}
                // Revoked meanwhile: the new owner re-reads from the committed offset.
                Err(KafkaError::StoreOffset(RDKafkaErrorCode::State)) => {
                    tracing::debug!(%topic, partition, "ack for a partition no longer owned");
                }
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        let generation = self.rebalances.load(Ordering::SeqCst);
        let mut cache = self
            .assignment_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cache.as_ref() {
            Some((seen, owned)) if *seen == generation => owned.clone(),
            _ => {
                let owned = self.owned();
                *cache = Some((generation, owned.clone()));
                owned
            }
        }
    }

    async fn close(self: Box<Self>) -> Result<(), BusError> {
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            // The group moved on without us (a missed heartbeat, say): the new
            // owners read from the last committed offset, so nothing is lost.
            Err(KafkaError::ConsumerCommit(code)) if membership_lost(code) => {
                tracing::warn!(error = %code, "final commit refused: membership already lost");
            }
            Err(err) => return Err(err.into()),
        }
        self.consumer.unsubscribe();
        Ok(())
    }
}
