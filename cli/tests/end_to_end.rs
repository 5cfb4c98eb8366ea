//! End to end, as operators run it: the `scoutstream` binary publishes the real
//! fixtures and generated matches, runs the consumer groups against Apache
//! Kafka or Redis Streams, Redis and PostgreSQL, and the test reads back what
//! landed in PostgreSQL, Redis and the scout views, value by value.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use consumers::cache::{Cache, CacheConfig};
use consumers::persist::Store;
use consumers::scout::{ScoutService, Served};

async fn check_cache_and_scout_views(deployment: &Deployment) {
    let client = redis::Client::open(deployment.cache_redis_url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}match:3254426673", deployment.cache_prefix);
    let summary: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&summary.expect("the pro match is cached")).unwrap();
    assert_eq!(summary["match_id"], 3_254_426_673_i64);
    assert_eq!(summary["radiant_win"], false);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 24 * 3600, "match TTL {ttl}");
    let profile: Option<String> = redis::cmd("GET")
        .arg(format!("{}player:120269134", deployment.cache_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(profile
        .expect("the profile is cached")
        .contains("Cherno Billy"));

    let store = Store::connect(&deployment.database_url).await.unwrap();
    let cache = Cache::connect(CacheConfig {
        redis_url: deployment.cache_redis_url.clone(),
        key_prefix: deployment.cache_prefix.clone(),
        ..CacheConfig::default()
    })
    .await
    .unwrap();
    let scout = ScoutService::new(store, cache);
    // The jobs API has cached this report already: drop it to read the database path.
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}scout:player:120269134", deployment.cache_prefix))
        .query_async(&mut redis)
        .await
        .unwrap();
    let (report, served) = scout.player_report(120_269_134).await.unwrap().unwrap();
    assert_eq!(served, Served::Database, "first read computes the report");
    assert_eq!((report.games, report.wins), (1, 1));
    assert_eq!(report.rank_tier, Some(80));
    assert_eq!(report.hero_pool.len(), 1);
    assert_eq!(
        (
            report.hero_pool[0].hero_id,
            report.hero_pool[0].games,
            report.hero_pool[0].wins
        ),
        (100, 1, 1)
    );
    let kda = report.averages.as_ref().unwrap().kda;
    assert!((kda - 19.0 / 6.0).abs() < 1e-9, "KDA {kda}");
    let (again, served) = scout.player_report(120_269_134).await.unwrap().unwrap();
    assert_eq!(
        served,
        Served::Cache,
        "second read is served from the cache"
    );
    assert_eq!(again, report);
    let (team, _) = scout.team_report(1_375_614).await.unwrap().unwrap();
    assert_eq!(
        (team.name.as_deref(), team.games, team.wins),
        (Some("Newbee"), 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_redis_postgres_end_to_end_with_replays() {
    let deployment = Deployment::new("kafka").await;
    let produced = deployment.produce(&fixture_paths(), 2000, 7);
    assert!(String::from_utf8_lossy(&produced.stdout)
        .contains("published 2003 matches and 2 player profiles"));
    let run = deployment.start("enrich,cache,persist,jobs");
    let pool = deployment.pool().await;
    // 2 real matches (one of them from two sources) + 2000 generated; 10 players each.
    wait_for_count(&pool, "SELECT count(*) FROM matches", 2002).await;
    wait_for_count(&pool, "SELECT count(*) FROM player_matches", 20_020).await;
    wait_for_zero_lag(&deployment, &deployment.group_prefix).await;
    // While it runs, operators see it ready, with throughput and lag on /metrics.
    assert_eq!(http_get(deployment.observe_port, "/healthz").0, 200);
    assert_eq!(http_get(deployment.observe_port, "/readyz").0, 200);
    let persist = format!("{}-persist", deployment.group_prefix);
    let handled =
        format!("scoutstream_events_handled_total{{group=\"{persist}\",topic=\"matches\"}} 2003");
    let lag_of = |metrics: &str| -> Vec<String> {
        metrics
            .lines()
            .filter(|l| l.starts_with("scoutstream_consumer_lag_messages") && l.contains(&persist))
            .map(str::to_string)
            .collect()
    };
    // The lag gauges fall to zero once the in-process reporter reads the caught-up group.
    let mut metrics = String::new();
    for _ in 0..60 {
        let (status, body) = http_get(deployment.observe_port, "/metrics");
        assert_eq!(status, 200);
        metrics = body;
        let lags = lag_of(&metrics);
        if !lags.is_empty() && lags.iter().all(|l| l.ends_with(" 0")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        metrics.contains(&handled),
        "{handled} missing from:\n{metrics}"
    );
    let lags = lag_of(&metrics);
    assert_eq!(lags.len(), 8, "a gauge per topic and partition: {lags:?}");
    assert!(lags.iter().all(|l| l.ends_with(" 0")), "{lags:?}");
    // A scout asks for a report through the jobs API; the jobs group builds it.
    let (status, body) = http(
        deployment.observe_port,
        "POST",
        "/jobs",
        Some(r#"{"job_type": "scout_report_player", "subject_id": 120269134}"#),
    );
    assert_eq!(status, 202, "{body}");
    let job: serde_json::Value = serde_json::from_str(&body).unwrap();
    let job_path = format!("/jobs/{}", job["job_id"].as_str().unwrap());
    let mut view = serde_json::Value::Null;
    for _ in 0..120 {
        view = serde_json::from_str(&http_get(deployment.observe_port, &job_path).1)
            .unwrap_or_default();
        if view["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(view["status"], "succeeded", "{view}");
    assert_eq!(
        http(
            deployment.observe_port,
            "POST",
            "/jobs",
            Some(r#"{"job_type": "nope", "subject_id": 1}"#)
        )
        .0,
        400
    );
    let (status, report) = http_get(deployment.observe_port, "/players/120269134/scout");
    assert_eq!(status, 200, "{report}");
    assert!(report.contains("\"games\":1"), "{report}");
    // The cache group consumes on its own: persist being done says nothing of it.
    wait_for_group(&deployment, &format!("{}-cache", deployment.group_prefix)).await;
    let (stdout, _) = stop(run);
    assert!(
        stdout.contains("group persist: handled 2005, dead-lettered 0"),
        "{stdout}"
    );
    check_fixture_rows(&pool).await;
    check_cache_and_scout_views(&deployment).await;

    // Replaying the whole topics, twice, with fresh groups changes no row.
    let before = dump(&pool).await;
    assert!(before.len() > 22_000);
    for replay in 0..2 {
        let prefix = format!("{}-replay{replay}", deployment.group_prefix);
        let mut command = deployment.command(&["run", "--groups", "persist"]);
        let replayer = command
            .env("SCOUTSTREAM__GROUPS__ID_PREFIX", &prefix)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_zero_lag(&deployment, &prefix).await;
        let (stdout, _) = stop(replayer);
        assert!(
            stdout.contains("handled 2005"),
            "the replay read everything again: {stdout}"
        );
        assert_eq!(dump(&pool).await, before, "replay {replay} changed rows");
    }
    pool.close().await;
    deployment.drop_database().await;
}

/// The persist group's lag once it is below `previous` (a commit moved on),
/// or after 30 s without that (a dead member holds its partitions for its
/// 6 s session timeout first).
async fn lag_after_a_commit(deployment: &Deployment, previous: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let lag = persist_lag(deployment, &deployment.group_prefix).await;
        if lag < previous || tokio::time::Instant::now() > deadline {
            return lag;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills persist twice mid-run. Rows are counted (nothing lost, the upsert
/// leaves no duplicate row), and so is redelivery: the group's commits must
/// move on before each kill, and the match writes applied again (the upsert's
/// updates, `n_tup_upd`) must not exceed what each dead process had written
/// beyond its last commit.
async fn killed_persist_loses_and_duplicates_nothing(backend: &'static str) {
    const MATCHES: i64 = 3000;
    let deployment = Deployment::new(backend).await;
    deployment.produce(&[], MATCHES as usize, 11);
    let pool = deployment.pool().await;
    let mut uncommitted_at_kills = 0;
    let mut lag = MATCHES as u64;
    for kill in 0..2 {
        let mut run = deployment.start("persist");
        // Persist is fast: an earlier life may have written every row already
        // (committing only part of them), and this one then rewrites them.
        let before = count(&pool, "SELECT count(*) FROM player_matches").await;
        let target = (before + 4000).min(MATCHES * 10);
        let deadline = tokio::time::Instant::now() + WAIT;
        while count(&pool, "SELECT count(*) FROM player_matches").await < target
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Progress is what the group commits: it must move on in every life.
        let committed_lag = lag_after_a_commit(&deployment, lag).await;
        assert!(
            committed_lag < lag,
            "the group committed nothing new before kill {kill}: lag {committed_lag} after {lag}"
        );
        lag = committed_lag;
        run.kill().unwrap(); // SIGKILL mid-run
        run.wait().unwrap();
        // Written by now, minus what was committed when the lag was read.
        let written = count(&pool, "SELECT count(*) FROM matches").await;
        uncommitted_at_kills += written - (MATCHES - lag as i64);
        eprintln!("{backend}: kill {kill} with {written} matches written, lag {lag}");
    }
    let run = deployment.start("persist");
    wait_for_count(&pool, "SELECT count(*) FROM matches", MATCHES).await;
    wait_for_count(&pool, "SELECT count(*) FROM player_matches", MATCHES * 10).await;
    wait_for_zero_lag(&deployment, &deployment.group_prefix).await;
    stop(run);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM player_matches").await,
        MATCHES * 10,
        "nothing duplicated"
    );
    let (games, known) = hero_pool_games_and_known_rows(&pool).await;
    assert_eq!(
        games, known,
        "hero pools count each known player's game exactly once"
    );
    let reapplied = updates_of_matches(pool).await;
    eprintln!(
        "{backend}: {reapplied} match writes applied again after the kills, at most {uncommitted_at_kills} were written and uncommitted"
    );
    assert!(
        reapplied <= uncommitted_at_kills,
        "{reapplied} redelivered match writes, more than the {uncommitted_at_kills} written beyond the commits"
    );
    deployment.drop_database().await;
}

/// `n_tup_upd` of `matches`, once every other session of the database has
/// ended: a backend flushes its statistics as it exits.
async fn updates_of_matches(pool: sqlx::PgPool) -> i64 {
    let sessions = "SELECT count(*) FROM pg_stat_activity \
                    WHERE datname = current_database() AND pid <> pg_backend_pid()";
    let mut conn = pool.acquire().await.unwrap().detach();
    pool.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>(sessions)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        > 0
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sqlx::query_scalar("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'matches'")
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_persist_killed_mid_run_loses_and_duplicates_nothing() {
    killed_persist_loses_and_duplicates_nothing("kafka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_persist_killed_mid_run_loses_and_duplicates_nothing() {
    killed_persist_loses_and_duplicates_nothing("redis-streams").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cache_stopped_mid_run_loses_nothing() {
    let mut deployment = Deployment::new("kafka").await;
    let redis = PrivateRedis::start_on(free_port());
    deployment.cache_redis_url = redis.url();
    deployment.produce(&fixture_paths(), 1500, 5);
    let run = deployment.start("cache,persist");
    let pool = deployment.pool().await;
    wait_for_at_least(&pool, "SELECT count(*) FROM player_matches", 2000).await;
    // The cache was writing to this Redis, not starting on its fallback.
    let match_keys = format!("{}match:", deployment.cache_prefix);
    let deadline = std::time::Instant::now() + WAIT;
    while redis.count_keys(&match_keys) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cached_before_kill = redis.count_keys(&match_keys);
    assert!(
        cached_before_kill > 0,
        "the cache wrote matches to its Redis before the kill"
    );
    redis.kill(); // the cache's Redis goes away mid-run
    wait_for_count(&pool, "SELECT count(*) FROM matches", 1502).await;
    wait_for_count(&pool, "SELECT count(*) FROM player_matches", 15_020).await;
    wait_for_zero_lag(&deployment, &deployment.group_prefix).await;
    let (stdout, stderr) = stop(run);
    assert!(
        stderr.contains("cache falls back to in-process memory"),
        "the fallback is logged: {stderr}"
    );

    assert!(
        stdout.contains("group cache: handled 1505, dead-lettered 0"),
        "{stdout}"
    );
    assert!(
        stdout.contains("group persist: handled 1505, dead-lettered 0"),
        "{stdout}"
    );
    pool.close().await;
    deployment.drop_database().await;
}

#[test]
fn embedded_default_runs_the_real_data_with_no_servers() {
    let dir = std::env::temp_dir().join(unique("ss-embedded-"));
    std::fs::create_dir_all(&dir).unwrap();
    let database = format!("sqlite://{}?mode=rwc", dir.join("scout.db").display());
    // No Redis for the cache either: it must run on its in-process fallback.
    let embedded = || {
        Command::new(env!("CARGO_BIN_EXE_scoutstream"))
            .args(["embedded", "--generate", "2000", "--database", &database])
            .env(
                "SCOUTSTREAM__CACHE__REDIS_URL",
                format!("redis://127.0.0.1:{}", free_port()),
            )
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let output = embedded();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("published 2003 matches to `matches` and 2 player profiles"),
        "{stdout}"
    );
    for group in ["cache   ", "enrich  ", "persist "] {
        assert!(stdout.contains(&format!("group {group}")), "{stdout}");
    }
    assert!(
        stdout.contains("group persist  handled  2005, dead-lettered 0"),
        "{stdout}"
    );
    assert!(stdout.contains("player 120269134 (Cherno Billy): rank tier 80, 1 games, 1 wins, KDA 3.17, GPM 443, XPM 527; heroes: Tusk 1/1"), "{stdout}");
    assert!(
        stdout.contains("team 1375614 (Newbee): 1 games, 1 wins"),
        "{stdout}"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let matches_in = |database: &str| {
        runtime.block_on(async {
            let Store::Sqlite(pool) = Store::connect(database).await.unwrap() else {
                unreachable!()
            };
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM matches")
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            count
        })
    };
    let after_the_first_run = matches_in(&database);
    runtime.block_on(async {
        let store = Store::connect(&database).await.unwrap();
        let report = store.player_report(109_378_329).await.unwrap().unwrap();
        // retriever_match.json slot 1: Alchemist (73), 6/6/5, 944 GPM; radiant won.
        assert_eq!((report.games, report.wins), (1, 1));
        assert_eq!(report.recent_matches[0].hero_id, 73);
        assert_eq!(report.averages.unwrap().gold_per_min, 944.0);
        // The generated matches go; a second run publishes them again.
        let Store::Sqlite(pool) = &store else {
            unreachable!()
        };
        sqlx::query("DELETE FROM matches WHERE source = 'loadgen'")
            .execute(pool)
            .await
            .unwrap();
        store.close().await;
    });
    assert_eq!(matches_in(&database), after_the_first_run - 2000);
    // The in-memory bus numbers the second run's events from 0 again: the
    // positions the first run left in the database must not hide them.
    let again = embedded();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(
        matches_in(&database),
        after_the_first_run,
        "the second run's matches are stored"
    );
    std::fs::remove_dir_all(PathBuf::from(&dir)).ok();
}

async fn operators_replay_groups_and_dead_letters(backend: &'static str) {
    use pipeline::bus::Record;
    use schemas::{Codec, DeadLetter, Encoding};
    let deployment = Deployment::new(backend).await;
    deployment.produce(&[], 300, 3);
    let bus = deployment_bus(&deployment).await;
    let publisher = bus.publisher().await.unwrap();
    publisher
        .publish_batch(
            "matches",
            &[Record::new("poison", b"not an event".to_vec())],
        )
        .await
        .unwrap();
    // A dead letter holding a good match that failed once (say, the database was down).
    let mut late = producers::loadgen::generate_matches(1, 99).remove(0);
    late.match_id = 9_000_000_001;
    let codec = Codec::default();
    let letter = DeadLetter {
        original: codec.encode(&late, Encoding::SingleObject).unwrap(),
        key: Some(late.match_id.to_string().into_bytes()),
        topic: "matches".into(),
        partition: Some(0),
        offset: Some(0),
        stream_id: None,
        consumer_group: "earlier-run".into(),
        error_kind: "database".into(),
        error_message: "connection refused".into(),
        first_seen_ms: 1,
        attempts: 5,
    };
    publisher
        .publish_batch(
            "dead-letters",
            &[Record::new(
                "late",
                codec.encode(&letter, Encoding::SingleObject).unwrap(),
            )],
        )
        .await
        .unwrap();
    let pool = deployment.pool().await;

    let report = persist_until_caught_up(&deployment).await;
    assert!(report.contains("handled 300, dead-lettered 1"), "{report}");
    let before = dump(&pool).await;

    // Replay asks first; without a terminal the answer is no and nothing moves.
    let refused = deployment
        .command(&["replay", "--group", "persist", "--to", "earliest"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not confirmed"));
    assert_eq!(persist_lag(&deployment, &deployment.group_prefix).await, 0);

    let moved = run_ok(
        &deployment,
        &["replay", "--group", "persist", "--to", "earliest", "--yes"],
    );
    assert!(moved.contains("matches partition 0 -> "), "{moved}");
    assert_eq!(
        persist_lag(&deployment, &deployment.group_prefix).await,
        301,
        "everything is due again"
    );
    let report = persist_until_caught_up(&deployment).await;
    assert!(
        report.contains("handled 300, dead-lettered 1"),
        "the replay ran everything again: {report}"
    );
    assert_eq!(dump(&pool).await, before, "and changed no row");

    let list = run_ok(&deployment, &["dlq", "list"]);
    assert!(list.contains("3 dead letters"), "{list}");
    assert_eq!(list.matches(" decode ").count(), 2, "{list}");
    let index = list
        .lines()
        .find(|l| l.contains(" database "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let inspected = run_ok(&deployment, &["dlq", "inspect", &index]);
    assert!(
        inspected.contains("error kind:     database") && inspected.contains("9000000001"),
        "{inspected}"
    );

    let replayed = run_ok(
        &deployment,
        &["dlq", "replay", "--kind", "database", "--yes"],
    );
    assert!(
        replayed.contains("replayed 1 dead letters, passed over 2"),
        "{replayed}"
    );
    persist_until_caught_up(&deployment).await;
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM matches WHERE match_id = 9000000001"
        )
        .await,
        1,
        "the fixed event landed"
    );
    let again = run_ok(
        &deployment,
        &["dlq", "replay", "--kind", "database", "--yes"],
    );
    assert!(
        again.contains("replayed 0 dead letters"),
        "the outcome is remembered: {again}"
    );
    pool.close().await;
    deployment.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_operators_replay_groups_and_dead_letters() {
    operators_replay_groups_and_dead_letters("kafka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_operators_replay_groups_and_dead_letters() {
    operators_replay_groups_and_dead_letters("redis-streams").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_schema_and_is_repeatable() {
    let deployment = Deployment::new("kafka").await;
    for _ in 0..2 {
        let out = run_ok(&deployment, &["migrate"]);
        assert!(
            out.contains("schema of the postgres database is up to date"),
            "{out}"
        );
    }
    let pool = deployment.pool().await;
    for table in [
        "matches",
        "player_matches",
        "picks_bans",
        "players",
        "hero_pool",
        "jobs",
    ] {
        let exists = count(
            &pool,
            &format!("SELECT count(*) FROM information_schema.tables WHERE table_name = '{table}'"),
        )
        .await;
        assert_eq!(exists, 1, "table {table}");
    }
    pool.close().await;
    deployment.drop_database().await;
}
