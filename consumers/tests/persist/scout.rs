//! Scout reports of persisted data.

use std::collections::BTreeMap;

use consumers::persist::scout::{HeroCount, HeroPoolEntry, PlayerMatchSummary, TeamMatchSummary};
use producers::loadgen::generate_matches;
use schemas::{MatchCompleted, Team, ANONYMOUS_ACCOUNT_ID};

use super::*;
use crate::tables::*;

// ---------------------------------------------------------------------------
// Scout reports.

pub(crate) async fn player_report_matches_the_fixtures(env: Env) {
    let store = env.store().await;
    store.write(&all_fixtures()).await.unwrap();

    let report = store.player_report(CHERNO_BILLY).await.unwrap().unwrap();
    assert_eq!(report.persona_name.as_deref(), Some("Cherno Billy"));
    assert_eq!(
        (report.rank_tier, report.leaderboard_rank),
        (Some(80), Some(1476))
    );
    assert_eq!((report.games, report.wins), (1, 1));
    assert_eq!(
        report.hero_pool,
        [HeroPoolEntry {
            hero_id: 100,
            games: 1,
            wins: 1,
            win_rate: 1.0,
            last_played: 1_441_835_947,
        }]
    );
    assert_eq!(
        report.recent_matches,
        [PlayerMatchSummary {
            match_id: PUBLIC_MATCH,
            start_time: 1_441_835_947,
            hero_id: 100,
            kills: 8,
            deaths: 6,
            assists: 11,
            won: true,
        }]
    );
    let averages = report.averages.clone().unwrap();
    assert_eq!(
        (averages.kills, averages.deaths, averages.assists),
        (8.0, 6.0, 11.0)
    );
    assert!((averages.kda - 19.0 / 6.0).abs() < 1e-9, "{}", averages.kda);
    assert_eq!((averages.gold_per_min, averages.xp_per_min), (443.0, 527.0));
    // The report is what the API serves: it must serialise.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hero_pool"][0]["hero_id"], 100);

    // No profile: the name comes from the game coordinator's match.
    let revealed = store.player_report(109_378_329).await.unwrap().unwrap();
    assert_eq!(revealed.persona_name.as_deref(), Some("buffalobill"));
    assert_eq!(revealed.rank_tier, None);
    assert_eq!(revealed.recent_matches[0].hero_id, 73);
    assert_eq!(
        (
            revealed.recent_matches[0].kills,
            revealed.recent_matches[0].deaths
        ),
        (6, 6)
    );

    // A pro who lost, with no name anywhere.
    let pro = store.player_report(87_382_579).await.unwrap().unwrap();
    assert_eq!((pro.games, pro.wins, pro.persona_name), (1, 0, None));
    assert_eq!(pro.hero_pool[0].win_rate, 0.0);
    assert_eq!(pro.averages.unwrap().kda, (3.0 + 5.0) / 6.0);

    assert_eq!(store.player_report(5).await.unwrap(), None);
    assert_eq!(
        store.player_report(ANONYMOUS_ACCOUNT_ID).await.unwrap(),
        None
    );

    // Several games: newest first, averages over all of them.
    let matches = generate_matches(1_500, 3);
    store.write_matches(&matches).await.unwrap();
    let busiest = busiest_account(&matches);
    let report = store.player_report(busiest).await.unwrap().unwrap();
    let mut games: Vec<(i64, i64, &schemas::PlayerPerformance)> = matches
        .iter()
        .flat_map(|m| m.players.iter().map(move |p| (m.start_time, m.match_id, p)))
        .filter(|(_, _, p)| p.account_id == Some(busiest))
        .collect();
    games.sort_by_key(|(start, id, _)| std::cmp::Reverse((*start, *id)));
    assert_eq!(report.games, games.len() as i64);
    assert_eq!(report.recent_matches.len(), 10.min(games.len()));
    let recent_ids: Vec<i64> = report.recent_matches.iter().map(|r| r.match_id).collect();
    let expected_ids: Vec<i64> = games.iter().take(10).map(|(_, id, _)| *id).collect();
    assert_eq!(recent_ids, expected_ids);
    let gpm = games
        .iter()
        .map(|(_, _, p)| f64::from(p.gold_per_min))
        .sum::<f64>()
        / games.len() as f64;
    assert!((report.averages.unwrap().gold_per_min - gpm).abs() < 1e-9);
    let pool_games: i64 = report.hero_pool.iter().map(|h| h.games).sum();
    assert_eq!(pool_games, report.games);
}

