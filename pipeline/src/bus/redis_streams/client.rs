//! The bus itself: streams, heartbeats and leases in Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, MultiplexedConnection};
use redis::{AsyncCommands, Client, Value};

mod lease_scripts;
mod subscription;

pub use subscription::RedisStreamsSubscription;

use super::settings::RedisStreamsConfig;
use crate::bus::{
    age_seconds, now_ms, partition_for_key, Bus, BusError, PartitionLag, Publisher, Record,
    ResetPosition, ResetTo, Subscription,
};

#[derive(Clone)]
pub struct RedisStreamsBus {
    config: Arc<RedisStreamsConfig>,
    client: Client,
    manager: ConnectionManager,
    partition_counts: Arc<Mutex<HashMap<String, u32>>>,
}

/// How long the health check waits for `PING`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const KEY_FIELD: &str = "k";
const PAYLOAD_FIELD: &str = "v";
const TIME_FIELD: &str = "t";

impl RedisStreamsBus {
    pub async fn connect(config: RedisStreamsConfig) -> Result<Self, BusError> {
        let client = crate::redis_tls::client(&config.url, &config.tls)?;
        let manager = ConnectionManager::new(client.clone()).await?;
        Ok(Self {
            config: Arc::new(config),
            client,
            manager,
            partition_counts: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Blocking reads get a connection of their own so they hold up nobody else.
    async fn blocking_connection(&self) -> Result<MultiplexedConnection, BusError> {
        let read_timeout = self.config.session_timeout.max(Duration::from_secs(5)) * 2;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Duration::from_secs(5))
            .set_response_timeout(read_timeout);
        Ok(self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?)
    }

    fn topics_key(&self) -> String {
        format!("{}topics", self.config.key_prefix)
    }

    pub fn stream_key(&self, topic: &str, partition: i32) -> String {
        format!("{}{topic}:{partition}", self.config.key_prefix)
    }

    fn members_key(&self, group: &str) -> String {
        format!("{}group:{group}:members", self.config.key_prefix)
    }

    /// The key whose holder alone may read `topic`'s `partition` for `group`.
    fn lease_key(&self, group: &str, topic: &str, partition: i32) -> String {
        format!(
            "{}group:{group}:lease:{topic}:{partition}",
            self.config.key_prefix
        )
    }

    /// The topic's partition count, registering `wanted` if the topic is new.
    /// The count lives in Redis so every process agrees on it.
    async fn partitions_of(&self, topic: &str, wanted: u32) -> Result<u32, BusError> {
        if let Some(count) = self.cached_partitions(topic) {
            return Ok(count);
        }
        let mut conn = self.manager.clone();
        let _: bool = conn
            .hset_nx(self.topics_key(), topic, wanted.max(1))
            .await?;
        let count: u32 = conn.hget(self.topics_key(), topic).await?;
        self.partition_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string(), count);
        Ok(count)
    }

    fn cached_partitions(&self, topic: &str) -> Option<u32> {
        self.partition_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .copied()
    }
}

impl RedisStreamsBus {
    /// Lag of one stream for a group: entries never delivered (XINFO GROUPS `lag`)
    /// plus entries delivered but not acked (`pending`). The age is that of the
    /// oldest of them, read off its entry id (ids start with the unix milliseconds).
    async fn partition_lag(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<PartitionLag, BusError> {
        let stream = self.stream_key(topic, partition);
        let mut conn = self.manager.clone();
        let length: u64 = conn.xlen(&stream).await?;
        let info = group_info(&mut conn, &stream, group).await?;
        let (messages, oldest_ms) = match info {
            // No such group yet: everything in the stream is unprocessed.
            None => (length, first_entry_ms(&mut conn, &stream, "-").await?),
            Some(info) => {
                let last_entry = last_entry_id(&mut conn, &stream).await?;
                let undelivered = if !is_after(last_entry.as_deref(), &info.last_delivered_id) {
                    // Everything was delivered. XINFO's `lag` is not to be
                    // trusted then: after Redis reloads its append-only file it
                    // can stay at hundreds with nothing left to deliver.
                    0
                } else {
                    info.lag.filter(|lag| *lag > 0).unwrap_or(length)
                };
                let oldest_pending = oldest_pending_ms(&mut conn, &stream, group).await?;
                let oldest_new = if undelivered > 0 {
                    first_entry_ms(&mut conn, &stream, &format!("({}", info.last_delivered_id))
                        .await?
                } else {
                    None
                };
                (
                    undelivered + info.pending,
                    oldest_pending.into_iter().chain(oldest_new).min(),
                )
            }
        };
        Ok(PartitionLag {
            topic: topic.to_string(),
            partition,
            messages,
            seconds: if messages == 0 {
                0.0
            } else {
                age_seconds(oldest_ms)
            },
        })
    }
}

struct GroupInfo {
    pending: u64,
    lag: Option<u64>,
    last_delivered_id: String,
}

async fn group_info(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
) -> Result<Option<GroupInfo>, BusError> {
    let groups: Vec<HashMap<String, Value>> = match redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(stream)
        .query_async(conn)
        .await
    {
        Ok(groups) => groups,
        Err(err) if err.code() == Some("ERR") => return Ok(None), // no such stream yet
        Err(err) => return Err(err.into()),
    };
    let as_string = |v: Option<&Value>| v.and_then(|v| redis::from_redis_value::<String>(v).ok());
    let as_u64 = |v: Option<&Value>| v.and_then(|v| redis::from_redis_value::<u64>(v).ok());
    Ok(groups
        .iter()
        .find(|g| as_string(g.get("name")).as_deref() == Some(group))
        .map(|g| GroupInfo {
            pending: as_u64(g.get("pending")).unwrap_or(0),
            lag: as_u64(g.get("lag")),
            last_delivered_id: as_string(g.get("last-delivered-id"))
                .unwrap_or_else(|| "0-0".into()),
        }))
}

/// Whether stream id `id` comes after `than` (`ms-seq` compared as numbers).
fn is_after(id: Option<&str>, than: &str) -> bool {
    let parse = |id: &str| -> Option<(u64, u64)> {
        let (ms, seq) = id.split_once('-').unwrap_or((id, "0"));
        Some((ms.parse().ok()?, seq.parse().ok()?))
    };
    match (id.and_then(parse), parse(than)) {
        (Some(id), Some(than)) => id > than,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

async fn last_entry_id(
    conn: &mut ConnectionManager,
    stream: &str,
) -> Result<Option<String>, BusError> {
    let entries: redis::streams::StreamRangeReply = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(entries.ids.first().map(|e| e.id.clone()))
}

fn id_millis(id: &str) -> Option<i64> {
    id.split('-').next()?.parse().ok()
}

async fn first_entry_ms(
    conn: &mut ConnectionManager,
    stream: &str,
    start: &str,
) -> Result<Option<i64>, BusError> {
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(conn)
        .await?;
    Ok(entries.ids.first().and_then(|e| id_millis(&e.id)))
}

async fn oldest_pending_ms(
    conn: &mut ConnectionManager,
    stream: &str,
    group: &str,
) -> Result<Option<i64>, BusError> {
    // XPENDING summary: [count, smallest id, greatest id, consumers].
    let summary: Vec<Value> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await?;
    Ok(summary
        .get(1)
        .and_then(|v| redis::from_redis_value::<String>(v).ok())
        .and_then(|id| id_millis(&id)))
}

#[async_trait]
impl Bus for RedisStreamsBus {
    fn name(&self) -> &'static str {
        "redis-streams"
    }

    async fn check_health(&self) -> Result<(), BusError> {
        let mut conn = self.manager.clone();
        let command = redis::cmd("PING");
        let ping = command.query_async::<()>(&mut conn);
        match tokio::time::timeout(HEALTH_TIMEOUT, ping).await {
            Ok(answered) => Ok(answered?),
            Err(_) => Err(BusError::Redis(redis::RedisError::from(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer to PING"),
            ))),
        }
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        self.partitions_of(topic, partitions).await.map(|_| ())
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BusError> {
        Ok(Arc::new(self.clone()))
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>, BusError> {
        let mut out = Vec::new();
        for topic in topics {
            let count = self
                .partitions_of(topic, self.config.default_partitions)
                .await?;
            for partition in 0..count as i32 {
                out.push(self.partition_lag(group, topic, partition).await?);
            }
        }
        Ok(out)
    }

    async fn reset_group(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<ResetPosition>, BusError> {
        let last_delivered = match to {
            ResetTo::Earliest => "0".to_string(),
            ResetTo::Latest => "$".to_string(),
            // Entry ids start with their unix milliseconds: everything from `ms` on.
            ResetTo::Timestamp(ms) => format!("{}-{}", (ms - 1).max(0), u64::MAX),
        };
        let mut conn = self.manager.clone();
        let mut moved = Vec::new();
        for topic in topics {
            let count = self
                .partitions_of(topic, self.config.default_partitions)
                .await?;
            for partition in 0..count as i32 {
                let stream = self.stream_key(topic, partition);
                let created: Result<(), redis::RedisError> = conn
                    .xgroup_create_mkstream(&stream, group, &last_delivered)
                    .await;
                match created {
                    Ok(()) => {}
                    Err(err) if err.code() == Some("BUSYGROUP") => {
                        let () = redis::cmd("XGROUP")
                            .arg("SETID")
                            .arg(&stream)
                            .arg(group)
                            .arg(&last_delivered)
                            .query_async(&mut conn)
                            .await?;
                    }
                    Err(err) => return Err(err.into()),
                }
                moved.push(ResetPosition {
                    topic: topic.clone(),
                    partition,
                    position: last_delivered.clone(),
                });
            }
        }
        Ok(moved)
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        let mut partitions = Vec::new();
        for topic in topics {
            let count = self
                .partitions_of(topic, self.config.default_partitions)
                .await?;
            partitions.extend((0..count as i32).map(|p| (topic.clone(), p)));
        }
        partitions.sort();
        let conn = self.blocking_connection().await?;
        let subscription =
            RedisStreamsSubscription::join(self.clone(), conn, group, partitions).await?;
        Ok(Box::new(subscription))
    }
}

#[async_trait]
impl Publisher for RedisStreamsBus {
    async fn publish_batch(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        let count = self
            .partitions_of(topic, self.config.default_partitions)
            .await?;
        let mut pipe = redis::pipe();
        let now = now_ms();
        for record in records {
            let stream = self.stream_key(topic, partition_for_key(&record.key, count));
            pipe.cmd("XADD")
                .arg(&stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.config.max_len)
                .arg("*")
                .arg(KEY_FIELD)
                .arg(&record.key)
                .arg(PAYLOAD_FIELD)
                .arg(&record.payload)
                .arg(TIME_FIELD)
                .arg(now)
                .ignore();
        }
        let mut conn = self.manager.clone();
        let () = pipe.query_async(&mut conn).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::is_after;

    #[test]
    fn stream_ids_compare_as_numbers() {
        assert!(is_after(Some("10-0"), "9-5"));
        assert!(is_after(Some("5-10"), "5-9"));
        assert!(!is_after(Some("5-9"), "5-9"));
        assert!(!is_after(None, "0-0"));
        assert!(is_after(Some("1-0"), "0"));
    }
}
