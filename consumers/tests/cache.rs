//! The cache group against real Redis, fed real OpenDota fixtures
//! (`shared/data/opendota/`). Expected values are read off the fixture files.
//! Each test uses its own key prefix; the fallback tests run their own
//! `redis-server`, so the shared one on 6379 is never stopped.
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use consumers::cache::{
    keys, Cache, CacheConfig, CacheError, CacheHandler, Layer, MatchSummary, NewerWrite, VersionAt,
};
use pipeline::bus::{Delivery, Position};
use pipeline::runner::{Handler, HandlerError};
use producers::ingest::{ingest_file, shared_data_dir, IngestedEvent};
use redis::aio::MultiplexedConnection;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, Event, MatchCompleted, PlayerProfile, ANONYMOUS_ACCOUNT_ID};
use serde_json::Value;

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

// ---- matches -----------------------------------------------------------

/// The cached summary agrees with the fixture file, field for field.
fn assert_summary_matches_file(summary: &MatchSummary, name: &str) {
    let file = raw_fixture(name);
    assert_eq!(summary.match_id, file["match_id"].as_i64().unwrap());
    assert_eq!(summary.start_time, file["start_time"].as_i64().unwrap());
    assert_eq!(
        i64::from(summary.duration_secs),
        file["duration"].as_i64().unwrap()
    );
    assert_eq!(summary.radiant_win, file["radiant_win"].as_bool().unwrap());
    assert_eq!(
        i64::from(summary.game_mode),
        file["game_mode"].as_i64().unwrap()
    );
    let players = file["players"].as_array().unwrap();
    assert_eq!(summary.players.len(), players.len());
    for (cached, written) in summary.players.iter().zip(players) {
        let account = written["account_id"].as_i64().unwrap();
        let expected_account = (account != ANONYMOUS_ACCOUNT_ID).then_some(account);
        assert_eq!(cached.account_id, expected_account);
        let stats = [
            (cached.player_slot, "player_slot"),
            (cached.hero_id, "hero_id"),
            (cached.kills, "kills"),
            (cached.deaths, "deaths"),
            (cached.assists, "assists"),
            (cached.gold_per_min, "gold_per_min"),
            (cached.xp_per_min, "xp_per_min"),
        ];
        for (value, field) in stats {
            assert_eq!(
                i64::from(value),
                written[field].as_i64().unwrap(),
                "{name} slot {}: {field}",
                cached.player_slot
            );
        }
    }
}

#[tokio::test]
async fn pro_match_is_cached_as_a_summary_with_its_ttl() {
    let config = config(&shared_redis_url());
    let handler = handler_on(config.clone()).await;
    let cache = handler.cache();
    let mut conn = raw(&config.redis_url).await;

    deliver_match(&handler, &fixture_match(PRO)).await;

    let key = cache.redis_key(&keys::match_key(3_254_426_673));
    assert_eq!(key, format!("{}match:3254426673", config.key_prefix));
    let stored = raw_get(&mut conn, &key)
        .await
        .expect("match summary in Redis");
    let summary: MatchSummary = serde_json::from_str(&stored).unwrap();
    assert_summary_matches_file(&summary, PRO);
    // Spot checks by hand from the file: teams, and slot 129's line.
    let team = |t: &Option<schemas::Team>| t.as_ref().map(|t| (t.team_id, t.name.clone()));
    assert_eq!(
        team(&summary.radiant_team),
        Some((4_251_435, Some("Planet Odd".into())))
    );
    assert_eq!(
        team(&summary.dire_team),
        Some((1_375_614, Some("Newbee".into())))
    );
    let line = summary
        .players
        .iter()
        .find(|p| p.player_slot == 129)
        .unwrap();
    assert_eq!(
        (
            line.account_id,
            line.hero_id,
            line.kills,
            line.deaths,
            line.assists
        ),
        (Some(PRO_PLAYER), 94, 5, 2, 5)
    );
    assert_eq!((line.gold_per_min, line.xp_per_min), (687, 804));
    assert_ttl_within(&mut conn, &key, config.match_ttl()).await;

    // The layer reads back what is in Redis.
    assert_eq!(
        cache.get(&keys::match_key(3_254_426_673)).await,
        Some(stored)
    );
    assert_eq!(cache.get(&keys::match_key(1)).await, None);
    let counters = cache.counters().snapshot();
    assert_eq!((counters.hits, counters.misses), (1, 1));
    assert_eq!(
        (counters.fallback_activations, counters.redis_errors),
        (0, 0)
    );
    assert!(!cache.is_on_fallback());

    // Every player gets a newest-match marker with the match's start time.
    let accounts = known_accounts(PRO);
    assert_eq!(accounts.len(), 10);
    for account in accounts {
        let marker = cache.redis_key(&keys::latest_match_key(account));
        let value = raw_get(&mut conn, &marker).await;
        assert_eq!(value.as_deref(), Some("1497678766"), "{marker}");
        assert_ttl_within(&mut conn, &marker, config.match_ttl()).await;
    }
}

