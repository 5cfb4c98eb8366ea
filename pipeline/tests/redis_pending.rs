//! Redis Streams: what a dead member left pending comes back in time. A member
//! holding 10,000 pending entries dies (no ack, no leave); another member of
//! the group must have them all within `claim_idle` + 5 s, and `XPENDING` ends
//! at 0. Entries trimmed away while pending are dropped, not claimed forever.
//! And a drained group shows no lag after Redis reloads its append-only file.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{numbered_records, parse_number, redis_url, unique, PARTITIONS};
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::bus::Bus;

const PENDING: usize = 10_000;

fn config(prefix: &str) -> RedisStreamsConfig {
    RedisStreamsConfig {
        url: redis_url(),
        key_prefix: prefix.to_string(),
        default_partitions: PARTITIONS,
        session_timeout: Duration::from_secs(3),
        claim_idle: Duration::from_secs(5),
        ..RedisStreamsConfig::default()
    }
}

async fn publish(bus: &RedisStreamsBus, topic: &str, count: usize) {
    let publisher = bus.publisher().await.unwrap();
    for chunk in numbered_records(count, 97).chunks(1000) {
        publisher.publish_batch(topic, chunk).await.unwrap();
    }
}

/// A member that takes `count` entries and dies holding them: no ack, no
/// leave, no more heartbeats.
async fn die_holding(bus: &RedisStreamsBus, group: &str, topic: &str, count: usize) {
    let mut member = bus.subscribe(group, &[topic.to_string()]).await.unwrap();
    let mut held = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while held < count && Instant::now() < deadline {
        held += member
            .poll(1000, Duration::from_secs(1))
            .await
            .unwrap()
            .len();
    }
    assert_eq!(held, count, "the doomed member took every entry");
    std::mem::forget(member);
}

/// Entries pending in the group over every partition of `topic` (`XPENDING`).
async fn pending(prefix: &str, group: &str, topic: &str) -> u64 {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut total = 0;
    for partition in 0..PARTITIONS {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(format!("{prefix}{topic}:{partition}"))
            .arg(group)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let redis::Value::Array(fields) = summary {
            total += redis::from_redis_value::<u64>(&fields[0]).unwrap();
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_members_pending_entries_come_back_in_time_and_trimmed_ones_do_not_loop() {
    let prefix = format!("{}:", unique("sspending"));
    let config = config(&prefix);
    let bus = RedisStreamsBus::connect(config.clone()).await.unwrap();
    let topic = unique("pending");
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    publish(&bus, &topic, PENDING).await;
    let group = unique("g");

    die_holding(&bus, &group, &topic, PENDING).await;
    let died = Instant::now();
    assert_eq!(pending(&prefix, &group, &topic).await, PENDING as u64);
    let limit = config.claim_idle + Duration::from_secs(5);
    let mut survivor = bus
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mut reclaimed = BTreeSet::new();
    while reclaimed.len() < PENDING && died.elapsed() < limit + Duration::from_secs(30) {
        let batch = survivor
            .poll(500, Duration::from_millis(500))
            .await
            .unwrap();
        survivor.ack(&batch).await.unwrap();
        reclaimed.extend(
            batch
                .iter()
                .filter_map(|d| parse_number(&d.payload))
                .map(|(n, _)| n),
        );
    }
    let took = died.elapsed();
    eprintln!("{PENDING} abandoned entries reclaimed {took:?} after their holder died");
    assert_eq!(
        reclaimed.len(),
        PENDING,
        "every abandoned entry came back within {took:?}"
    );
    assert_eq!(reclaimed.last(), Some(&(PENDING - 1)));
    assert!(
        took <= limit,
        "reclaiming took {took:?}, more than claim_idle + 5 s"
    );
    assert_eq!(pending(&prefix, &group, &topic).await, 0);

    // Entries trimmed away while a dead member holds them: XAUTOCLAIM drops
    // them from the pending list instead of handing them out again and again.
    publish(&bus, &topic, 500).await;
    die_holding(&bus, &group, &topic, 500).await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for partition in 0..PARTITIONS {
        let _: i64 = redis::cmd("XTRIM")
            .arg(format!("{prefix}{topic}:{partition}"))
            .arg("MAXLEN")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let trimmed = Instant::now();
    let mut delivered = 0;
    while pending(&prefix, &group, &topic).await > 0 && trimmed.elapsed() < limit * 2 {
        let batch = survivor
            .poll(500, Duration::from_millis(500))
            .await
            .unwrap();
        delivered += batch.len();
        survivor.ack(&batch).await.unwrap();
    }
    eprintln!(
        "trimmed pending entries gone {:?} after the trim",
        trimmed.elapsed()
    );
    assert_eq!(delivered, 0, "trimmed entries are not delivered");
    assert_eq!(
        pending(&prefix, &group, &topic).await,
        0,
        "trimmed entries leave the pending list"
    );
    assert!(
        trimmed.elapsed() <= limit,
        "the pending list emptied within claim_idle + 5 s"
    );
    survivor.close().await.unwrap();
}

/// A Redis of the test's own, writing an append-only file, that it can kill.
struct AofRedis {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<std::process::Child>,
}

impl AofRedis {
    fn start() -> Self {
        let mut redis = Self {
            dir: tempfile::tempdir().unwrap(),
            port: testkit::free_port(),
            child: None,
        };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL (if running), then a start on the same append-only file.
    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--appendonly", "yes", "--save", ""])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client
            .get_connection()
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(Instant::now() < deadline, "redis-server never answered");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AofRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// After Redis reloads its append-only file, `XINFO GROUPS` no longer knows a
/// group's `lag` (or reports a stale one); a group that has everything must
/// still show lag 0, or a drain that waits for it never ends (the chaos run on
/// Redis Streams hung on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_group_shows_no_lag_after_redis_reloads_its_append_only_file() {
    let mut redis = AofRedis::start();
    let config = RedisStreamsConfig {
        url: redis.url(),
        ..config("lag:")
    };
    let bus = RedisStreamsBus::connect(config.clone()).await.unwrap();
    let topic = "reloaded";
    bus.ensure_topic(topic, PARTITIONS).await.unwrap();
    publish(&bus, topic, 200).await;
    let mut member = bus.subscribe("g", &[topic.to_string()]).await.unwrap();
    let mut read = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while read < 200 && Instant::now() < deadline {
        let batch = member.poll(100, Duration::from_millis(200)).await.unwrap();
        member.ack(&batch).await.unwrap();
        read += batch.len();
    }
    assert_eq!(read, 200);
    member.close().await.unwrap();
    let behind =
        |lag: Vec<pipeline::bus::PartitionLag>| -> u64 { lag.iter().map(|p| p.messages).sum() };
    assert_eq!(behind(bus.lag("g", &[topic.to_string()]).await.unwrap()), 0);

    redis.restart();
    let bus = RedisStreamsBus::connect(config).await.unwrap();
    let lag = bus.lag("g", &[topic.to_string()]).await.unwrap();
    assert_eq!(
        behind(lag),
        0,
        "nothing is left to deliver after the reload"
    );
    publish(&bus, topic, 30).await;
    let lag = bus.lag("g", &[topic.to_string()]).await.unwrap();
    assert!(behind(lag) >= 30, "new entries still show as lag");
}
