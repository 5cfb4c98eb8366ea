//! The persist group against PostgreSQL and SQLite. Each test is written once
//! and runs on both backends (`postgres::name`, `sqlite::name`), each time on
//! fresh databases of its own: a new PostgreSQL database (dropped afterwards)
//! or a new SQLite file. Expected values are read off the fixture files in
//! `shared/data/opendota`.
//!
//! PostgreSQL comes from `$SCOUTSTREAM_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); that role must be allowed to
//! create databases.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use consumers::persist::scout::{HeroCount, HeroPoolEntry, PlayerMatchSummary, TeamMatchSummary};
use consumers::persist::{
    copy_player_rows_raw, player_rows, PersistError, PersistEvent, PersistHandler, Store,
    COPY_SCRATCH_TABLE, DATABASE_URL_ENV, DEFAULT_DATABASE_URL,
};
use futures::FutureExt;
use pipeline::bus::{Delivery, Position};
use pipeline::runner::Handler;
use producers::ingest::{ingest_file, shared_data_dir, IngestedEvent};
use producers::loadgen::generate_matches;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, MatchCompleted, PlayerProfile, Team, ANONYMOUS_ACCOUNT_ID};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{Connection, FromRow, PgConnection, Row};

// ---------------------------------------------------------------------------
// Fresh databases per test, on both backends.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Sqlite,
}

/// Hands a test fresh, empty stores of one backend; removes them afterwards.
#[derive(Clone)]
struct Env {
    kind: Kind,
    inner: Arc<EnvInner>,
}

struct EnvInner {
    dir: tempfile::TempDir,
    /// Each store with the PostgreSQL database to drop after it.
    stores: Mutex<Vec<(Store, Option<String>)>>,
}

impl Env {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            inner: Arc::new(EnvInner {
                dir: tempfile::tempdir().unwrap(),
                stores: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A new empty database, migrated, through [`Store::connect`].
    async fn store(&self) -> Store {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let (url, database) = match self.kind {
            Kind::Postgres => {
                let name = format!("sstest_{id}");
                admin_execute(&format!("CREATE DATABASE {name}")).await;
                (with_database(&admin_url(), &name), Some(name))
            }
            Kind::Sqlite => {
                let path = self.inner.dir.path().join(format!("{id}.db"));
                (format!("sqlite://{}", path.display()), None)
            }
        };
        let store = Store::connect(&url).await.unwrap();
        assert_eq!(
            store.backend(),
            match self.kind {
                Kind::Postgres => "postgres",
                Kind::Sqlite => "sqlite",
            }
        );
        let mut stores = self.inner.stores.lock().unwrap();
        stores.push((store.clone(), database));
        store
    }

    async fn cleanup(&self) {
        let stores: Vec<_> = self.inner.stores.lock().unwrap().drain(..).collect();
        for (store, database) in stores {
            store.close().await;
            if let Some(name) = database {
                admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            }
        }
    }
}

fn admin_url() -> String {
    std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

/// `url` with its database (the path) replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    format!("{server}/{name}{query}")
}

async fn admin_execute(statement: &str) {
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(statement).execute(&mut admin).await.unwrap();
    admin.close().await.unwrap();
}

/// Runs `test` with fresh stores of `kind`, removing them even when it panics.
async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let env = Env::new(kind);
    let outcome = AssertUnwindSafe(test(env.clone())).catch_unwind().await;
    env.cleanup().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run(super::Kind::Postgres, super::$test).await;
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run(super::Kind::Sqlite, super::$test).await;
                }
            )+
        }
    };
}

on_both_backends!(
    pro_match_rows_match_the_fixture,
    public_match_rows_match_the_fixture,
    game_coordinator_reveals_anonymous_players,
    anonymous_marker_never_creates_players,
    corrected_slots_leave_the_old_hero_pool,
    replays_and_reordering_leave_identical_tables,
    loadgen_replay_keeps_counts_and_hero_pool,
    concurrent_writers_agree_on_hero_pool,
    hero_pool_deltas_equal_a_recount_under_random_writes,
    older_profile_never_overwrites_newer,
    player_report_matches_the_fixtures,
    team_report_matches_the_fixtures,
    team_name_follows_the_newest_match,
    handler_persists_slices_and_rejects_bad_deliveries,
    handler_reports_an_unreachable_store_as_retriable,
);