#[tokio::test]
async fn anonymous_players_get_no_marker() {
    let config = config(&shared_redis_url());
    let handler = handler_on(config.clone()).await;
    let mut conn = raw(&config.redis_url).await;

    deliver_match(&handler, &fixture_match(PUB)).await;

    let key = handler.cache().redis_key(&keys::match_key(1_781_962_623));
    let summary: MatchSummary =
        serde_json::from_str(&raw_get(&mut conn, &key).await.unwrap()).unwrap();
    assert_summary_matches_file(&summary, PUB);
    assert_eq!(summary.radiant_team, None, "a public match has no teams");
    let anonymous = summary
        .players
        .iter()
        .filter(|p| p.account_id.is_none())
        .count();
    assert_eq!(anonymous, 3);

    let pattern = format!("{}player:*:latest_match", config.key_prefix);
    let mut expected: Vec<String> = known_accounts(PUB)
        .into_iter()
        .map(|id| handler.cache().redis_key(&keys::latest_match_key(id)))
        .collect();
    expected.sort();
    assert_eq!(expected.len(), 7);
    assert_eq!(raw_keys(&mut conn, &pattern).await, expected);
}

// ---- profiles ----------------------------------------------------------

#[tokio::test]
async fn the_newest_profile_wins_whatever_the_delivery_order() {
    let config = config(&shared_redis_url());
    let handler = handler_on(config.clone()).await;
    let mut conn = raw(&config.redis_url).await;
    let key = handler.cache().redis_key(&keys::player_key(PROFILED));
    let cached = |json: Option<String>| serde_json::from_str::<Value>(&json.unwrap()).unwrap();

    let rank = fixture_profile(RANK, 1_000);
    let summaries = fixture_profile(SUMMARIES, 2_000);
    // Both files describe one account: the summaries' 64-bit Steam id is it.
    assert_eq!(
        (rank.account_id, summaries.account_id),
        (PROFILED, PROFILED)
    );

    deliver_profile(&handler, &rank).await;
    let value = cached(raw_get(&mut conn, &key).await);
    let file = raw_fixture(RANK);
    assert_eq!(value["rank_tier"], file["rank_tier"]);
    assert_eq!(value["leaderboard_rank"], file["leaderboard_rank"]);
    assert_eq!(value["observed_at_ms"], 1_000);
    assert_ttl_within(&mut conn, &key, config.player_ttl()).await;

    deliver_profile(&handler, &summaries).await;
    let value = cached(raw_get(&mut conn, &key).await);
    let file = &raw_fixture(SUMMARIES)["response"]["players"][0];
    assert_eq!(value["persona_name"], file["personaname"]);
    assert_eq!(value["avatar_url"], file["avatarfull"]);
    assert_eq!(value["last_seen"], file["lastlogoff"]);
    assert_eq!(value["source"], "steam_summaries");
    assert_eq!(
        value["rank_tier"], 80,
        "the older rank record fills what the summary lacks"
    );
    let newest = raw_get(&mut conn, &key).await;

    // Out of order (older) and redelivered (same) profiles change nothing.
    deliver_profile(&handler, &rank).await;
    deliver_profile(&handler, &summaries).await;
    assert_eq!(raw_get(&mut conn, &key).await, newest);

    let newer_rank = fixture_profile(RANK, 3_000);
    deliver_profile(&handler, &newer_rank).await;
    let value = cached(raw_get(&mut conn, &key).await);
    assert_eq!(
        (value["source"].as_str(), value["rank_tier"].as_i64()),
        (Some("rank"), Some(80))
    );
}

