//! A client that is not ours publishes JSON: `redis-cli XADD` writes a match
//! into the stream of its key's partition, and our subscription and codec read it.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use pipeline::bus::{partition_for_key, Bus};
use schemas::{Codec, MatchCompleted};

const MATCH_JSON: &str = r#"{"match_id": 3254426673, "start_time": 1497678766, "duration_secs": 1888,
 "radiant_win": false, "game_mode": 2, "lobby_type": 1, "league_id": 5399, "cluster": 225,
 "source": "json", "players": [{"account_id": 87382579, "player_slot": 0, "hero_id": 107,
 "kills": 3, "deaths": 6, "assists": 5, "last_hits": 17, "denies": 6, "gold_per_min": 190,
 "xp_per_min": 232, "level": 12, "items": [0, 0, 0, 214, 181, 34]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_published_with_redis_cli_is_consumed_and_decoded() {
    let prefix = format!("{}:", common::unique("foreign"));
    let bus = common::redis_bus(&prefix).await;
    bus.ensure_topic("matches", common::PARTITIONS)
        .await
        .unwrap();
    let key = "3254426673";
    let stream = bus.stream_key(
        "matches",
        partition_for_key(key.as_bytes(), common::PARTITIONS),
    );
    let url = common::redis_url();
    let status = Command::new("redis-cli")
        .args(["-u", &url, "XADD", &stream, "*", "k", key, "v", MATCH_JSON])
        .status()
        .expect("redis-cli runs");
    assert!(status.success());

    let mut subscription = bus
        .subscribe("foreign-readers", &["matches".to_string()])
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..20 {
        got = subscription
            .poll(10, Duration::from_millis(250))
            .await
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1, "the entry redis-cli wrote arrives");
    let decoded: MatchCompleted = Codec::default().decode(&got[0].payload).unwrap();
    assert_eq!(decoded.match_id, 3_254_426_673);
    assert!(!decoded.radiant_win);
    assert_eq!(decoded.players[0].account_id, Some(87_382_579));
    assert_eq!(decoded.players[0].items, vec![0, 0, 0, 214, 181, 34]);
    assert!(
        decoded.picks_bans.is_empty(),
        "left out by the publisher, defaulted by us"
    );
    subscription.ack(&got).await.unwrap();
    subscription.close().await.unwrap();
}
