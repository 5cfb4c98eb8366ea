//! The topic abstraction every backend implements with the same semantics:
//!
//! - a topic has a fixed number of partitions; a record's key picks its partition,
//!   so records with one key are delivered in the order they were published;
//! - consumers join a *group*; each partition is owned by one member at a time and
//!   ownership moves when members join or leave (a rebalance);
//! - a delivery stays un-acknowledged until [`Subscription::ack`]; whatever a member
//!   polled but did not ack is delivered again to whoever owns the partition next.
//!
//! Acks are positional: acking a delivery acknowledges it *and* (on Kafka) everything
//! before it in its partition, so callers ack only a done prefix of each partition.

pub mod kafka;
pub mod memory;
pub mod prefixed;
pub mod redis_streams;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

/// Where a delivery sits in its partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Position {
    /// Kafka or in-memory log offset.
    Offset(i64),
    /// Redis Streams entry id, e.g. `1700000000000-0`.
    StreamId(String),
}

/// One record as a consumer receives it.
#[derive(Debug, Clone, PartialEq)]
///
/// Topic, key and payload are shared buffers: a backend hands out slices of one
/// allocation per batch rather than three allocations per record.
pub struct Delivery {
    pub topic: Arc<str>,
    pub partition: i32,
    pub position: Position,
    pub key: Option<Bytes>,
    pub payload: Bytes,
    /// When the record was published, in unix milliseconds, if the backend knows.
    pub timestamp_ms: Option<i64>,
}

impl Delivery {
    pub fn offset(&self) -> Option<i64> {
        match self.position {
            Position::Offset(offset) => Some(offset),
            Position::StreamId(_) => None,
        }
    }

    pub fn stream_id(&self) -> Option<&str> {
        match &self.position {
            Position::StreamId(id) => Some(id),
            Position::Offset(_) => None,
        }
    }
}

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn new(key: impl Into<Vec<u8>>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            payload: payload.into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[cfg(feature = "kafka")]
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    #[error("invalid bus configuration: {0}")]
    Config(String),
    #[error("the subscription is closed")]
    Closed,
    /// The server refused this client: credentials or certificates are wrong.
    #[error("{0}")]
    Refused(String),
}

impl BusError {
    /// Whether trying again later may succeed (a broker or server that is briefly away).
    pub fn is_retriable(&self) -> bool {
        match self {
            #[cfg(feature = "kafka")]
            BusError::Kafka(err) => !matches!(
                err.rdkafka_error_code(),
                Some(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition)
            ),
            BusError::Redis(err) => {
                err.is_io_error()
                    || err.is_timeout()
                    || err.is_connection_dropped()
                    || redis_is_busy(err)
            }
            BusError::UnknownTopic(_)
            | BusError::Config(_)
            | BusError::Closed
            | BusError::Refused(_) => false,
        }
    }
}

/// Redis answering but not serving yet: loading its append-only file after a
/// restart (`LOADING`, seconds for a large one), or a failover under way. It
/// serves again by itself; giving up would stop the group for good. The
/// cache uses it too, to fall back to memory meanwhile.
pub fn redis_is_busy(err: &redis::RedisError) -> bool {
    use redis::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::BusyLoadingError
            | ErrorKind::TryAgain
            | ErrorKind::ClusterDown
            | ErrorKind::MasterDown
            | ErrorKind::ReadOnly
    )
}

/// Publishes records; `Ok` means the record is durable on the bus.
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn publish_batch(&self, topic: &str, records: &[Record]) -> Result<(), BusError>;

    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<(), BusError> {
        self.publish_batch(topic, &[Record::new(key, payload)])
            .await
    }
}

/// A member of a consumer group.
#[async_trait]
pub trait Subscription: Send {
    /// Waits up to `wait` for deliveries and returns at most `max` of them.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError>;

    /// Marks these deliveries as done; they will not be delivered to the group again.
    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), BusError>;

    /// Partitions this member owns now, as (topic, partition).
    fn assignment(&self) -> Vec<(String, i32)>;

    /// Leaves the group cleanly after committing what was acked.
    async fn close(self: Box<Self>) -> Result<(), BusError>;
}

