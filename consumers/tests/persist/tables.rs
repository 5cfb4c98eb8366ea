//! Reading tables back, on either backend.

use std::collections::BTreeMap;

use consumers::persist::Store;
use schemas::{MatchCompleted, ANONYMOUS_ACCOUNT_ID};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{FromRow, Row};

// ---------------------------------------------------------------------------
// Reading tables back, on either backend.

pub(crate) async fn fetch<T>(store: &Store, sql: &str) -> Vec<T>
where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
{
    match store {
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    }
}

pub(crate) async fn count(store: &Store, from_where: &str) -> i64 {
    let rows: Vec<(i64,)> = fetch(store, &format!("SELECT COUNT(*) FROM {from_where}")).await;
    rows[0].0
}

#[derive(Debug, PartialEq, FromRow)]
pub(crate) struct MatchRecord {
    pub(crate) match_id: i64,
    pub(crate) match_seq_num: Option<i64>,
    pub(crate) start_time: i64,
    pub(crate) duration_secs: i32,
    pub(crate) radiant_win: bool,
    pub(crate) game_mode: i32,
    pub(crate) lobby_type: i32,
    pub(crate) league_id: Option<i64>,
    pub(crate) cluster: i32,
    pub(crate) radiant_team_id: Option<i64>,
    pub(crate) radiant_team_name: Option<String>,
    pub(crate) dire_team_id: Option<i64>,
    pub(crate) dire_team_name: Option<String>,
    pub(crate) radiant_score: Option<i32>,
    pub(crate) dire_score: Option<i32>,
    pub(crate) source: String,
}

