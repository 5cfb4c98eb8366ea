//! Hero-pool deltas against a full recount, on random histories.

use consumers::persist::Store;
use schemas::{MatchCompleted, ANONYMOUS_ACCOUNT_ID};

use super::*;
use crate::tables::*;

// ---------------------------------------------------------------------------
// Hero-pool deltas against a full recount, on random histories.

/// One version of a match as some source saw it: who played which hero.
#[derive(Debug, Clone)]
struct MatchVersion {
    match_id: i64,
    source: &'static str,
    start_time: i64,
    radiant_win: bool,
    /// Per slot: an account index (`None`: anonymous) and a hero.
    slots: Vec<(Option<i64>, i32)>,
}

fn match_version() -> impl proptest::strategy::Strategy<Value = MatchVersion> {
    use proptest::prelude::*;
    let slot = (prop::option::weighted(0.8, 0..6i64), 1..5i32);
    (
        1..6i64,
        prop::sample::select(vec!["steam_api", "game_coordinator", "json"]),
        prop::sample::select(vec![1_000i64, 2_000, 3_000]),
        any::<bool>(),
        prop::collection::vec(slot, 10),
    )
        .prop_map(
            |(match_id, source, start_time, radiant_win, slots)| MatchVersion {
                match_id,
                source,
                start_time,
                radiant_win,
                slots,
            },
        )
}

/// `version` laid over the public fixture match: ids, accounts, heroes,
/// times and the winner vary; every other field stays real.
fn versioned(template: &MatchCompleted, version: &MatchVersion) -> MatchCompleted {
    let mut m = template.clone();
    m.match_id = version.match_id;
    m.source = version.source.to_string();
    m.start_time = version.start_time;
    m.radiant_win = version.radiant_win;
    for (player, (account, hero)) in m.players.iter_mut().zip(&version.slots) {
        player.account_id = Some(account.map_or(ANONYMOUS_ACCOUNT_ID, |a| 1_000 + a));
        player.hero_id = *hero;
    }
    m
}

/// `hero_pool` as a full recount of `player_matches` gives it.
async fn recounted_hero_pool(store: &Store) -> HeroPool {
    let rows: Vec<(i64, i32, i64, i64, i64)> = fetch(
        store,
        "SELECT account_id, hero_id, CAST(COUNT(*) AS BIGINT), \
         CAST(SUM(CASE WHEN won THEN 1 ELSE 0 END) AS BIGINT), MAX(start_time) \
         FROM player_matches WHERE account_id IS NOT NULL GROUP BY account_id, hero_id",
    )
    .await;
    rows.into_iter()
        .map(|(account, hero, games, wins, last)| ((account, hero), (games, wins, last)))
        .collect()
}

async fn clear_tables(store: &Store) {
    for table in [
        "hero_pool",
        "picks_bans",
        "player_matches",
        "matches",
        "teams",
    ] {
        let statement = format!("DELETE FROM {table}");
        match store {
            Store::Postgres(pool) => sqlx::query(&statement).execute(pool).await.map(|_| ()),
            Store::Sqlite(pool) => sqlx::query(&statement).execute(pool).await.map(|_| ()),
        }
        .unwrap();
    }
}

/// Random batches of match versions (new matches, replays, a better or worse
/// source correcting slots, repeats inside one batch), written in order: after
/// every batch the maintained pools equal a recount.
pub(crate) async fn hero_pool_deltas_equal_a_recount_under_random_writes(env: Env) {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let store = env.store().await;
    let template = fixture_match("details_api.json");
    let histories = prop::collection::vec(prop::collection::vec(match_version(), 1..6), 1..8);
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(Config {
        cases: 32,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&histories, |batches| {
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                clear_tables(&store).await;
                for batch in &batches {
                    let matches: Vec<MatchCompleted> =
                        batch.iter().map(|v| versioned(&template, v)).collect();
                    store.write_matches(&matches).await.unwrap();
                    let (kept, recounted) =
                        (hero_pool(&store).await, recounted_hero_pool(&store).await);
                    prop_assert_eq!(kept, recounted, "after batch {:?}", batch);
                }
                Ok(())
            })
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