/// How far a group is behind on one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records published but not yet acknowledged by the group.
    pub messages: u64,
    /// Age of the oldest record the group has not acknowledged; 0 when caught up.
    pub seconds: f64,
}

/// Where [`Bus::reset_group`] moves a group's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// Everything still on the bus is delivered again.
    Earliest,
    /// Everything published so far is skipped.
    Latest,
    /// Records published at or after this unix millisecond are delivered again.
    Timestamp(i64),
}

/// A group's new position on one partition after a reset.
#[derive(Debug, Clone, PartialEq)]
pub struct ResetPosition {
    pub topic: String,
    pub partition: i32,
    /// Kafka/in-memory: the next offset; Redis Streams: the last-delivered id.
    pub position: String,
}

/// A backend: creates topics, publishers and group members.
///
/// Every backend redelivers in order: when a partition changes owner, its
/// unacked records come back before any later record of it, so "applied up to
/// position P" is a valid summary of what a group has done (persist keeps
/// such positions). Kafka and the in-memory bus restart a new owner at the
/// committed offset; Redis Streams' new owner claims what the last one left
/// pending before it reads anything new. The contract test
/// `redelivers_what_a_dead_member_did_not_ack` checks it on each.
#[async_trait]
pub trait Bus: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the servers behind the bus answer now; `/readyz` asks every few
    /// seconds. The in-memory bus is always there.
    async fn check_health(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// Creates the topic with `partitions` partitions if it does not exist yet.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError>;

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BusError>;

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError>;

    /// The group's lag on every partition of `topics`, read from the bus itself
    /// (no member needs to be running).
    async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>, BusError>;

    /// Moves the group's committed position on every partition of `topics`.
    /// Run it while the group's members are stopped (Kafka refuses otherwise).
    async fn reset_group(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<ResetPosition>, BusError>;
}

/// Seconds between a record's publish time and now, never negative.
pub fn age_seconds(published_ms: Option<i64>) -> f64 {
    published_ms.map_or(0.0, |ms| ((now_ms() - ms).max(0) as f64) / 1000.0)
}

/// Partitioning of keys for the backends that partition themselves (in-memory,
/// Redis Streams): stable across processes and releases. Not Kafka's: on Kafka,
/// librdkafka's partitioner places records (CRC32 of the key by default), so a
/// key's partition number differs between the buses; per-key order holds on each.
pub fn partition_for_key(key: &[u8], partitions: u32) -> i32 {
    // FNV-1a: tiny, stable and well spread for short keys such as ids.
    let mut hash: u32 = 0x811c_9dc5;
    for byte in key {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1)) as i32
}

/// Splits `partitions` among `members` (both sorted): member i takes every n-th one.
/// Every backend that assigns partitions itself uses this, so all agree.
pub fn assign_round_robin<P: Clone>(
    partitions: &[P],
    members: usize,
    member_index: usize,
) -> Vec<P> {
    if members == 0 {
        return Vec::new();
    }
    partitions
        .iter()
        .enumerate()
        .filter(|(i, _)| i % members == member_index)
        .map(|(_, p)| p.clone())
        .collect()
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::BusError;
    use redis::{ErrorKind, RedisError};

    /// The 1,000,000-match chaos run on Redis Streams: after a Redis restart
    /// the AOF took seconds to load, enrich and cache polled meanwhile, got
    /// `LOADING` and stopped for good.
    #[test]
    fn a_redis_still_loading_its_data_is_waited_for() {
        let loading = RedisError::from((
            ErrorKind::BusyLoadingError,
            "Redis is loading the dataset in memory",
        ));
        assert!(BusError::Redis(loading).is_retriable());
        let wrong_type = RedisError::from((ErrorKind::TypeError, "WRONGTYPE"));
        assert!(!BusError::Redis(wrong_type).is_retriable());
    }
}
