//! Rows, value by value, against the fixtures.

use consumers::persist::PersistError;
use schemas::{PlayerProfile, ANONYMOUS_ACCOUNT_ID};
use sqlx::types::Json;

use super::*;
use crate::tables::*;

// ---------------------------------------------------------------------------
// Rows, value by value.

pub(crate) async fn pro_match_rows_match_the_fixture(env: Env) {
    let store = env.store().await;
    let summary = store
        .write_matches(&[fixture_match("details_api_pro.json")])
        .await
        .unwrap();
    assert_eq!((summary.matches, summary.player_rows), (1, 10));
    assert_eq!(summary.accounts_recomputed, 10);

    assert_eq!(
        match_record(&store, PRO_MATCH).await,
        MatchRecord {
            match_id: PRO_MATCH,
            match_seq_num: Some(2_843_189_211),
            start_time: 1_497_678_766,
            duration_secs: 1888,
            radiant_win: false,
            game_mode: 2,
            lobby_type: 1,
            league_id: Some(5399),
            cluster: 225,
            radiant_team_id: Some(PLANET_ODD),
            radiant_team_name: Some("Planet Odd".into()),
            dire_team_id: Some(NEWBEE),
            dire_team_name: Some("Newbee".into()),
            radiant_score: Some(15),
            dire_score: Some(23),
            source: "steam_api".into(),
        }
    );

    let picks_bans: Vec<(i32, bool, i32, i32)> = fetch(
        &store,
        &format!(
            "SELECT ord, is_pick, hero_id, team FROM picks_bans \
             WHERE match_id = {PRO_MATCH} ORDER BY ord"
        ),
    )
    .await;
    assert_eq!(picks_bans.len(), 20);
    assert_eq!(picks_bans[0], (0, false, 99, 1));
    assert_eq!(picks_bans[4], (4, true, 16, 1));
    assert_eq!(picks_bans[19], (19, true, 101, 0));
    let radiant_picks: Vec<i32> = picks_bans
        .iter()
        .filter(|(_, is_pick, _, team)| *is_pick && *team == 0)
        .map(|(_, _, hero, _)| *hero)
        .collect();
    assert_eq!(radiant_picks, [41, 110, 107, 18, 101]);

    let players = player_records(&store, PRO_MATCH).await;
    assert_eq!(players.len(), 10);
    let slot_131 = &players[&131];
    assert_eq!(slot_131.account_id, Some(87_012_746));
    assert_eq!(
        (
            slot_131.hero_id,
            slot_131.kills,
            slot_131.deaths,
            slot_131.assists
        ),
        (13, 7, 1, 9)
    );
    assert_eq!((slot_131.gold_per_min, slot_131.xp_per_min), (464, 570));
    assert_eq!(slot_131.gold, Some(3572));
    assert_eq!(slot_131.backpack, Some(Json(vec![21, 0, 0])));
    assert_eq!(slot_131.items, Some(Json(vec![100, 63, 60, 1, 46, 185])));
    assert!(!slot_131.is_radiant && slot_131.won);
    assert_eq!(players[&2].leaver_status, Some(1));
    assert!(players[&0].is_radiant && !players[&0].won);

    let teams: Vec<(i64, Option<String>, i64)> = fetch(
        &store,
        "SELECT team_id, name, last_match_time FROM teams ORDER BY team_id",
    )
    .await;
    assert_eq!(
        teams,
        [
            (NEWBEE, Some("Newbee".into()), 1_497_678_766),
            (PLANET_ODD, Some("Planet Odd".into()), 1_497_678_766),
        ]
    );
}

