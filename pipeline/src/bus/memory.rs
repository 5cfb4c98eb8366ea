//! The embedded bus: an in-process, partitioned log with consumer groups.
//!
//! It keeps Kafka's model so the rest of the pipeline cannot tell the difference:
//! per-partition offsets, one owner per partition inside a group, committed
//! offsets per group, and redelivery from the committed offset after a member
//! leaves or dies (drops its subscription) without acking.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;

use super::{
    age_seconds, assign_round_robin, now_ms, partition_for_key, Bus, BusError, Delivery,
    PartitionLag, Position, Publisher, Record, ResetPosition, ResetTo, Subscription,
};

#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
    default_partitions: u32,
}

struct Shared {
    state: Mutex<State>,
    /// Woken on every publish and every rebalance.
    changed: Notify,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Vec<Vec<StoredRecord>>>,
    groups: HashMap<String, Group>,
    next_member_id: u64,
}

struct StoredRecord {
    key: Bytes,
    payload: Bytes,
    timestamp_ms: i64,
}

#[derive(Default)]
struct Group {
    /// Member id → the topics it subscribed to.
    members: BTreeMap<u64, Vec<String>>,
    committed: HashMap<(String, i32), i64>,
    /// Bumped on every join and leave; members re-read their assignment when it moves.
    generation: u64,
}

impl Group {
    fn assignment_of(
        &self,
        member: u64,
        topics: &HashMap<String, Vec<Vec<StoredRecord>>>,
    ) -> Vec<(String, i32)> {
        let subscribed: Vec<&String> = self
            .members
            .get(&member)
            .map(|t| t.iter().collect())
            .unwrap_or_default();
        let mut partitions: Vec<(String, i32)> = subscribed
            .iter()
            .flat_map(|topic| {
                let count = topics.get(*topic).map_or(0, Vec::len);
                (0..count as i32).map(move |p| ((*topic).clone(), p))
            })
            .collect();
        partitions.sort();
        // Members sharing the same topics split them; all members here share one list.
        let index = self
            .members
            .keys()
            .position(|id| *id == member)
            .unwrap_or(0);
        assign_round_robin(&partitions, self.members.len(), index)
    }
}

impl MemoryBus {
    pub fn new(default_partitions: u32) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                changed: Notify::new(),
            }),
            default_partitions: default_partitions.max(1),
        }
    }

    /// Records in a topic's partitions, for tests and the `lag` view.
    pub fn partition_lengths(&self, topic: &str) -> Vec<usize> {
        let state = self.shared.lock();
        state
            .topics
            .get(topic)
            .map(|ps| ps.iter().map(Vec::len).collect())
            .unwrap_or_default()
    }

    fn partition_lags(&self, group: &str, topic: &str) -> Vec<PartitionLag> {
        let state = self.shared.lock();
        let Some(partitions) = state.topics.get(topic) else {
            return Vec::new();
        };
        let committed = state.groups.get(group).map(|g| &g.committed);
        partitions
            .iter()
            .enumerate()
            .map(|(p, log)| {
                let partition = p as i32;
                let done = committed
                    .and_then(|c| c.get(&(topic.to_string(), partition)))
                    .copied()
                    .unwrap_or(0);
                let messages = (log.len() as i64 - done).max(0) as u64;
                let oldest = log.get(done as usize).map(|r| r.timestamp_ms);
                PartitionLag {
                    topic: topic.to_string(),
                    partition,
                    messages,
                    seconds: if messages == 0 {
                        0.0
                    } else {
                        age_seconds(oldest)
                    },
                }
            })
            .collect()
    }

    /// The group's committed offset (next offset to consume) per partition.
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        let state = self.shared.lock();
        state
            .groups
            .get(group)?
            .committed
            .get(&(topic.to_string(), partition))
            .copied()
    }
}