pub(crate) async fn match_record(store: &Store, match_id: i64) -> MatchRecord {
    let mut rows: Vec<MatchRecord> = fetch(
        store,
        &format!(
            "SELECT match_id, match_seq_num, start_time, duration_secs, radiant_win, game_mode, \
             lobby_type, league_id, cluster, radiant_team_id, radiant_team_name, dire_team_id, \
             dire_team_name, radiant_score, dire_score, source \
             FROM matches WHERE match_id = {match_id}"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1, "match {match_id}");
    rows.remove(0)
}

#[derive(Debug, PartialEq, FromRow)]
pub(crate) struct PlayerRecord {
    pub(crate) player_slot: i32,
    pub(crate) account_id: Option<i64>,
    pub(crate) hero_id: i32,
    pub(crate) kills: i32,
    pub(crate) deaths: i32,
    pub(crate) assists: i32,
    pub(crate) last_hits: i32,
    pub(crate) denies: i32,
    pub(crate) gold_per_min: i32,
    pub(crate) xp_per_min: i32,
    pub(crate) level: i32,
    pub(crate) hero_damage: Option<i64>,
    pub(crate) tower_damage: Option<i64>,
    pub(crate) hero_healing: Option<i64>,
    pub(crate) gold: Option<i64>,
    pub(crate) net_worth: Option<i64>,
    pub(crate) leaver_status: Option<i32>,
    pub(crate) items: Option<Json<Vec<i32>>>,
    pub(crate) backpack: Option<Json<Vec<i32>>>,
    pub(crate) persona_name: Option<String>,
    pub(crate) is_radiant: bool,
    pub(crate) won: bool,
    pub(crate) start_time: i64,
}

pub(crate) async fn player_records(store: &Store, match_id: i64) -> BTreeMap<i32, PlayerRecord> {
    let rows: Vec<PlayerRecord> = fetch(
        store,
        &format!(
            "SELECT player_slot, account_id, hero_id, kills, deaths, assists, last_hits, denies, \
             gold_per_min, xp_per_min, level, hero_damage, tower_damage, hero_healing, gold, \
             net_worth, leaver_status, items, backpack, persona_name, is_radiant, won, start_time \
             FROM player_matches WHERE match_id = {match_id}"
        ),
    )
    .await;
    rows.into_iter().map(|r| (r.player_slot, r)).collect()
}

#[derive(Debug, PartialEq, FromRow)]
pub(crate) struct ProfileRecord {
    pub(crate) account_id: i64,
    pub(crate) persona_name: Option<String>,
    pub(crate) rank_tier: Option<i32>,
    pub(crate) leaderboard_rank: Option<i32>,
    pub(crate) country: Option<String>,
    pub(crate) last_seen: Option<i64>,
    pub(crate) avatar_url: Option<String>,
    pub(crate) profile_url: Option<String>,
    pub(crate) observed_at_ms: i64,
}

pub(crate) async fn profile_record(store: &Store, account_id: i64) -> Option<ProfileRecord> {
    let mut rows: Vec<ProfileRecord> = fetch(
        store,
        &format!(
            "SELECT account_id, persona_name, rank_tier, leaderboard_rank, country, last_seen, \
             avatar_url, profile_url, observed_at_ms FROM players WHERE account_id = {account_id}"
        ),
    )
    .await;
    rows.pop()
}

/// `hero_pool` as (account, hero) → (games, wins, last_played).
pub(crate) type HeroPool = BTreeMap<(i64, i32), (i64, i64, i64)>;

pub(crate) async fn hero_pool(store: &Store) -> HeroPool {
    let rows: Vec<(i64, i32, i64, i64, i64)> = fetch(
        store,
        "SELECT account_id, hero_id, games, wins, last_played FROM hero_pool",
    )
    .await;
    rows.into_iter()
        .map(|(account, hero, games, wins, last)| ((account, hero), (games, wins, last)))
        .collect()
}

/// The hero pool `matches` should give, counted here without SQL.
pub(crate) fn expected_hero_pool(matches: &[MatchCompleted]) -> HeroPool {
    let mut pool = HeroPool::new();
    for m in matches {
        for p in &m.players {
            let Some(account) = p.account_id.filter(|id| *id != ANONYMOUS_ACCOUNT_ID) else {
                continue;
            };
            let entry = pool.entry((account, p.hero_id)).or_insert((0, 0, i64::MIN));
            entry.0 += 1;
            entry.1 += i64::from(p.is_radiant() == m.radiant_win);
            entry.2 = entry.2.max(m.start_time);
        }
    }
    pool
}

/// Every column of every table but `updated_at` (a write time), as text,
/// in key order: two equal dumps are equal tables.
pub(crate) const DUMPED_TABLES: [(&str, &str, &str); 6] = [
    (
        "matches",
        "match_id, match_seq_num, start_time, duration_secs, radiant_win, game_mode, lobby_type, \
         league_id, cluster, radiant_team_id, radiant_team_name, dire_team_id, dire_team_name, \
         radiant_score, dire_score, source, source_rank",
        "match_id",
    ),
    (
        "player_matches",
        "match_id, player_slot, account_id, hero_id, kills, deaths, assists, last_hits, denies, \
         gold_per_min, xp_per_min, level, hero_damage, tower_damage, hero_healing, gold, \
         gold_spent, net_worth, leaver_status, items, backpack, persona_name, is_radiant, won, \
         start_time, source_rank",
        "match_id, player_slot",
    ),
    (
        "picks_bans",
        "match_id, ord, is_pick, hero_id, team, source_rank",
        "match_id, ord",
    ),
    ("teams", "team_id, name, last_match_time", "team_id"),
    (
        "players",
        "account_id, persona_name, rank_tier, leaderboard_rank, country, last_seen, avatar_url, \
         profile_url, observed_at_ms",
        "account_id",
    ),
    (
        "hero_pool",
        "account_id, hero_id, games, wins, last_played",
        "account_id, hero_id",
    ),
];

pub(crate) type Dump = BTreeMap<&'static str, Vec<Vec<Option<String>>>>;

pub(crate) async fn dump(store: &Store) -> Dump {
    let mut dump = Dump::new();
    for (table, columns, key) in DUMPED_TABLES {
        dump.insert(
            table,
            text_rows(store, &text_select(table, columns, key)).await,
        );
    }
    dump
}

/// `SELECT` of `columns` (comma separated) cast to text, ordered by `key`.
pub(crate) fn text_select(table: &str, columns: &str, key: &str) -> String {
    let casts: Vec<String> = columns
        .split(',')
        .map(|c| format!("CAST({} AS TEXT)", c.trim()))
        .collect();
    format!("SELECT {} FROM {table} ORDER BY {key}", casts.join(", "))
}

pub(crate) async fn text_rows(store: &Store, sql: &str) -> Vec<Vec<Option<String>>> {
    macro_rules! read {
        ($pool:expr) => {
            sqlx::query(sql)
                .fetch_all($pool)
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    (0..row.len())
                        .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        };
    }
    match store {
        Store::Postgres(pool) => read!(pool),
        Store::Sqlite(pool) => read!(pool),
    }
}
