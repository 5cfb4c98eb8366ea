//! Idempotency and order: replays, reordering, concurrent writers, older profiles.

use std::time::Instant;

use consumers::persist::PersistEvent;
use producers::loadgen::generate_matches;
use schemas::{MatchCompleted, PlayerProfile};

use super::*;
use crate::tables::*;

// ---------------------------------------------------------------------------
// Idempotency and order.

pub(crate) async fn replays_and_reordering_leave_identical_tables(env: Env) {
    let events = all_fixtures();
    assert_eq!(events.len(), 5);

    // One event per transaction, in file order.
    let forward = env.store().await;
    for event in &events {
        forward.write(std::slice::from_ref(event)).await.unwrap();
    }
    let expected = dump(&forward).await;
    assert_eq!(expected["matches"].len(), 2);
    assert_eq!(expected["player_matches"].len(), 20);
    assert_eq!(expected["picks_bans"].len(), 20);
    assert_eq!(expected["teams"].len(), 2);
    assert_eq!(expected["players"].len(), 1);
    assert_eq!(expected["hero_pool"].len(), 20);

    // Everything again, in one batch: nothing changes.
    forward.write(&events).await.unwrap();
    assert_eq!(dump(&forward).await, expected);

    // A fresh store, reversed and duplicated in one batch: the same tables.
    let reversed = env.store().await;
    let mut backwards: Vec<PersistEvent> = events.iter().rev().cloned().collect();
    backwards.extend(events.iter().rev().cloned());
    reversed.write(&backwards).await.unwrap();
    assert_eq!(dump(&reversed).await, expected);

    // The dump compares real values: one changed field shows.
    let mut changed = fixture_match("details_api_pro.json");
    changed.players[0].kills += 1;
    reversed.write_matches(&[changed]).await.unwrap();
    assert_ne!(dump(&reversed).await, expected);
}

pub(crate) async fn loadgen_replay_keeps_counts_and_hero_pool(env: Env) {
    let store = env.store().await;
    let matches = generate_matches(2_000, 7);
    let expected_pool = expected_hero_pool(&matches);

    // One batch of 2,000 matches: 20,000 player rows, chunked under the bind limit.
    let started = Instant::now();
    let summary = store.write_matches(&matches).await.unwrap();
    let one_batch = started.elapsed();
    assert_eq!((summary.matches, summary.player_rows), (2_000, 20_000));

    assert_eq!(count(&store, "matches").await, 2_000);
    assert_eq!(count(&store, "player_matches").await, 20_000);
    let named = matches
        .iter()
        .flat_map(|m| &m.players)
        .filter(|p| p.account_id.is_some())
        .count() as i64;
    assert_eq!(
        count(&store, "player_matches WHERE account_id IS NOT NULL").await,
        named
    );
    assert_eq!(hero_pool(&store).await, expected_pool);
    let before = dump(&store).await;

    // Replayed as the runner would deliver it, 500 at a time.
    let started = Instant::now();
    for batch in matches.chunks(500) {
        store.write_matches(batch).await.unwrap();
    }
    let replay = started.elapsed();
    assert_eq!(dump(&store).await, before);

    // hero_pool agrees with player_matches per account, games and wins.
    let per_account = "SELECT account_id, COUNT(*), SUM(CASE WHEN won THEN 1 ELSE 0 END) \
                       FROM player_matches WHERE account_id IS NOT NULL \
                       GROUP BY account_id ORDER BY account_id";
    let from_rows: Vec<(i64, i64, i64)> = fetch(&store, per_account).await;
    let from_pool: Vec<(i64, i64, i64)> = fetch(
        &store,
        "SELECT account_id, CAST(SUM(games) AS BIGINT), CAST(SUM(wins) AS BIGINT) FROM hero_pool \
         GROUP BY account_id ORDER BY account_id",
    )
    .await;
    assert_eq!(from_pool, from_rows);
    assert!(from_rows.len() > 990, "{} accounts", from_rows.len());
    eprintln!(
        "[{}] 2,000 loadgen matches: one batch {one_batch:?}, replay in batches of 500 {replay:?}",
        store.backend()
    );
}