fn reset_offset(log: &[StoredRecord], to: ResetTo) -> i64 {
    match to {
        ResetTo::Earliest => 0,
        ResetTo::Latest => log.len() as i64,
        ResetTo::Timestamp(ms) => log
            .iter()
            .position(|r| r.timestamp_ms >= ms)
            .unwrap_or(log.len()) as i64,
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn ensure_topic(&mut self, topic: &str, partitions: u32) -> &mut Vec<Vec<StoredRecord>> {
        self.topics
            .entry(topic.to_string())
            .or_insert_with(|| (0..partitions.max(1)).map(|_| Vec::new()).collect())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        self.shared.lock().ensure_topic(topic, partitions);
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BusError> {
        Ok(Arc::new(self.clone()))
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>, BusError> {
        Ok(topics
            .iter()
            .flat_map(|topic| self.partition_lags(group, topic))
            .collect())
    }

    async fn reset_group(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<ResetPosition>, BusError> {
        let mut state = self.shared.lock();
        let mut moved = Vec::new();
        for topic in topics {
            let Some(partitions) = state.topics.get(topic) else {
                return Err(BusError::UnknownTopic(topic.clone()));
            };
            let targets: Vec<i64> = partitions.iter().map(|log| reset_offset(log, to)).collect();
            let group_state = state.groups.entry(group.to_string()).or_default();
            for (partition, offset) in targets.into_iter().enumerate() {
                group_state
                    .committed
                    .insert((topic.clone(), partition as i32), offset);
                moved.push(ResetPosition {
                    topic: topic.clone(),
                    partition: partition as i32,
                    position: offset.to_string(),
                });
            }
            // Members re-read their positions from the committed offsets.
            group_state.generation += 1;
        }
        drop(state);
        self.shared.changed.notify_waiters();
        Ok(moved)
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let member = {
            let mut state = self.shared.lock();
            for topic in topics {
                state.ensure_topic(topic, self.default_partitions);
            }
            state.next_member_id += 1;
            let member = state.next_member_id;
            let group_state = state.groups.entry(group.to_string()).or_default();
            group_state.members.insert(member, topics.to_vec());
            group_state.generation += 1;
            member
        };
        self.shared.changed.notify_waiters();
        Ok(Box::new(MemorySubscription {
            shared: self.shared.clone(),
            group: group.to_string(),
            member,
            seen_generation: 0,
            positions: HashMap::new(),
            closed: false,
        }))
    }
}

#[async_trait]
impl Publisher for MemoryBus {
    async fn publish_batch(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        {
            let mut state = self.shared.lock();
            let partitions = state.ensure_topic(topic, self.default_partitions);
            let count = partitions.len() as u32;
            for record in records {
                let partition = partition_for_key(&record.key, count) as usize;
                partitions[partition].push(StoredRecord {
                    key: Bytes::copy_from_slice(&record.key),
                    payload: Bytes::copy_from_slice(&record.payload),
                    timestamp_ms: now_ms(),
                });
            }
        }
        self.shared.changed.notify_waiters();
        Ok(())
    }
}

pub struct MemorySubscription {
    shared: Arc<Shared>,
    group: String,
    member: u64,
    seen_generation: u64,
    /// Next offset to fetch per owned partition.
    positions: HashMap<(String, i32), i64>,
    closed: bool,
}

impl MemorySubscription {
    /// Re-reads the assignment after a rebalance; fetching restarts at the committed offset.
    fn refresh_assignment(&mut self, state: &State) {
        let Some(group) = state.groups.get(&self.group) else {
            return;
        };
        if group.generation == self.seen_generation {
            return;
        }
        self.seen_generation = group.generation;
        let owned = group.assignment_of(self.member, &state.topics);
        // Partitions kept across the rebalance keep their fetch position; new ones
        // start at the group's committed offset.
        let previous = std::mem::take(&mut self.positions);
        self.positions = owned
            .into_iter()
            .map(|tp| {
                let next = previous
                    .get(&tp)
                    .copied()
                    .unwrap_or_else(|| group.committed.get(&tp).copied().unwrap_or(0));
                (tp, next)
            })
            .collect();
    }

    fn fetch(&mut self, max: usize) -> Vec<Delivery> {
        let shared = self.shared.clone();
        let state = shared.lock();
        self.refresh_assignment(&state);
        let mut out = Vec::new();
        let mut owned: Vec<_> = self.positions.iter_mut().collect();
        owned.sort_by(|a, b| a.0.cmp(b.0));
        for ((topic, partition), next) in owned {
            let Some(log) = state
                .topics
                .get(topic)
                .and_then(|ps| ps.get(*partition as usize))
            else {
                continue;
            };
            let shared_topic: Arc<str> = Arc::from(topic.as_str());
            while out.len() < max && (*next as usize) < log.len() {
                let record = &log[*next as usize];
                out.push(Delivery {
                    topic: Arc::clone(&shared_topic),
                    partition: *partition,
                    position: Position::Offset(*next),
                    key: Some(record.key.clone()),
                    payload: record.payload.clone(),
                    timestamp_ms: Some(record.timestamp_ms),
                });
                *next += 1;
            }
        }
        out
    }

    fn leave(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        let mut state = self.shared.lock();
        if let Some(group) = state.groups.get_mut(&self.group) {
            group.members.remove(&self.member);
            group.generation += 1;
        }
        drop(state);
        self.shared.changed.notify_waiters();
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if self.closed {
            return Err(BusError::Closed);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let shared = self.shared.clone();
            // Register interest before looking, so a publish in between is not missed.
            let changed = shared.changed.notified();
            let batch = self.fetch(max);
            if !batch.is_empty() {
                return Ok(batch);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let shared = self.shared.clone();
        let mut state = shared.lock();
        self.refresh_assignment(&state);
        let Some(group) = state.groups.get_mut(&self.group) else {
            return Ok(());
        };
        for delivery in deliveries {
            let tp = (delivery.topic.to_string(), delivery.partition);
            // A partition that moved away is the new owner's to commit, as on Kafka.
            if !self.positions.contains_key(&tp) {
                continue;
            }
            if let Position::Offset(offset) = delivery.position {
                let committed = group.committed.entry(tp).or_insert(0);
                *committed = (*committed).max(offset + 1);
            }
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        let state = self.shared.lock();
        let Some(group) = state.groups.get(&self.group) else {
            return Vec::new();
        };
        group.assignment_of(self.member, &state.topics)
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        self.leave();
        Ok(())
    }
}

impl Drop for MemorySubscription {
    /// A dropped member is a dead member: its partitions go to the others.
    fn drop(&mut self) {
        self.leave();
    }
}