// ---- invalidation ------------------------------------------------------

#[tokio::test]
async fn a_newer_match_drops_the_scout_report_an_older_one_keeps_it() {
    let config = config(&shared_redis_url());
    let handler = handler_on(config.clone()).await;
    let cache = handler.cache();
    let mut conn = raw(&config.redis_url).await;
    let scout = keys::scout_player_key(PRO_PLAYER);
    let other_scout = keys::scout_player_key(PROFILED);
    let marker = cache.redis_key(&keys::latest_match_key(PRO_PLAYER));
    let pro = fixture_match(PRO);

    cache.set(&scout, "report v1", config.scout_ttl()).await;
    cache
        .set(&other_scout, "other report", config.scout_ttl())
        .await;
    assert_ttl_within(&mut conn, &cache.redis_key(&scout), config.scout_ttl()).await;

    // First match seen with the player: newer than nothing.
    deliver_match(&handler, &pro).await;
    assert!(!raw_exists(&mut conn, &cache.redis_key(&scout)).await);
    assert_eq!(cache.get(&scout).await, None);
    assert!(
        raw_exists(&mut conn, &cache.redis_key(&other_scout)).await,
        "a player not in the match keeps their report"
    );
    assert_eq!(
        raw_get(&mut conn, &marker).await,
        Some(pro.start_time.to_string())
    );

    // Redelivery and an older match keep the recomputed report.
    cache.set(&scout, "report v2", config.scout_ttl()).await;
    deliver_match(&handler, &pro).await;
    let older = pro_match_shifted(-1, -86_400);
    deliver_match(&handler, &older).await;
    assert_eq!(cache.get(&scout).await.as_deref(), Some("report v2"));
    assert_eq!(
        raw_get(&mut conn, &marker).await,
        Some(pro.start_time.to_string())
    );
    let older_key = cache.redis_key(&keys::match_key(older.match_id));
    assert!(
        raw_exists(&mut conn, &older_key).await,
        "an older match is still cached itself"
    );

    // A newer match drops it and moves the marker.
    let newer = pro_match_shifted(1, 3_600);
    deliver_match(&handler, &newer).await;
    assert!(!raw_exists(&mut conn, &cache.redis_key(&scout)).await);
    assert_eq!(
        raw_get(&mut conn, &marker).await,
        Some(newer.start_time.to_string())
    );
}

/// Every key under `prefix` with its value, the prefix cut off.
async fn snapshot(conn: &mut MultiplexedConnection, prefix: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for key in raw_keys(conn, &format!("{prefix}*")).await {
        let value = raw_get(conn, &key).await.unwrap();
        found.push((key[prefix.len()..].to_string(), value));
    }
    found
}