// ---------------------------------------------------------------------------
// Fixtures.

/// When the rank record was observed; the Steam summary is a second newer.
const RANK_OBSERVED_AT_MS: i64 = 1_700_000_000_000;
const SUMMARY_OBSERVED_AT_MS: i64 = RANK_OBSERVED_AT_MS + 1_000;

const PUBLIC_MATCH: i64 = 1_781_962_623;
const PRO_MATCH: i64 = 3_254_426_673;
const PLANET_ODD: i64 = 4_251_435;
const NEWBEE: i64 = 1_375_614;
const CHERNO_BILLY: i64 = 120_269_134;

fn fixture(name: &str) -> Vec<PersistEvent> {
    let observed_at_ms = if name == "summaries_api.json" {
        SUMMARY_OBSERVED_AT_MS
    } else {
        RANK_OBSERVED_AT_MS
    };
    let path = shared_data_dir().join("opendota").join(name);
    ingest_file(&path, observed_at_ms)
        .unwrap()
        .into_iter()
        .map(|event| match event {
            IngestedEvent::Match(m) => PersistEvent::Match(m),
            IngestedEvent::Player(p) => PersistEvent::Profile(p),
            IngestedEvent::Job(j) => panic!("{name} holds a job request: {j:?}"),
        })
        .collect()
}

fn fixture_match(name: &str) -> MatchCompleted {
    match fixture(name).as_slice() {
        [PersistEvent::Match(m)] => m.clone(),
        other => panic!("{name}: expected one match, got {other:?}"),
    }
}

/// Every fixture event: two Steam API matches, the game coordinator's view
/// of the first, a rank record and a Steam summary.
fn all_fixtures() -> Vec<PersistEvent> {
    [
        "details_api.json",
        "details_api_pro.json",
        "retriever_match.json",
        "retriever_player.json",
        "summaries_api.json",
    ]
    .into_iter()
    .flat_map(fixture)
    .collect()
}

// ---------------------------------------------------------------------------
// Reading tables back, on either backend.

