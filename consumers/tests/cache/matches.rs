//! Matches: summaries with their TTL, and no marker for anonymous players.

use consumers::cache::{keys, MatchSummary};
use schemas::ANONYMOUS_ACCOUNT_ID;

use super::*;

// ---- matches -----------------------------------------------------------

/// The cached summary agrees with the fixture file, field for field.
pub(crate) fn assert_summary_matches_file(summary: &MatchSummary, name: &str) {
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
