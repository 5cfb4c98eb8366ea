//! A member of a consumer group on Redis Streams: heartbeats, takes its share
//! of the partitions, reads with XREADGROUP and acks with XACK.
//!
//! A partition is read only under its lease (`…:lease:{topic}:{p}`, a key
//! holding the member's name that expires after `claim_idle` unless renewed).
//! Every read and every claim is a script that checks the lease first, so a
//! member that lost a partition cannot read another entry of it. A member
//! that takes a lease first claims every entry the group left pending on the
//! stream, in id order, and only then reads new ones: a partition's entries
//! reach its new owner in order, and "applied up to entry E" is a valid summary
//! of what the group did (persist keeps it in the database).
//!
//! Members heartbeat into a sorted set and each takes its share of the
//! partitions by rank. Every read also counts the members, so a join or a
//! leave is answered at the next poll, not only at the next heartbeat.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncCommands, Value};

use super::lease_scripts::{CLAIM_IF_LEASED, READ_IF_LEASED, RELEASE_LEASES, TAKE_LEASES};
use super::{RedisStreamsBus, KEY_FIELD, PAYLOAD_FIELD, TIME_FIELD};
use crate::bus::{assign_round_robin, now_ms, BusError, Delivery, Position, Subscription};

/// How a leased partition is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reading {
    /// Handing out what the group left pending, from this claim cursor; no
    /// new entry is read until the scan is through.
    Pending { cursor: String },
    /// Reading new entries.
    New,
}

type Partition = (String, i32);

pub struct RedisStreamsSubscription {
    bus: RedisStreamsBus,
    conn: MultiplexedConnection,
    group: String,
    member: String,
    /// Every partition of the subscribed topics, sorted.
    partitions: Vec<Partition>,
    /// This member's share of the partitions, leased or not yet.
    share: Vec<Partition>,
    /// The partitions whose lease this member holds.
    leased: BTreeMap<Partition, Reading>,
    last_heartbeat: Option<Instant>,
    /// Members of the group when this member last computed its share.
    members_at_heartbeat: usize,
    /// A read saw another member count: rebalance at the next poll rather
    /// than the next heartbeat, so a member that joins or leaves is answered
    /// within a batch.
    membership_changed: bool,
    last_lease_attempt: Option<Instant>,
    created_groups: HashSet<Partition>,
}

impl RedisStreamsSubscription {
    /// Joins `group` on `partitions` (every partition of its topics, sorted)
    /// and takes its first share of them.
    pub(super) async fn join(
        bus: RedisStreamsBus,
        conn: MultiplexedConnection,
        group: &str,
        partitions: Vec<Partition>,
    ) -> Result<Self, BusError> {
        let mut subscription = Self {
            bus,
            conn,
            group: group.to_string(),
            member: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            partitions,
            share: Vec::new(),
            leased: BTreeMap::new(),
            last_heartbeat: None,
            members_at_heartbeat: 0,
            membership_changed: false,
            last_lease_attempt: None,
            created_groups: HashSet::new(),
        };
        subscription.heartbeat_and_rebalance().await?;
        Ok(subscription)
    }

    /// Heartbeats and lease renewals come this often: a third of the shorter
    /// of the session and the lease, so two may fail before either lapses.
    fn heartbeat_interval(&self) -> Duration {
        let config = &self.bus.config;
        config.session_timeout.min(config.claim_idle) / 3
    }

    fn heartbeat_due(&self) -> bool {
        let interval = self.heartbeat_interval();
        self.last_heartbeat
            .is_none_or(|at| at.elapsed() >= interval)
    }

    /// A share partition another member still holds is asked for again this
    /// often, so a hand-over after a clean leave takes a moment, not a heartbeat.
    fn lease_attempt_due(&self) -> bool {
        self.share.len() > self.leased.len()
            && self
                .last_lease_attempt
                .is_none_or(|at| at.elapsed() >= Duration::from_millis(250))
    }