/// The handler folds a batch into one pipeline (the last summary of a match,
/// each player's newest start, each account's merged profile): what it leaves
/// must be what the same deliveries leave one at a time. The batch's Redis is
/// new, so its first pipeline also meets `NOSCRIPT` and must load the script.
#[tokio::test]
async fn a_batch_leaves_what_its_deliveries_leave_one_at_a_time() {
    let fresh = PrivateRedis::start().await;
    let (batched, single) = (config(&fresh.url()), config(&fresh.url()));
    let scout = keys::scout_player_key(PRO_PLAYER);
    let profiled_scout = keys::scout_player_key(PROFILED);
    let deliveries = vec![
        delivery(topics::MATCHES, &pro_match_shifted(0, 0)),
        delivery(topics::PLAYERS, &fixture_profile(RANK, 1_000)),
        delivery(topics::MATCHES, &pro_match_shifted(2, 7_200)),
        raw_delivery(topics::MATCHES, b"not avro".to_vec()),
        delivery(topics::MATCHES, &pro_match_shifted(0, 0)),
        delivery(topics::MATCHES, &pro_match_shifted(-1, -86_400)),
        delivery(topics::PLAYERS, &fixture_profile(SUMMARIES, 2_000)),
        delivery(topics::PLAYERS, &fixture_profile(RANK, 500)),
        delivery(topics::MATCHES, &fixture_match(PUB)),
        delivery(topics::PLAYERS, &fixture_profile(SUMMARIES, 2_000)),
    ];
    let mut outcomes = Vec::new();
    for (config, whole) in [(&batched, true), (&single, false)] {
        let handler = handler_on(config.clone()).await;
        let cache = handler.cache();
        cache.set(&scout, "report", config.scout_ttl()).await;
        cache
            .set(&profiled_scout, "report", config.scout_ttl())
            .await;
        let results = if whole {
            handler.handle(&deliveries).await
        } else {
            let mut results = Vec::new();
            for one in &deliveries {
                results.extend(handler.handle(std::slice::from_ref(one)).await);
            }
            results
        };
        assert!(!cache.is_on_fallback(), "every write reached Redis");
        outcomes.push(results.iter().map(Result::is_ok).collect::<Vec<_>>());
    }
    assert_eq!(outcomes[0], outcomes[1]);
    assert_eq!(outcomes[0].iter().filter(|ok| !**ok).count(), 1);

    let mut conn = raw(&fresh.url()).await;
    let left = snapshot(&mut conn, &batched.key_prefix).await;
    assert_eq!(left, snapshot(&mut conn, &single.key_prefix).await);
    let value_of = |key: &str| left.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let newest = pro_match_shifted(2, 7_200);
    assert_eq!(
        value_of(&keys::latest_match_key(PRO_PLAYER)),
        Some(newest.start_time.to_string())
    );
    assert_eq!(value_of(&scout), None, "a newer match dropped the report");
    assert_eq!(
        value_of(&profiled_scout),
        None,
        "a newer match and a new profile dropped it"
    );
    let profile: Value =
        serde_json::from_str(&value_of(&keys::player_key(PROFILED)).unwrap()).unwrap();
    assert_eq!(
        (profile["source"].as_str(), profile["rank_tier"].as_i64()),
        (Some("steam_summaries"), Some(80))
    );
    for id in [0, 2, -1] {
        let m = pro_match_shifted(id, 0);
        assert!(value_of(&keys::match_key(m.match_id)).is_some());
    }
}

#[tokio::test]
async fn set_if_newer_invalidates_only_when_it_writes() {
    let config = config(&shared_redis_url());
    let cache = Cache::connect(config.clone()).await.unwrap();
    let derived = vec!["derived".to_string()];
    let write = |version: i64| NewerWrite {
        key: "marker",
        value: "",
        version,
        version_at: VersionAt::Value,
        ttl: Duration::from_secs(60),
        invalidate: &derived,
    };
    let value = |v: i64| v.to_string();

    cache.set("derived", "x", Duration::from_secs(60)).await;
    let v10 = value(10);
    let written = cache
        .set_if_newer(NewerWrite {
            value: &v10,
            ..write(10)
        })
        .await;
    assert!(written.applied && written.layer == Layer::Redis);
    assert_eq!(cache.get("derived").await, None);

    cache.set("derived", "y", Duration::from_secs(60)).await;
    let v9 = value(9);
    let written = cache
        .set_if_newer(NewerWrite {
            value: &v9,
            ..write(9)
        })
        .await;
    assert!(!written.applied);
    assert_eq!(cache.get("marker").await.as_deref(), Some("10"));
    assert_eq!(cache.get("derived").await.as_deref(), Some("y"));
}

// ---- bad input ---------------------------------------------------------

fn assert_permanent(outcome: &Result<(), HandlerError>, kind: &str) {
    let err = outcome.as_ref().unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(!err.is_retriable(), "{err}");
}

