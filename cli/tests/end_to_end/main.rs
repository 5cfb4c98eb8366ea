//! End to end, as operators run it: the `scoutstream` binary publishes the real
//! fixtures and generated matches, runs the consumer groups against Apache
//! Kafka or Redis Streams, Redis and PostgreSQL, and the test reads back what
//! landed in PostgreSQL, Redis and the scout views, value by value.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod embedded;
mod failures;
mod operators;

use common::*;

use std::process::Stdio;
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