    /// Refreshes this member's heartbeat, forgets dead members, recomputes this
    /// member's share and gives up the leases outside it.
    async fn heartbeat_and_rebalance(&mut self) -> Result<(), BusError> {
        let key = self.bus.members_key(&self.group);
        let now = now_ms();
        let expired = now - self.bus.config.session_timeout.as_millis() as i64;
        let (mut members,): (Vec<String>,) = redis::pipe()
            .zadd(&key, &self.member, now)
            .ignore()
            .zrembyscore(&key, "-inf", expired)
            .ignore()
            .zrange(&key, 0, -1)
            .query_async(&mut self.conn)
            .await?;
        self.last_heartbeat = Some(Instant::now());
        self.members_at_heartbeat = members.len();
        self.membership_changed = false;
        // By name, not by heartbeat time: every member must rank them alike.
        members.sort_unstable();
        let index = members.iter().position(|m| *m == self.member).unwrap_or(0);
        let share = assign_round_robin(&self.partitions, members.len(), index);
        if share != self.share {
            tracing::info!(group = %self.group, member = %self.member, partitions = ?share, "redis streams assignment changed");
            let leaving: Vec<Partition> = self
                .leased
                .keys()
                .filter(|tp| !share.contains(tp))
                .cloned()
                .collect();
            self.release(&leaving).await?;
            self.share = share;
        }
        self.take_leases().await
    }

    /// Renews the leases held and takes the free ones of this member's share.
    async fn take_leases(&mut self) -> Result<(), BusError> {
        self.last_lease_attempt = Some(Instant::now());
        if self.share.is_empty() {
            return Ok(());
        }
        let mut script = TAKE_LEASES.prepare_invoke();
        for (topic, partition) in &self.share {
            script.key(self.bus.lease_key(&self.group, topic, *partition));
        }
        script
            .arg(&self.member)
            .arg(self.bus.config.claim_idle.as_millis() as u64);
        let outcomes: Vec<i64> = script.invoke_async(&mut self.conn).await?;
        for (tp, outcome) in self.share.clone().into_iter().zip(outcomes) {
            match outcome {
                1 => {}
                2 => {
                    self.ensure_group(&tp).await?;
                    // Held by nobody until now: whatever its last holder left
                    // pending comes first.
                    let reading = Reading::Pending {
                        cursor: "0-0".into(),
                    };
                    self.leased.insert(tp, reading);
                }
                _ => {
                    if self.leased.remove(&tp).is_some() {
                        self.lost(&tp);
                    }
                }
            }
        }
        Ok(())
    }

