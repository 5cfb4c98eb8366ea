//! The cache group against real Redis, fed real OpenDota fixtures
//! (`shared/data/opendota/`). Expected values are read off the fixture files.
//! Each test uses its own key prefix; the fallback tests run their own
//! `redis-server`, so the shared one on 6379 is never stopped.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consumers::cache::{Cache, CacheConfig, CacheHandler};
use pipeline::bus::{Delivery, Position};
use pipeline::runner::Handler;
use producers::ingest::{ingest_file, shared_data_dir, IngestedEvent};
use redis::aio::MultiplexedConnection;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, Event, MatchCompleted, PlayerProfile, ANONYMOUS_ACCOUNT_ID};
use serde_json::Value;

mod bad_input;
mod configuration;
mod fallback;
mod invalidation;
mod matches;
mod profiles;

const PRO: &str = "details_api_pro.json";
const PUB: &str = "details_api.json";
const RANK: &str = "retriever_player.json";
const SUMMARIES: &str = "summaries_api.json";
/// A pro player of the PRO match (slot 129), absent from the PUB match.
const PRO_PLAYER: i64 = 149_486_894;
/// The account of both profile fixtures (and slot 0 of the PUB match).
const PROFILED: i64 = 120_269_134;
const RETRY_MS: u64 = 300;
const TIMEOUT_MS: u64 = 300;

// ---- fixtures ----------------------------------------------------------

fn fixture_path(name: &str) -> std::path::PathBuf {
    shared_data_dir().join("opendota").join(name)
}

/// The fixture as written, for expected values.
fn raw_fixture(name: &str) -> Value {
    let value: Value = serde_json::from_slice(&std::fs::read(fixture_path(name)).unwrap()).unwrap();
    match value.get("result") {
        Some(result) => result.clone(),
        None => value,
    }
}

fn fixture_match(name: &str) -> MatchCompleted {
    match ingest_file(fixture_path(name), 0).unwrap().as_slice() {
        [IngestedEvent::Match(m)] => m.clone(),
        other => panic!("{name}: expected one match, got {other:?}"),
    }
}

fn fixture_profile(name: &str, observed_at_ms: i64) -> PlayerProfile {
    match ingest_file(fixture_path(name), observed_at_ms)
        .unwrap()
        .as_slice()
    {
        [IngestedEvent::Player(p)] => p.clone(),
        other => panic!("{name}: expected one profile, got {other:?}"),
    }
}

/// The PRO match moved in time, as another match with the same players.
fn pro_match_shifted(id_offset: i64, start_offset_secs: i64) -> MatchCompleted {
    let mut m = fixture_match(PRO);
    m.match_id += id_offset;
    m.start_time += start_offset_secs;
    m
}

/// Account ids of the fixture's players as the file has them, anonymous
/// ones (Steam's 4294967295) left out.
fn known_accounts(name: &str) -> Vec<i64> {
    raw_fixture(name)["players"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["account_id"].as_i64().unwrap())
        .filter(|id| *id != ANONYMOUS_ACCOUNT_ID)
        .collect()
}

// ---- deliveries --------------------------------------------------------

fn delivery<E: Event>(topic: &str, event: &E) -> Delivery {
    let payload = Codec::default()
        .encode(event, Encoding::SingleObject)
        .unwrap();
    raw_delivery(topic, payload)
}

fn raw_delivery(topic: &str, payload: Vec<u8>) -> Delivery {
    Delivery {
        topic: topic.into(),
        partition: 0,
        position: Position::Offset(0),
        key: None,
        payload: payload.into(),
        timestamp_ms: None,
    }
}

async fn deliver(handler: &CacheHandler, deliveries: &[Delivery]) {
    let outcomes = handler.handle(deliveries).await;
    assert_eq!(outcomes.len(), deliveries.len());
    for outcome in outcomes {
        outcome.unwrap();
    }
}

async fn deliver_match(handler: &CacheHandler, m: &MatchCompleted) {
    deliver(handler, &[delivery(topics::MATCHES, m)]).await;
}

async fn deliver_profile(handler: &CacheHandler, p: &PlayerProfile) {
    deliver(handler, &[delivery(topics::PLAYERS, p)]).await;
}

// ---- Redis -------------------------------------------------------------

fn shared_redis_url() -> String {
    std::env::var("SCOUTSTREAM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn config(redis_url: &str) -> CacheConfig {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    CacheConfig {
        redis_url: redis_url.to_string(),
        key_prefix: format!("sstest-cache-{}:", &unique[..12]),
        redis_retry_interval_ms: RETRY_MS,
        redis_timeout_ms: TIMEOUT_MS,
        ..CacheConfig::default()
    }
}

async fn handler_on(config: CacheConfig) -> CacheHandler {
    CacheHandler::new(Cache::connect(config).await.unwrap())
}

/// A plain connection, to look at Redis the way `redis-cli` would.
async fn raw(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn raw_get(conn: &mut MultiplexedConnection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query_async(conn).await.unwrap()
}

async fn raw_ttl(conn: &mut MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("TTL").arg(key).query_async(conn).await.unwrap()
}

async fn raw_exists(conn: &mut MultiplexedConnection, key: &str) -> bool {
    redis::cmd("EXISTS")
        .arg(key)
        .query_async::<i64>(conn)
        .await
        .unwrap()
        == 1
}

async fn raw_keys(conn: &mut MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap();
    keys.sort();
    keys
}

/// The key's TTL is set and at most `bound`, and not much less (the test
/// took seconds, not minutes).
async fn assert_ttl_within(conn: &mut MultiplexedConnection, key: &str, bound: Duration) {
    let ttl = raw_ttl(conn, key).await;
    let bound = i64::try_from(bound.as_secs()).unwrap();
    assert!(
        (bound - 60..=bound).contains(&ttl),
        "TTL of {key} is {ttl}, expected within {bound} s"
    );
}

/// A `redis-server` of one test, on a port of its own, killed on drop.
struct PrivateRedis {
    port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty, and waits until it answers.
    async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.answers().await {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn answers(&self) -> bool {
        let ping = async {
            let mut conn = redis::Client::open(self.url())
                .ok()?
                .get_multiplexed_async_connection()
                .await
                .ok()?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .ok()
        };
        let answer = tokio::time::timeout(Duration::from_secs(1), ping).await;
        matches!(answer, Ok(Some(_)))
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes or thaws the server: it keeps its connections but stops answering.
    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(status.success());
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
