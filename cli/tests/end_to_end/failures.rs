//! Processes and servers killed mid-run: persist SIGKILLed, the cache's Redis stopped.

use crate::common::*;

use std::time::Duration;

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
    // The fixtures come after the kill, so the cache has work left then
    // however far ahead of persist it ran.
    deployment.produce(&[], 1500, 5);
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
    deployment.produce(&fixture_paths(), 0, 5);
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