    async fn release(&mut self, partitions: &[Partition]) -> Result<(), BusError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let mut script = RELEASE_LEASES.prepare_invoke();
        for (topic, partition) in partitions {
            script.key(self.bus.lease_key(&self.group, topic, *partition));
            self.leased.remove(&(topic.clone(), *partition));
        }
        script.arg(&self.member);
        let _: i64 = script.invoke_async(&mut self.conn).await?;
        Ok(())
    }

    fn lost(&self, tp: &Partition) {
        tracing::warn!(group = %self.group, member = %self.member, topic = %tp.0, partition = tp.1, "redis streams lease lost to another member");
    }

    async fn ensure_group(&mut self, tp: &Partition) -> Result<(), BusError> {
        if self.created_groups.contains(tp) {
            return Ok(());
        }
        let stream = self.bus.stream_key(&tp.0, tp.1);
        let created: Result<(), redis::RedisError> = self
            .conn
            .xgroup_create_mkstream(&stream, &self.group, "0")
            .await;
        match created {
            Ok(()) => {}
            Err(err) if err.code() == Some("BUSYGROUP") => {}
            Err(err) => return Err(err.into()),
        }
        self.created_groups.insert(tp.clone());
        Ok(())
    }

    /// Hands out the entries the group left pending on newly leased
    /// partitions, oldest first; a partition whose scan is through reads new
    /// entries from the next poll on.
    async fn claim_pending(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        let mut out = Vec::new();
        let scanning: Vec<(Partition, String)> = self
            .leased
            .iter()
            .filter_map(|(tp, reading)| match reading {
                Reading::Pending { cursor } => Some((tp.clone(), cursor.clone())),
                Reading::New => None,
            })
            .collect();
        for (tp, cursor) in scanning {
            if out.len() >= max {
                break;
            }
            let stream = self.bus.stream_key(&tp.0, tp.1);
            let claimed: Value = CLAIM_IF_LEASED
                .key(self.bus.lease_key(&self.group, &tp.0, tp.1))
                .key(&stream)
                .arg(&self.group)
                .arg(&self.member)
                .arg(&cursor)
                .arg(max - out.len())
                .invoke_async(&mut self.conn)
                .await?;
            if claimed == Value::Nil {
                self.leased.remove(&tp);
                self.lost(&tp);
                continue;
            }
            let reply: StreamAutoClaimReply = redis::from_redis_value(&claimed)?;
            if !reply.claimed.is_empty() {
                tracing::info!(group = %self.group, stream = %stream, entries = reply.claimed.len(), "claimed the entries a partition's last owner left pending");
            }
            let next = if reply.next_stream_id == "0-0" {
                Reading::New
            } else {
                Reading::Pending {
                    cursor: reply.next_stream_id.clone(),
                }
            };
            self.leased.insert(tp.clone(), next);
            out.extend(to_deliveries(&tp, &reply.claimed));
        }
        Ok(out)
    }

    /// New entries of the partitions read live; when there are none, waits up
    /// to `wait` for one to arrive.
    async fn read_new(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let live: Vec<Partition> = self
            .leased
            .iter()
            .filter(|(_, reading)| **reading == Reading::New)
            .map(|(tp, _)| tp.clone())
            .collect();
        if live.is_empty() {
            tokio::time::sleep(wait.min(Duration::from_millis(250))).await;
            return Ok(Vec::new());
        }
        let streams: Vec<String> = live
            .iter()
            .map(|(t, p)| self.bus.stream_key(t, *p))
            .collect();
        let mut script = READ_IF_LEASED.prepare_invoke();
        for (topic, partition) in &live {
            script.key(self.bus.lease_key(&self.group, topic, *partition));
        }
        for stream in &streams {
            script.key(stream);
        }
        script.key(self.bus.members_key(&self.group));
        script.arg(&self.group).arg(&self.member).arg(max);
        let (lost, reply, tails, members): (Vec<String>, Value, Vec<(String, String)>, usize) =
            script.invoke_async(&mut self.conn).await?;
        if members != self.members_at_heartbeat {
            self.membership_changed = true;
        }
        for stream in &lost {
            if let Some(index) = streams.iter().position(|s| s == stream) {
                self.leased.remove(&live[index]);
                self.lost(&live[index]);
            }
        }
        if !tails.is_empty() {
            self.wait_for_entries(&tails, wait).await?;
            return Ok(Vec::new());
        }
        let reply: StreamReadReply = match reply {
            Value::Array(ref items) if items.is_empty() => StreamReadReply::default(),
            other => redis::from_redis_value(&other)?,
        };
        let mut out = Vec::new();
        for stream in reply.keys {
            if let Some(index) = streams.iter().position(|s| *s == stream.key) {
                out.extend(to_deliveries(&live[index], &stream.ids));
            }
        }
        Ok(out)
    }

    /// Blocks until an entry after `tails` (stream, last id) arrives or `wait`
    /// passes, reading nothing for the group: the next poll reads it.
    async fn wait_for_entries(
        &mut self,
        tails: &[(String, String)],
        wait: Duration,
    ) -> Result<(), BusError> {
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS");
        for (stream, _) in tails {
            cmd.arg(stream);
        }
        for (_, last) in tails {
            cmd.arg(last);
        }
        let _: Value = cmd.query_async(&mut self.conn).await?;
        Ok(())
    }

    async fn poll_once(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if self.heartbeat_due() || self.membership_changed {
            self.heartbeat_and_rebalance().await?;
        } else if self.lease_attempt_due() {
            self.take_leases().await?;
        }
        let claimed = self.claim_pending(max).await?;
        if !claimed.is_empty() {
            return Ok(claimed);
        }
        // Never block past the next heartbeat, or this member would look dead,
        // nor long while a share partition waits for its lease.
        let mut wait = wait.min(self.heartbeat_interval());
        if self.share.len() > self.leased.len() {
            wait = wait.min(Duration::from_millis(250));
        }
        self.read_new(max, wait).await
    }

    /// After a failed call the connection is new and a reply may have been
    /// lost on the old one: entries the group handed this member but it never
    /// saw would stay pending behind newer ones. Every leased partition goes
    /// through its pending entries again first (the runner absorbs copies of
    /// what it already has).
    fn reread_pending(&mut self) {
        for reading in self.leased.values_mut() {
            *reading = Reading::Pending {
                cursor: "0-0".into(),
            };
        }
    }

    async fn leave(&mut self) -> Result<(), BusError> {
        let leased: Vec<Partition> = self.leased.keys().cloned().collect();
        self.release(&leased).await?;
        let key = self.bus.members_key(&self.group);
        let _: () = self.conn.zrem(key, &self.member).await?;
        Ok(())
    }
}