#[tokio::test]
async fn undecodable_or_misrouted_deliveries_fail_permanently() {
    let config = config(&shared_redis_url());
    let handler = handler_on(config.clone()).await;
    let pro = fixture_match(PRO);
    let public = fixture_match(PUB);
    let batch = [
        delivery(topics::MATCHES, &pro),
        raw_delivery(topics::MATCHES, b"definitely not a match".to_vec()),
        delivery(topics::PLAYERS, &pro),
        delivery(topics::MATCHES_ENRICHED, &pro),
        delivery(topics::MATCHES, &public),
    ];

    let outcomes = handler.handle(&batch).await;

    assert_eq!(outcomes.len(), batch.len());
    assert!(outcomes[0].is_ok());
    assert_permanent(&outcomes[1], "decode");
    assert_permanent(&outcomes[2], "decode");
    assert_permanent(&outcomes[3], "unknown_topic");
    assert!(outcomes[4].is_ok(), "a bad delivery does not stop the next");
    let cache = handler.cache();
    assert!(cache.get(&keys::match_key(pro.match_id)).await.is_some());
    assert!(cache.get(&keys::match_key(public.match_id)).await.is_some());
}

// ---- fallback ----------------------------------------------------------

#[tokio::test]
async fn falls_back_while_redis_is_away_and_returns_after_the_retry_interval() {
    let mut server = PrivateRedis::start().await;
    let config = config(&server.url());
    let handler = handler_on(config.clone()).await;
    let cache = handler.cache();
    let pro = fixture_match(PRO);
    let public = fixture_match(PUB);
    let pro_key = keys::match_key(pro.match_id);
    let public_key = keys::match_key(public.match_id);

    deliver_match(&handler, &pro).await;
    let mut conn = raw(&server.url()).await;
    assert!(raw_get(&mut conn, &cache.redis_key(&pro_key))
        .await
        .is_some());
    assert!(!cache.is_on_fallback());

    server.kill();
    let started = Instant::now();
    deliver_match(&handler, &public).await;
    deliver_profile(&handler, &fixture_profile(RANK, 1_000)).await;
    deliver_profile(&handler, &fixture_profile(SUMMARIES, 2_000)).await;
    let away = started.elapsed();

    assert!(cache.is_on_fallback());
    assert!(
        away < Duration::from_secs(3),
        "a dead Redis stalled the handler for {away:?}"
    );
    let counters = cache.counters().snapshot();
    assert_eq!(counters.fallback_activations, 1, "one outage, one switch");
    assert!(counters.redis_errors >= 1);
    // Memory serves what was written during the outage, newest profile included...
    let summary: MatchSummary =
        serde_json::from_str(&cache.get(&public_key).await.unwrap()).unwrap();
    assert_summary_matches_file(&summary, PUB);
    let profile: Value =
        serde_json::from_str(&cache.get(&keys::player_key(PROFILED)).await.unwrap()).unwrap();
    assert_eq!(profile["source"], "steam_summaries");
    assert_eq!(
        cache.get(&keys::latest_match_key(PROFILED)).await,
        Some(public.start_time.to_string())
    );
    // ...but not what only the dead Redis had.
    assert_eq!(cache.get(&pro_key).await, None);

    server.restart().await;
    tokio::time::sleep(Duration::from_millis(RETRY_MS + 200)).await;
    let newer = pro_match_shifted(1, 3_600);
    deliver_match(&handler, &newer).await;

    assert!(
        !cache.is_on_fallback(),
        "back on Redis after the retry interval"
    );
    let mut conn = raw(&server.url()).await;
    let newer_key = keys::match_key(newer.match_id);
    assert!(
        raw_get(&mut conn, &cache.redis_key(&newer_key))
            .await
            .is_some(),
        "new writes land in the restarted Redis"
    );
    assert_eq!(cache.counters().fallback_activations(), 1);
    // Outage writes are not replayed to Redis, but reads still find them in memory.
    assert_eq!(
        raw_get(&mut conn, &cache.redis_key(&public_key)).await,
        None
    );
    assert!(cache.get(&public_key).await.is_some());
    // A delete reaches both layers, so the memory copy cannot resurface.
    assert_eq!(cache.delete(&[public_key.as_str()]).await, Layer::Redis);
    assert_eq!(cache.get(&public_key).await, None);
}