pub(crate) async fn public_match_rows_match_the_fixture(env: Env) {
    let store = env.store().await;
    store
        .write_matches(&[fixture_match("details_api.json")])
        .await
        .unwrap();
    let record = match_record(&store, PUBLIC_MATCH).await;
    assert_eq!(record.start_time, 1_441_835_947);
    assert_eq!((record.duration_secs, record.radiant_win), (2220, true));
    assert_eq!((record.game_mode, record.lobby_type), (22, 7));
    assert_eq!((record.radiant_team_id, record.radiant_score), (None, None));
    assert_eq!(count(&store, "picks_bans").await, 0);

    let players = player_records(&store, PUBLIC_MATCH).await;
    assert_eq!(
        players[&0],
        PlayerRecord {
            player_slot: 0,
            account_id: Some(CHERNO_BILLY),
            hero_id: 100,
            kills: 8,
            deaths: 6,
            assists: 11,
            last_hits: 69,
            denies: 2,
            gold_per_min: 443,
            xp_per_min: 527,
            level: 19,
            hero_damage: Some(12_234),
            tower_damage: Some(537),
            hero_healing: Some(0),
            gold: Some(2731),
            net_worth: None,
            leaver_status: Some(0),
            items: Some(Json(vec![50, 152, 96, 46, 36, 30])),
            backpack: None,
            persona_name: None,
            is_radiant: true,
            won: true,
            start_time: 1_441_835_947,
        }
    );
    let anonymous: Vec<i32> = players
        .values()
        .filter(|p| p.account_id.is_none())
        .map(|p| p.player_slot)
        .collect();
    assert_eq!(anonymous, [1, 131, 132]);
    assert_eq!(players[&132].hero_id, 1);
    assert!(!players[&132].won);

    // Seven named players, one hero each; anonymous ones leave no trace.
    let pool = hero_pool(&store).await;
    assert_eq!(pool.len(), 7);
    assert_eq!(pool[&(CHERNO_BILLY, 100)], (1, 1, 1_441_835_947));
    assert_eq!(pool[&(44_152_866, 6)], (1, 0, 1_441_835_947));
    assert_eq!(count(&store, "players").await, 0);
}

pub(crate) async fn game_coordinator_reveals_anonymous_players(env: Env) {
    let store = env.store().await;
    store
        .write_matches(&[fixture_match("details_api.json")])
        .await
        .unwrap();
    assert_eq!(
        player_records(&store, PUBLIC_MATCH).await[&1].account_id,
        None
    );

    store
        .write_matches(&[fixture_match("retriever_match.json")])
        .await
        .unwrap();
    let players = player_records(&store, PUBLIC_MATCH).await;
    let slot_1 = &players[&1];
    assert_eq!(slot_1.account_id, Some(109_378_329));
    assert_eq!(slot_1.net_worth, Some(32_064));
    assert_eq!(slot_1.persona_name.as_deref(), Some("buffalobill"));
    // Only the Steam API knows hero damage: NULL from the coordinator keeps it.
    assert_eq!(slot_1.hero_damage, Some(6380));
    assert_eq!(slot_1.backpack, Some(Json(vec![0, 0, 0])));
    assert_eq!(players[&0].net_worth, Some(13_061));
    assert_eq!(players[&131].account_id, Some(106_823_512));
    assert_eq!(players[&132].account_id, Some(86_751_979));
    assert!(players.values().all(|p| p.account_id.is_some()));

    let record = match_record(&store, PUBLIC_MATCH).await;
    assert_eq!(record.source, "game_coordinator");
    // The coordinator sends league 0 and no sequence number: known values stay.
    assert_eq!(record.league_id, Some(5399));
    assert_eq!(record.match_seq_num, Some(1_584_699_503));

    let pool = hero_pool(&store).await;
    assert_eq!(pool.len(), 10);
    assert_eq!(pool[&(109_378_329, 73)], (1, 1, 1_441_835_947));
    assert_eq!(count(&store, "player_matches").await, 10);
}

