//! Reads and moves a group's positions from outside the group: lag, replay
//! resets and the health check. librdkafka's calls here block, so callers run
//! them on blocking threads.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::bus::{age_seconds, BusError, PartitionLag, ResetPosition, ResetTo};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a lag read waits for the records whose age it reports.
const TIMESTAMP_WAIT: Duration = Duration::from_secs(2);
/// How long the health check waits for the cluster's metadata.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients kept between reads: the lag reporter and the health check ask
/// every few seconds, and a new client would connect to every broker again
/// each time. One per group whose lag is read, one for the cluster.
#[derive(Default)]
pub(super) struct Readers {
    by_group: Mutex<HashMap<String, Arc<Mutex<BaseConsumer>>>>,
    cluster: Mutex<Option<Arc<BaseConsumer>>>,
}

impl Readers {
    /// The cluster answers a metadata request: the brokers are up and accept us.
    pub(super) fn check_cluster(&self, client: &ClientConfig) -> Result<(), BusError> {
        let consumer = {
            let mut cluster = self.cluster.lock().unwrap_or_else(PoisonError::into_inner);
            match cluster.as_ref() {
                Some(consumer) => consumer.clone(),
                None => cluster.insert(Arc::new(client.create()?)).clone(),
            }
        };
        consumer.fetch_metadata(None, HEALTH_TIMEOUT)?;
        Ok(())
    }

    fn for_group(
        &self,
        client: &ClientConfig,
        group: &str,
    ) -> Result<Arc<Mutex<BaseConsumer>>, BusError> {
        let mut by_group = self.by_group.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(reader) = by_group.get(group) {
            return Ok(reader.clone());
        }
        let reader = Arc::new(Mutex::new(lag_reader(client.clone(), group)?));
        by_group.insert(group.to_string(), reader.clone());
        Ok(reader)
    }

    /// Lag per partition: high watermark minus the group's committed offset
    /// (the low watermark when it has none), and the age of the record at the
    /// committed offset.
    pub(super) fn group_lag(
        &self,
        client: &ClientConfig,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<PartitionLag>, BusError> {
        let reader = self.for_group(client, group)?;
        let consumer = reader.lock().unwrap_or_else(PoisonError::into_inner);
        let committed =
            consumer.committed_offsets(partitions_of(&consumer, topics)?, ADMIN_TIMEOUT)?;
        let mut lags = Vec::new();
        let mut behind = Vec::new();
        for element in committed.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = consumer.fetch_watermarks(topic, partition, ADMIN_TIMEOUT)?;
            let next = match element.offset() {
                Offset::Offset(offset) => offset,
                _ => low,
            };
            let messages = (high - next).max(0) as u64;
            if messages > 0 {
                behind.push((topic.to_string(), partition, next));
            }
            lags.push(PartitionLag {
                topic: topic.to_string(),
                partition,
                messages,
                seconds: 0.0,
            });
        }
        let published = timestamps_at(&consumer, &behind);
        for lag in lags.iter_mut().filter(|lag| lag.messages > 0) {
            let key = (lag.topic.clone(), lag.partition);
            lag.seconds = age_seconds(published.get(&key).copied());
        }
        Ok(lags)
    }
}

/// A client of `group` that never joins it: it reads committed offsets and
/// fetches single records by assignment, a little at a time.
fn lag_reader(mut client: ClientConfig, group: &str) -> Result<BaseConsumer, BusError> {
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("max.partition.fetch.bytes", "65536")
        .set("queued.max.messages.kbytes", "4096");
    Ok(client.create()?)
}

fn partitions_of(
    consumer: &BaseConsumer,
    topics: &[String],
) -> Result<TopicPartitionList, BusError> {
    let mut wanted = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            wanted.add_partition(topic, partition.id());
        }
    }
    Ok(wanted)
}

/// Publish times of the records at these offsets. Every partition is
/// assigned (not joined) at once and gives its first record; one slow
/// partition costs [`TIMESTAMP_WAIT`] once, not once per partition.
fn timestamps_at(
    consumer: &BaseConsumer,
    wanted: &[(String, i32, i64)],
) -> BTreeMap<(String, i32), i64> {
    let mut found = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (topic, partition, offset) in wanted {
        if assignment
            .add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .is_err()
        {
            return found;
        }
    }
    if wanted.is_empty() || consumer.assign(&assignment).is_err() {
        return found;
    }
    let deadline = Instant::now() + TIMESTAMP_WAIT;
    while found.len() < wanted.len() && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            if let Some(ms) = message.timestamp().to_millis() {
                found
                    .entry((message.topic().to_string(), message.partition()))
                    .or_insert(ms);
            }
        }
    }
    // Stop fetching until the next read.
    let _ = consumer.unassign();
    found
}

/// Commits the target offsets for the group from outside it (the broker accepts
/// that only while the group has no members).
pub(super) fn reset_group_offsets(
    mut client: ClientConfig,
    group: &str,
    topics: &[String],
    to: ResetTo,
) -> Result<Vec<ResetPosition>, BusError> {
    client
        .set("group.id", group)
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = client.create()?;
    let mut targets = TopicPartitionList::new();
    let mut moved = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), ADMIN_TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions())
            .map(|p| p.id())
            .collect();
        if partitions.is_empty() {
            return Err(BusError::UnknownTopic(topic.clone()));
        }
        for partition in partitions {
            let offset = target_offset(&consumer, topic, partition, to)?;
            targets.add_partition_offset(topic, partition, Offset::Offset(offset))?;
            moved.push(ResetPosition {
                topic: topic.clone(),
                partition,
                position: offset.to_string(),
            });
        }
    }
    consumer.commit(&targets, CommitMode::Sync)?;
    Ok(moved)
}

fn target_offset(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    to: ResetTo,
) -> Result<i64, BusError> {
    let (low, high) = consumer.fetch_watermarks(topic, partition, ADMIN_TIMEOUT)?;
    Ok(match to {
        ResetTo::Earliest => low,
        ResetTo::Latest => high,
        ResetTo::Timestamp(ms) => {
            let mut query = TopicPartitionList::new();
            query.add_partition_offset(topic, partition, Offset::Offset(ms))?;
            let found = consumer.offsets_for_times(query, ADMIN_TIMEOUT)?;
            // No record at or after the time: nothing to replay on this partition.
            match found.find_partition(topic, partition).map(|e| e.offset()) {
                Some(Offset::Offset(offset)) => offset,
                _ => high,
            }
        }
    })
}