#[tokio::test]
async fn a_hung_redis_times_out_into_the_fallback() {
    let server = PrivateRedis::start().await;
    let config = config(&server.url());
    let handler = handler_on(config.clone()).await;
    let cache = handler.cache();
    deliver_match(&handler, &fixture_match(PUB)).await;
    assert!(!cache.is_on_fallback());

    server.signal("-STOP");
    let started = Instant::now();
    deliver_match(&handler, &fixture_match(PRO)).await;
    let stalled = started.elapsed();
    let pro_key = keys::match_key(3_254_426_673);
    let from_memory = cache.get(&pro_key).await;
    server.signal("-CONT");

    assert!(cache.is_on_fallback());
    assert!(
        stalled >= Duration::from_millis(TIMEOUT_MS) && stalled < Duration::from_secs(2),
        "expected to wait out one {TIMEOUT_MS} ms timeout, waited {stalled:?}"
    );
    assert!(from_memory.is_some());
    assert_eq!(cache.counters().fallback_activations(), 1);

    tokio::time::sleep(Duration::from_millis(RETRY_MS + 200)).await;
    let later = pro_match_shifted(1, 60);
    deliver_match(&handler, &later).await;
    assert!(!cache.is_on_fallback());
    let mut conn = raw(&server.url()).await;
    let key = cache.redis_key(&keys::match_key(later.match_id));
    assert!(raw_get(&mut conn, &key).await.is_some());
}

#[tokio::test]
async fn starts_on_the_fallback_when_redis_is_down_and_caps_memory_ttls() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = CacheConfig {
        fallback_ttl_cap_secs: 1,
        ..config(&format!("redis://127.0.0.1:{port}"))
    };
    let cache = Cache::connect(config).await.unwrap();
    assert!(cache.is_on_fallback(), "nothing listens on {port}");
    assert_eq!(cache.counters().fallback_activations(), 1);

    let layer = cache.set("k", "v", Duration::from_secs(3_600)).await;
    assert_eq!(layer, Layer::Memory);
    assert_eq!(cache.get("k").await.as_deref(), Some("v"));
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    assert_eq!(cache.get("k").await, None, "memory TTL is capped at 1 s");
    let counters = cache.counters().snapshot();
    assert_eq!((counters.hits, counters.misses), (1, 1));
    assert_eq!(counters.fallback_activations, 1);
}

// ---- configuration -----------------------------------------------------

#[tokio::test]
async fn config_has_defaults_and_rejects_nonsense() {
    let parsed: CacheConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(parsed, CacheConfig::default());
    assert_eq!(parsed.key_prefix, "scoutstream:cache:");
    assert_eq!(parsed.match_ttl(), Duration::from_secs(86_400));
    assert_eq!(parsed.player_ttl(), Duration::from_secs(3_600));
    assert_eq!(parsed.scout_ttl(), Duration::from_secs(600));
    assert_eq!(parsed.redis_timeout(), Duration::from_millis(500));

    let parsed: CacheConfig = serde_json::from_str(r#"{"player_ttl_secs": 60}"#).unwrap();
    assert_eq!(parsed.player_ttl_secs, 60);
    assert_eq!(parsed.match_ttl_secs, 86_400);
    assert!(serde_json::from_str::<CacheConfig>(r#"{"player_ttl": 60}"#).is_err());

    let zero = CacheConfig {
        scout_ttl_secs: 0,
        ..CacheConfig::default()
    };
    let err = Cache::connect(zero).await.err().unwrap();
    assert!(
        matches!(
            err,
            CacheError::InvalidConfig {
                field: "scout_ttl_secs",
                ..
            }
        ),
        "{err}"
    );
    let bad_url = CacheConfig {
        redis_url: "not a url".into(),
        ..CacheConfig::default()
    };
    let err = Cache::connect(bad_url).await.err().unwrap();
    assert!(matches!(err, CacheError::InvalidUrl { .. }), "{err}");
}