async fn fetch<T>(store: &Store, sql: &str) -> Vec<T>
where
    T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
{
    match store {
        Store::Postgres(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
        Store::Sqlite(pool) => sqlx::query_as(sql).fetch_all(pool).await.unwrap(),
    }
}

async fn count(store: &Store, from_where: &str) -> i64 {
    let rows: Vec<(i64,)> = fetch(store, &format!("SELECT COUNT(*) FROM {from_where}")).await;
    rows[0].0
}

#[derive(Debug, PartialEq, FromRow)]
struct MatchRecord {
    match_id: i64,
    match_seq_num: Option<i64>,
    start_time: i64,
    duration_secs: i32,
    radiant_win: bool,
    game_mode: i32,
    lobby_type: i32,
    league_id: Option<i64>,
    cluster: i32,
    radiant_team_id: Option<i64>,
    radiant_team_name: Option<String>,
    dire_team_id: Option<i64>,
    dire_team_name: Option<String>,
    radiant_score: Option<i32>,
    dire_score: Option<i32>,
    source: String,
}

async fn match_record(store: &Store, match_id: i64) -> MatchRecord {
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
struct PlayerRecord {
    player_slot: i32,
    account_id: Option<i64>,
    hero_id: i32,
    kills: i32,
    deaths: i32,
    assists: i32,
    last_hits: i32,
    denies: i32,
    gold_per_min: i32,
    xp_per_min: i32,
    level: i32,
    hero_damage: Option<i64>,
    tower_damage: Option<i64>,
    hero_healing: Option<i64>,
    gold: Option<i64>,
    net_worth: Option<i64>,
    leaver_status: Option<i32>,
    items: Option<Json<Vec<i32>>>,
    backpack: Option<Json<Vec<i32>>>,
    persona_name: Option<String>,
    is_radiant: bool,
    won: bool,
    start_time: i64,
}

async fn player_records(store: &Store, match_id: i64) -> BTreeMap<i32, PlayerRecord> {
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
struct ProfileRecord {
    account_id: i64,
    persona_name: Option<String>,
    rank_tier: Option<i32>,
    leaderboard_rank: Option<i32>,
    country: Option<String>,
    last_seen: Option<i64>,
    avatar_url: Option<String>,
    profile_url: Option<String>,
    observed_at_ms: i64,
}

async fn profile_record(store: &Store, account_id: i64) -> Option<ProfileRecord> {
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
type HeroPool = BTreeMap<(i64, i32), (i64, i64, i64)>;

async fn hero_pool(store: &Store) -> HeroPool {
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
fn expected_hero_pool(matches: &[MatchCompleted]) -> HeroPool {
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
const DUMPED_TABLES: [(&str, &str, &str); 6] = [
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

type Dump = BTreeMap<&'static str, Vec<Vec<Option<String>>>>;

async fn dump(store: &Store) -> Dump {
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
fn text_select(table: &str, columns: &str, key: &str) -> String {
    let casts: Vec<String> = columns
        .split(',')
        .map(|c| format!("CAST({} AS TEXT)", c.trim()))
        .collect();
    format!("SELECT {} FROM {table} ORDER BY {key}", casts.join(", "))
}

async fn text_rows(store: &Store, sql: &str) -> Vec<Vec<Option<String>>> {
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

// ---------------------------------------------------------------------------
// Rows, value by value.

async fn pro_match_rows_match_the_fixture(env: Env) {
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

async fn public_match_rows_match_the_fixture(env: Env) {
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

async fn game_coordinator_reveals_anonymous_players(env: Env) {
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

async fn anonymous_marker_never_creates_players(env: Env) {
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
async fn corrected_slots_leave_the_old_hero_pool(env: Env) {
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

// ---------------------------------------------------------------------------
// Idempotency and order.

async fn replays_and_reordering_leave_identical_tables(env: Env) {
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

async fn loadgen_replay_keeps_counts_and_hero_pool(env: Env) {
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
async fn concurrent_writers_agree_on_hero_pool(env: Env) {
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

async fn older_profile_never_overwrites_newer(env: Env) {
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

// ---------------------------------------------------------------------------
// Scout reports.

async fn player_report_matches_the_fixtures(env: Env) {
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

async fn team_report_matches_the_fixtures(env: Env) {
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

async fn team_name_follows_the_newest_match(env: Env) {
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

// ---------------------------------------------------------------------------
// The handler.

fn delivery(topic: &str, offset: i64, payload: Vec<u8>) -> Delivery {
    Delivery {
        topic: topic.into(),
        partition: 0,
        position: Position::Offset(offset),
        key: None,
        payload: payload.into(),
        timestamp_ms: None,
    }
}

fn encode(event: &PersistEvent) -> (&'static str, Vec<u8>) {
    let codec = Codec::default();
    match event {
        PersistEvent::Match(m) => (
            topics::MATCHES,
            codec.encode(m, Encoding::SingleObject).unwrap(),
        ),
        PersistEvent::Profile(p) => (topics::PLAYERS, codec.encode(p, Encoding::Json).unwrap()),
    }
}

async fn handler_persists_slices_and_rejects_bad_deliveries(env: Env) {
    let store = env.store().await;
    let handler = PersistHandler::new(store.clone(), "persist-test");
    let events = all_fixtures();
    let mut deliveries: Vec<Delivery> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (topic, payload) = encode(e);
            delivery(topic, i as i64, payload)
        })
        .collect();

    let mut duplicate_slot = fixture_match("details_api_pro.json");
    duplicate_slot.match_id = 1;
    duplicate_slot.players[1].player_slot = 0;
    let mut negative_kills = fixture_match("details_api_pro.json");
    negative_kills.match_id = 2;
    negative_kills.players[3].kills = -1;
    let bad = [
        delivery(topics::MATCHES, 10, b"\xC3\x01 not avro".to_vec()),
        delivery(topics::JOBS, 11, encode(&events[0]).1),
        delivery(
            topics::MATCHES,
            12,
            encode(&PersistEvent::Match(duplicate_slot)).1,
        ),
        // Passes the handler's checks; the database's CHECK rejects it.
        delivery(
            topics::MATCHES,
            13,
            encode(&PersistEvent::Match(negative_kills)).1,
        ),
    ];
    deliveries.splice(2..2, bad);

    let outcomes = handler.handle(&deliveries).await;
    assert_eq!(outcomes.len(), deliveries.len());
    let kinds: Vec<Option<(&str, bool)>> = outcomes
        .iter()
        .map(|o| o.as_ref().err().map(|e| (e.kind(), e.is_retriable())))
        .collect();
    assert_eq!(
        kinds,
        [
            None,
            None,
            Some(("decode", false)),
            Some(("topic", false)),
            Some(("invalid", false)),
            Some(("database", false)),
            None,
            None,
            None,
        ]
    );

    // The good deliveries landed as if written directly.
    let direct = env.store().await;
    direct.write(&events).await.unwrap();
    let expected = dump(&direct).await;
    assert_eq!(dump(&store).await, expected);

    // Redelivered: all good ones succeed again, and nothing changes.
    let again = handler.handle(&deliveries).await;
    let ok: Vec<bool> = again.iter().map(Result::is_ok).collect();
    assert_eq!(
        ok,
        [true, true, false, false, false, false, true, true, true]
    );
    assert_eq!(dump(&store).await, expected);
}

async fn handler_reports_an_unreachable_store_as_retriable(env: Env) {
    let store = env.store().await;
    let handler = PersistHandler::new(store.clone(), "persist-test");
    let deliveries: Vec<Delivery> = all_fixtures()
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let (topic, payload) = encode(e);
            delivery(topic, i as i64, payload)
        })
        .collect();
    store.close().await;
    let outcomes = handler.handle(&deliveries).await;
    assert_eq!(outcomes.len(), 5);
    for outcome in outcomes {
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), "database");
        assert!(err.is_retriable(), "{err}");
    }
}

// ---------------------------------------------------------------------------
// Backend-independent and PostgreSQL-only.

#[tokio::test]
async fn connect_rejects_unknown_schemes() {
    let err = Store::connect("mysql://root:secret@localhost/db")
        .await
        .unwrap_err();
    assert!(matches!(err, PersistError::UnsupportedUrl(_)), "{err}");
    assert!(!err.is_retriable());
    assert!(!err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn sqlite_in_memory_keeps_its_data() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    store.write(&all_fixtures()).await.unwrap();
    // The pool must hand back the one connection that holds the database.
    for _ in 0..3 {
        assert_eq!(count(&store, "player_matches").await, 20);
    }
    let report = store.player_report(CHERNO_BILLY).await.unwrap().unwrap();
    assert_eq!(report.rank_tier, Some(80));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_loads_player_rows_raw() {
    run(Kind::Postgres, copy_loads_player_rows).await;
}

async fn copy_loads_player_rows(env: Env) {
    let store = env.store().await;
    let Store::Postgres(pool) = &store else {
        unreachable!("a PostgreSQL env");
    };
    let mut matches = generate_matches(2_000, 5);
    // Text COPY gives tab, newline and backslash meaning: names must survive them.
    matches[0].players[0].persona_name = Some("tab\there\\ and\nnewline".into());
    let rows = player_rows(&matches);
    assert_eq!(rows.len(), 20_000);

    let started = Instant::now();
    let loaded = copy_player_rows_raw(pool, &rows).await.unwrap();
    let copy_time = started.elapsed();
    assert_eq!(loaded, 20_000);
    assert_eq!(count(&store, COPY_SCRATCH_TABLE).await, 20_000);

    // Same rows as the upsert path would store, value for value.
    let started = Instant::now();
    store.write_matches(&matches).await.unwrap();
    let upsert_time = started.elapsed();
    let (_, columns, key) = DUMPED_TABLES[1];
    let from_copy = text_rows(&store, &text_select(COPY_SCRATCH_TABLE, columns, key)).await;
    let from_upsert = text_rows(&store, &text_select("player_matches", columns, key)).await;
    assert_eq!(from_copy.len(), 20_000);
    assert!(from_copy == from_upsert, "COPY and upsert rows differ");

    // Loading again replaces the scratch contents.
    let loaded = copy_player_rows_raw(pool, &rows[..100]).await.unwrap();
    assert_eq!(loaded, 100);
    assert_eq!(count(&store, COPY_SCRATCH_TABLE).await, 100);
    eprintln!(
        "[postgres] 20,000 player rows: raw COPY {copy_time:?}; \
         batched upsert of their 2,000 matches (with hero pool) {upsert_time:?}"
    );
}

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
async fn hero_pool_deltas_equal_a_recount_under_random_writes(env: Env) {
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