fn field_bytes(entry: &StreamId, field: &str) -> Option<Vec<u8>> {
    match entry.map.get(field)? {
        Value::BulkString(bytes) => Some(bytes.clone()),
        other => redis::from_redis_value(other).ok(),
    }
}

/// The deliveries of one stream's entries, sharing one topic name.
fn to_deliveries(tp: &Partition, entries: &[StreamId]) -> Vec<Delivery> {
    let topic: Arc<str> = Arc::from(tp.0.as_str());
    entries
        .iter()
        .map(|entry| to_delivery(&topic, tp.1, entry))
        .collect()
}

fn to_delivery(topic: &Arc<str>, partition: i32, entry: &StreamId) -> Delivery {
    let timestamp_ms = field_bytes(entry, TIME_FIELD)
        .and_then(|t| String::from_utf8(t).ok())
        .and_then(|t| t.parse().ok());
    Delivery {
        topic: Arc::clone(topic),
        partition,
        position: Position::StreamId(entry.id.clone()),
        key: field_bytes(entry, KEY_FIELD).map(Bytes::from),
        // An entry without a payload field is delivered empty so it dead-letters
        // with a reason instead of vanishing.
        payload: field_bytes(entry, PAYLOAD_FIELD)
            .map(Bytes::from)
            .unwrap_or_default(),
        timestamp_ms,
    }
}

#[async_trait]
impl Subscription for RedisStreamsSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        let polled = self.poll_once(max, wait).await;
        if let Err(err) = &polled {
            if err.is_retriable() {
                // A multiplexed connection does not come back by itself after Redis
                // restarts: open a new one for the next poll.
                if let Ok(conn) = self.bus.blocking_connection().await {
                    self.conn = conn;
                    self.reread_pending();
                }
            }
        }
        polled
    }

    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), BusError> {
        let mut by_stream: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for delivery in deliveries {
            if let Position::StreamId(id) = &delivery.position {
                by_stream
                    .entry(self.bus.stream_key(&delivery.topic, delivery.partition))
                    .or_default()
                    .push(id);
            }
        }
        let mut pipe = redis::pipe();
        for (stream, ids) in &by_stream {
            pipe.xack(stream, &self.group, ids).ignore();
        }
        let () = pipe.query_async(&mut self.conn).await?;
        Ok(())
    }

    fn assignment(&self) -> Vec<Partition> {
        self.leased.keys().cloned().collect()
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        self.leave().await
    }
}
