//! The in-memory fallback while Redis is away, hung or down at start.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use consumers::cache::{keys, Cache, CacheConfig, Layer, MatchSummary};
use serde_json::Value;

use super::*;
use crate::matches::assert_summary_matches_file;

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