pub(crate) async fn anonymous_marker_never_creates_players(env: Env) {
    let store = env.store().await;
    let mut m = fixture_match("retriever_match.json");
    // A JSON publisher may send Steam's marker instead of leaving the id out.
    m.players[0].account_id = Some(ANONYMOUS_ACCOUNT_ID);
    m.players[1].account_id = None;
    store.write_matches(&[m]).await.unwrap();
    let players = player_records(&store, PUBLIC_MATCH).await;
    assert_eq!(
        (players[&0].account_id, players[&1].account_id),
        (None, None)
    );
    let accounts: Vec<(i64,)> = fetch(&store, "SELECT DISTINCT account_id FROM hero_pool").await;
    assert_eq!(accounts.len(), 8);
    assert!(!accounts.contains(&(ANONYMOUS_ACCOUNT_ID,)));
    assert!(!accounts.contains(&(CHERNO_BILLY,)));

    let anonymous = PlayerProfile {
        account_id: ANONYMOUS_ACCOUNT_ID,
        persona_name: Some("ghost".into()),
        rank_tier: None,
        leaderboard_rank: None,
        country: None,
        last_seen: None,
        avatar_url: None,
        profile_url: None,
        observed_at_ms: 1,
        source: "json".into(),
    };
    let err = store.write_profiles(&[anonymous]).await.unwrap_err();
    assert!(matches!(err, PersistError::Invalid(_)), "{err}");
    assert!(!err.is_retriable());
    assert_eq!(count(&store, "players").await, 0);
}

/// A better source that puts another account or hero in a slot moves the
/// game out of the old account's (or hero's) pool; a worse one cannot.
pub(crate) async fn corrected_slots_leave_the_old_hero_pool(env: Env) {
    let steam = fixture_match("details_api.json");
    let mut coordinator = fixture_match("retriever_match.json");
    coordinator.players[0].account_id = Some(999);
    coordinator.players[2].hero_id = 5;
    for order in [[&steam, &coordinator], [&coordinator, &steam]] {
        let store = env.store().await;
        for m in order {
            store.write_matches(std::slice::from_ref(m)).await.unwrap();
        }
        let pool = hero_pool(&store).await;
        assert!(
            !pool.keys().any(|(account, _)| *account == CHERNO_BILLY),
            "{pool:?}"
        );
        assert_eq!(pool[&(999, 100)], (1, 1, 1_441_835_947));
        assert!(!pool.contains_key(&(122_866_507, 104)));
        assert_eq!(pool[&(122_866_507, 5)], (1, 1, 1_441_835_947));
        assert_eq!(pool, expected_hero_pool(&[coordinator.clone()]));
        assert_eq!(store.player_report(CHERNO_BILLY).await.unwrap(), None);
    }
}

/// A version of a known match that carries no player rows, in one batch
/// with a new match: the known match keeps its rows, and they stay counted.
pub(crate) async fn a_version_without_players_keeps_the_counted_slots(env: Env) {
    let store = env.store().await;
    let steam = fixture_match("details_api.json");
    store
        .write_matches(std::slice::from_ref(&steam))
        .await
        .unwrap();
    let mut without_players = steam.clone();
    without_players.players.clear();
    let pro = fixture_match("details_api_pro.json");
    store
        .write_matches(&[without_players, pro.clone()])
        .await
        .unwrap();
    assert_eq!(count(&store, "player_matches").await, 20);
    assert_eq!(hero_pool(&store).await, expected_hero_pool(&[steam, pro]));
}

/// Deleting a match takes its player rows and picks with it: a foreign key's
/// `ON DELETE CASCADE` on SQLite and for picks, a statement trigger for
/// PostgreSQL's player rows (their key is gone: see migration 0007).
pub(crate) async fn deleting_a_match_deletes_its_rows(env: Env) {
    let store = env.store().await;
    store
        .write_matches(&[
            fixture_match("details_api_pro.json"),
            fixture_match("details_api.json"),
        ])
        .await
        .unwrap();
    let player_rows_of = |id| format!("player_matches WHERE match_id = {id}");
    assert_eq!(count(&store, &player_rows_of(PRO_MATCH)).await, 10);

    let deleted: Vec<(i64,)> = fetch(
        &store,
        &format!("DELETE FROM matches WHERE match_id = {PRO_MATCH} RETURNING match_id"),
    )
    .await;
    assert_eq!(deleted, vec![(PRO_MATCH,)]);
    assert_eq!(count(&store, &player_rows_of(PRO_MATCH)).await, 0);
    let picks_of_pro_match = format!("picks_bans WHERE match_id = {PRO_MATCH}");
    assert_eq!(count(&store, &picks_of_pro_match).await, 0);
    assert_eq!(count(&store, &player_rows_of(PUBLIC_MATCH)).await, 10);
}
