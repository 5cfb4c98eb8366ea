//! A member of a consumer group on Kafka: polls in batches, stores offsets
//! only for what the runner acked, and commits before partitions leave.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, MessageStream, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::batch::{BatchBuilder, TopicNames};
use crate::bus::{BusError, Delivery, Subscription};

/// Commits stored offsets before partitions leave, and counts rebalances so a
/// poll can tell that its assignment moved under it.
#[derive(Default)]
pub(super) struct GroupContext {
    pub(super) rebalances: Arc<AtomicU64>,
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
    pub(super) fn new(consumer: StreamConsumer<GroupContext>, rebalances: Arc<AtomicU64>) -> Self {
        Self {
            consumer,
            rebalances,
            assignment_cache: std::sync::Mutex::new(None),
            topics: TopicNames::default(),
        }
    }

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