fn busiest_account(matches: &[MatchCompleted]) -> i64 {
    let mut games: BTreeMap<i64, usize> = BTreeMap::new();
    for id in matches
        .iter()
        .flat_map(|m| &m.players)
        .filter_map(|p| p.account_id)
    {
        *games.entry(id).or_default() += 1;
    }
    let (account, count) = games.into_iter().max_by_key(|(id, n)| (*n, *id)).unwrap();
    assert!(count > 10, "the busiest account has only {count} games");
    account
}

pub(crate) async fn team_report_matches_the_fixtures(env: Env) {
    let store = env.store().await;
    store.write(&all_fixtures()).await.unwrap();
    let heroes = |ids: [i32; 5], wins: i64| -> Vec<HeroCount> {
        ids.into_iter()
            .map(|hero_id| HeroCount {
                hero_id,
                count: 1,
                wins,
            })
            .collect()
    };

    let planet_odd = store.team_report(PLANET_ODD).await.unwrap().unwrap();
    assert_eq!(planet_odd.name.as_deref(), Some("Planet Odd"));
    assert_eq!((planet_odd.games, planet_odd.wins), (1, 0));
    assert_eq!(
        planet_odd.recent_matches,
        [TeamMatchSummary {
            match_id: PRO_MATCH,
            start_time: 1_497_678_766,
            is_radiant: true,
            opponent_id: Some(NEWBEE),
            opponent_name: Some("Newbee".into()),
            score: Some(15),
            opponent_score: Some(23),
            won: false,
        }]
    );
    assert_eq!(planet_odd.most_picked, heroes([18, 41, 101, 107, 110], 0));
    assert_eq!(planet_odd.most_banned, heroes([25, 60, 70, 88, 89], 0));

    let newbee = store.team_report(NEWBEE).await.unwrap().unwrap();
    assert_eq!((newbee.games, newbee.wins), (1, 1));
    let only = &newbee.recent_matches[0];
    assert!(!only.is_radiant && only.won);
    assert_eq!(
        (only.opponent_id, only.score, only.opponent_score),
        (Some(PLANET_ODD), Some(23), Some(15))
    );
    assert_eq!(newbee.most_picked, heroes([6, 13, 16, 20, 94], 1));
    assert_eq!(newbee.most_banned, heroes([43, 55, 74, 90, 99], 1));

    assert_eq!(store.team_report(1).await.unwrap(), None);
}

/// Copies of the pro match at other times, with other names for Planet Odd.
fn pro_match_at(match_id: i64, start_time: i64, radiant_name: Option<&str>) -> MatchCompleted {
    let mut m = fixture_match("details_api_pro.json");
    m.match_id = match_id;
    m.start_time = start_time;
    m.radiant_team = Some(Team {
        team_id: PLANET_ODD,
        name: radiant_name.map(str::to_string),
    });
    m
}

pub(crate) async fn team_name_follows_the_newest_match(env: Env) {
    let store = env.store().await;
    let base = 1_497_678_766;
    store
        .write_matches(&[
            fixture_match("details_api_pro.json"),
            pro_match_at(1, base + 100, Some("Planet Even")),
            pro_match_at(2, base - 100, Some("Planet Old")),
            pro_match_at(3, base + 200, None),
        ])
        .await
        .unwrap();
    let report = store.team_report(PLANET_ODD).await.unwrap().unwrap();
    assert_eq!(report.name.as_deref(), Some("Planet Even"));
    assert_eq!((report.games, report.wins), (4, 0));
    let order: Vec<i64> = report.recent_matches.iter().map(|m| m.match_id).collect();
    assert_eq!(order, [3, 1, PRO_MATCH, 2]);
    assert_eq!(report.most_picked[0].count, 4);
    let last_match_time: Vec<(i64,)> = fetch(
        &store,
        &format!("SELECT last_match_time FROM teams WHERE team_id = {PLANET_ODD}"),
    )
    .await;
    assert_eq!(last_match_time, [(base + 200,)]);

    // A newer match with a new name renames the team.
    store
        .write_matches(&[pro_match_at(4, base + 300, Some("Planet Odd Again"))])
        .await
        .unwrap();
    let report = store.team_report(PLANET_ODD).await.unwrap().unwrap();
    assert_eq!(report.name.as_deref(), Some("Planet Odd Again"));
}
