//! Invalidation: newer matches drop scout reports, batches against single deliveries, set_if_newer.

use std::time::Duration;

use consumers::cache::{keys, Cache, Layer, NewerWrite, VersionAt};
use pipeline::runner::Handler;
use redis::aio::MultiplexedConnection;
use schemas::topics;
use serde_json::Value;

use super::*;

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
