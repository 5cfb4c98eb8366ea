//! A member of a consumer group on Redis Streams: heartbeats, takes its share
//! of the partitions, reads with XREADGROUP, acks with XACK and claims what
//! dead members left pending.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use redis::{AsyncCommands, Value};

use super::{RedisStreamsBus, KEY_FIELD, PAYLOAD_FIELD, TIME_FIELD};
use crate::bus::{assign_round_robin, now_ms, BusError, Delivery, Position, Subscription};

pub struct RedisStreamsSubscription {
    bus: RedisStreamsBus,
    conn: MultiplexedConnection,
    group: String,
    member: String,
    /// Every partition of the subscribed topics, sorted.
    partitions: Vec<(String, i32)>,
    owned: Vec<(String, i32)>,
    claim_cursors: HashMap<(String, i32), String>,
    last_heartbeat: Option<Instant>,
    last_claim: Option<Instant>,
    /// The last claim took entries and a scan is not through its stream yet:
    /// claim again at once, or a backlog of abandoned entries would come back
    /// one batch per interval (10,000 entries: minutes).
    claim_more: bool,
    created_groups: HashSet<(String, i32)>,
}

impl RedisStreamsSubscription {
    /// Joins `group` on `partitions` (every partition of its topics, sorted)
    /// and takes its first share of them.
    pub(super) async fn join(
        bus: RedisStreamsBus,
        conn: MultiplexedConnection,
        group: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Self, BusError> {
        let mut subscription = Self {
            bus,
            conn,
            group: group.to_string(),
            member: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4()),
            partitions,
            owned: Vec::new(),
            claim_cursors: HashMap::new(),
            last_heartbeat: None,
            last_claim: None,
            claim_more: false,
            created_groups: HashSet::new(),
        };
        subscription.heartbeat_and_rebalance().await?;
        Ok(subscription)
    }

    fn heartbeat_due(&self) -> bool {
        let interval = self.bus.config.session_timeout / 3;
        self.last_heartbeat
            .is_none_or(|at| at.elapsed() >= interval)
    }

    /// Refreshes this member's heartbeat, forgets dead members and recomputes
    /// which partitions this member owns.
    async fn heartbeat_and_rebalance(&mut self) -> Result<(), BusError> {
        let key = self.bus.members_key(&self.group);
        let now = now_ms();
        let expired = now - self.bus.config.session_timeout.as_millis() as i64;
        let (members,): (Vec<String>,) = redis::pipe()
            .zadd(&key, &self.member, now)
            .ignore()
            .zrembyscore(&key, "-inf", expired)
            .ignore()
            .zrange(&key, 0, -1)
            .query_async(&mut self.conn)
            .await?;
        self.last_heartbeat = Some(Instant::now());
        let index = members.iter().position(|m| *m == self.member).unwrap_or(0);
        let owned = assign_round_robin(&self.partitions, members.len(), index);
        if owned != self.owned {
            tracing::info!(group = %self.group, member = %self.member, partitions = ?owned, "redis streams assignment changed");
            for tp in &owned {
                self.ensure_group(tp).await?;
                // A newly owned partition is checked for abandoned entries at once.
                self.claim_cursors
                    .entry(tp.clone())
                    .or_insert_with(|| "0-0".into());
            }
            self.claim_cursors.retain(|tp, _| owned.contains(tp));
            self.owned = owned;
            self.last_claim = None;
        }
        Ok(())
    }

    async fn ensure_group(&mut self, tp: &(String, i32)) -> Result<(), BusError> {
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

    fn claim_due(&self) -> bool {
        let interval = (self.bus.config.claim_idle / 2).max(Duration::from_millis(100));
        self.claim_more || self.last_claim.is_none_or(|at| at.elapsed() >= interval)
    }

    /// Takes over entries that other (dead or stuck) members left pending.
    async fn claim_abandoned(&mut self, max: usize) -> Result<Vec<Delivery>, BusError> {
        self.last_claim = Some(Instant::now());
        let idle_ms = self.bus.config.claim_idle.as_millis() as u64;
        let mut out = Vec::new();
        let mut more = false;
        for tp in self.owned.clone() {
            if out.len() >= max {
                break;
            }
            let stream = self.bus.stream_key(&tp.0, tp.1);
            let cursor = self
                .claim_cursors
                .get(&tp)
                .cloned()
                .unwrap_or_else(|| "0-0".into());
            let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&stream)
                .arg(&self.group)
                .arg(&self.member)
                .arg(idle_ms)
                .arg(&cursor)
                .arg("COUNT")
                .arg(max - out.len())
                .query_async(&mut self.conn)
                .await?;
            let scan_unfinished = reply.next_stream_id != "0-0";
            self.claim_cursors
                .insert(tp.clone(), reply.next_stream_id.clone());
            more |= scan_unfinished && !reply.claimed.is_empty();
            if !reply.claimed.is_empty() {
                tracing::warn!(group = %self.group, stream = %stream, entries = reply.claimed.len(), "claimed entries abandoned by another member");
            }
            out.extend(to_deliveries(&tp, &reply.claimed));
        }
        // A full batch may have stopped short of streams still to scan, too.
        self.claim_more = more || out.len() >= max;
        Ok(out)
    }

    async fn read_new(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if self.owned.is_empty() {
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let streams: Vec<String> = self
            .owned
            .iter()
            .map(|(t, p)| self.bus.stream_key(t, *p))
            .collect();
        let by_stream: HashMap<&str, &(String, i32)> = streams
            .iter()
            .map(String::as_str)
            .zip(self.owned.iter())
            .collect();
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(&self.member)
            .arg("COUNT")
            .arg(max);
        cmd.arg("BLOCK")
            .arg(wait.as_millis().max(1) as u64)
            .arg("STREAMS");
        cmd.arg(&streams);
        for _ in &streams {
            cmd.arg(">");
        }
        let reply: Option<StreamReadReply> = cmd.query_async(&mut self.conn).await?;
        let mut out = Vec::new();
        for stream in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(tp) = by_stream.get(stream.key.as_str()) else {
                continue;
            };
            out.extend(to_deliveries(tp, &stream.ids));
        }
        Ok(out)
    }

    async fn poll_once(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        if self.heartbeat_due() {
            self.heartbeat_and_rebalance().await?;
        }
        if self.claim_due() {
            let claimed = self.claim_abandoned(max).await?;
            if !claimed.is_empty() {
                return Ok(claimed);
            }
        }
        // Never block past the next heartbeat, or this member would look dead.
        let wait = wait.min(self.bus.config.session_timeout / 3);
        self.read_new(max, wait).await
    }

    async fn leave(&mut self) -> Result<(), BusError> {
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
fn to_deliveries(tp: &(String, i32), entries: &[StreamId]) -> Vec<Delivery> {
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

    fn assignment(&self) -> Vec<(String, i32)> {
        self.owned.clone()
    }

    async fn close(mut self: Box<Self>) -> Result<(), BusError> {
        self.leave().await
    }
}