/// Writers on several partitions at once share accounts: each account's hero
/// pool must still count every committed match.
pub(crate) async fn concurrent_writers_agree_on_hero_pool(env: Env) {
    let store = env.store().await;
    let matches = generate_matches(800, 11);
    let writers = 4;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            let mine: Vec<MatchCompleted> =
                matches.iter().skip(w).step_by(writers).cloned().collect();
            tokio::spawn(async move {
                for batch in mine.chunks(25) {
                    store.write_matches(batch).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(count(&store, "matches").await, 800);
    assert_eq!(hero_pool(&store).await, expected_hero_pool(&matches));
}

pub(crate) async fn older_profile_never_overwrites_newer(env: Env) {
    let store = env.store().await;
    let profile =
        |observed_at_ms, persona: Option<&str>, rank_tier, country: Option<&str>| PlayerProfile {
            account_id: 42,
            persona_name: persona.map(str::to_string),
            rank_tier,
            leaderboard_rank: None,
            country: country.map(str::to_string),
            last_seen: None,
            avatar_url: None,
            profile_url: None,
            observed_at_ms,
            source: "json".into(),
        };
    let state = |persona: &str, rank: i32, country: Option<&str>, at: i64| ProfileRecord {
        account_id: 42,
        persona_name: Some(persona.into()),
        rank_tier: Some(rank),
        leaderboard_rank: None,
        country: country.map(str::to_string),
        last_seen: None,
        avatar_url: None,
        profile_url: None,
        observed_at_ms: at,
    };

    store
        .write_profiles(&[profile(2_000, Some("New"), Some(80), None)])
        .await
        .unwrap();
    // Older: its name and rank lose, its country fills a gap.
    store
        .write_profiles(&[profile(1_000, Some("Old"), Some(70), Some("SE"))])
        .await
        .unwrap();
    assert_eq!(
        profile_record(&store, 42).await,
        Some(state("New", 80, Some("SE"), 2_000))
    );
    // Newer: overwrites what it carries; its missing name erases nothing.
    store
        .write_profiles(&[profile(3_000, None, Some(81), Some("NO"))])
        .await
        .unwrap();
    assert_eq!(
        profile_record(&store, 42).await,
        Some(state("New", 81, Some("NO"), 3_000))
    );
    // The older one again, in one batch with a newer name: order in the batch holds.
    store
        .write_profiles(&[
            profile(1_000, Some("Old"), Some(70), Some("SE")),
            profile(4_000, Some("Newest"), None, None),
        ])
        .await
        .unwrap();
    assert_eq!(
        profile_record(&store, 42).await,
        Some(state("Newest", 81, Some("NO"), 4_000))
    );

    // The fixtures: a rank record, then a newer Steam summary, or the other way round.
    for events in [
        [
            fixture("retriever_player.json"),
            fixture("summaries_api.json"),
        ],
        [
            fixture("summaries_api.json"),
            fixture("retriever_player.json"),
        ],
    ] {
        let store = env.store().await;
        for event in events {
            store.write(&event).await.unwrap();
        }
        assert_eq!(
            profile_record(&store, CHERNO_BILLY).await,
            Some(ProfileRecord {
                account_id: CHERNO_BILLY,
                persona_name: Some("Cherno Billy".into()),
                rank_tier: Some(80),
                leaderboard_rank: Some(1476),
                country: None,
                last_seen: Some(1_444_167_613),
                avatar_url: Some(
                    "https://steamcdn-a.akamaihd.net/steamcommunity/public/images/avatars/2c/\
                     2c3de10a19eec58c2ddb3f41bd2bbb0faf3d2867_full.jpg"
                        .into()
                ),
                profile_url: Some("http://steamcommunity.com/profiles/76561198080534862/".into()),
                observed_at_ms: SUMMARY_OBSERVED_AT_MS,
            })
        );
    }
}
