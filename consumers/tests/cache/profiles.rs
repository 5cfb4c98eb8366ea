//! Profiles: the newest wins whatever the delivery order.

use consumers::cache::keys;
use serde_json::Value;

use super::*;

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
