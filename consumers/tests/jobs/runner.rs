//! The handler through the real runner, on both backends.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use consumers::cache::keys;
use consumers::jobs::{request_key, JobView};
use consumers::persist::{PlayerReport, Store, TeamReport};
use consumers::scout::team_key;
use pipeline::bus::{now_ms, Publisher};
use pipeline::runner::Handler;
use producers::loadgen::generate_matches;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, DeadLetter, JobRequested, JobType, Team};

use super::*;
use crate::helpers::*;

// ---------------------------------------------------------------------------
// The handler through the real runner.

pub(crate) async fn failing_twice_then_succeeding_ends_succeeded_after_three_attempts(env: Env) {
    env.upstream.fail_first.store(2, Ordering::SeqCst);
    let job = request(JobType::RefreshPlayer, 86_745_912);
    env.publish(&job).await;
    let runner = spawn_runner(&env, "jobs", env.handler()).await;
    let view = env
        .wait_finished(&job.job_id, Duration::from_secs(20))
        .await;
    let stats = stop(runner).await;

    assert_eq!(view.job.status, "succeeded");
    assert_eq!(view.job.attempts, 3);
    assert_eq!(
        view.statuses(),
        [
            "queued",
            "running",
            "retry_scheduled",
            "running",
            "retry_scheduled",
            "running",
            "succeeded"
        ]
    );
    let attempts: Vec<i32> = view.history.iter().map(|h| h.attempt).collect();
    assert_eq!(attempts, [0, 1, 1, 2, 2, 3, 3]);
    assert!(view.history[2]
        .error
        .as_deref()
        .unwrap()
        .contains("HTTP 500"));
    assert_eq!(env.upstream.hits(), 3);
    assert_eq!(stats.dead_lettered, 0);

    // The profile landed through the Store.
    let report = env.store.player_report(86_745_912).await.unwrap().unwrap();
    assert_eq!(report.persona_name.as_deref(), Some("player 86745912"));
    assert_eq!(report.rank_tier, Some(75));
    assert_eq!(report.leaderboard_rank, Some(1234));
    assert_eq!(report.country.as_deref(), Some("SE"));

    // Every transition was published, in order.
    let events = env.status_events(&job.job_id).await;
    let published: Vec<String> = events
        .iter()
        .map(|e| consumers::jobs::status_name(e.status).to_string())
        .collect();
    assert_eq!(published, view.statuses());
    assert!(events[2].next_run_at_ms.is_some());

    // The Redis mirror agrees with the database.
    let mirrored: JobView = serde_json::from_str(
        &env.cache
            .get(&consumers::jobs::job_key(&job.job_id))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(mirrored, view);
}

pub(crate) async fn always_failing_job_ends_dead_with_its_dead_letter(env: Env) {
    env.upstream.always.store(503, Ordering::SeqCst);
    let job = request(JobType::RefreshPlayer, 1_001);
    env.publish(&job).await;
    let runner = spawn_runner(&env, "jobs", env.handler()).await;
    let view = env
        .wait_finished(&job.job_id, Duration::from_secs(20))
        .await;
    // The dead letter is written before the runner acks.
    let started = Instant::now();
    while env
        .bus
        .partition_lengths(topics::DEAD_LETTERS)
        .iter()
        .sum::<usize>()
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (runner_stats, pool_stats) = stop_both(runner).await;

    assert_eq!(view.job.status, "dead");
    assert_eq!(view.job.attempts, 3, "max attempts of refresh_player");
    assert_eq!(
        view.statuses(),
        [
            "queued",
            "running",
            "retry_scheduled",
            "running",
            "retry_scheduled",
            "running",
            "dead"
        ]
    );
    assert_eq!(env.upstream.hits(), 3);
    assert_eq!(runner_stats.dead_lettered, 0, "the request itself was fine");
    assert_eq!((pool_stats.retried, pool_stats.dead), (2, 1));

    let letters = env.read_topic(topics::DEAD_LETTERS).await;
    assert_eq!(letters.len(), 1);
    let letter: DeadLetter = Codec::default().decode(&letters[0].payload).unwrap();
    assert_eq!(letter.topic, topics::JOBS);
    assert_eq!(letter.consumer_group, "jobs");
    assert_eq!(letter.error_kind, "upstream");
    assert_eq!(letter.attempts, 3);
    assert!(
        letter.error_message.contains("dead after 3 attempts"),
        "{}",
        letter.error_message
    );
    let original: JobRequested = Codec::default().decode(&letter.original).unwrap();
    assert_eq!(original, job);

    // Redelivered once dead (say its ack was lost): recorded already, not run again.
    let outcome = env.handler().handle(&[delivery(&job, 0)]).await;
    assert!(outcome[0].is_ok());
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(worker).await;
    assert_eq!(env.upstream.hits(), 3);
    assert_eq!(env.view(&job.job_id).await.unwrap(), view);
}

pub(crate) async fn permanent_errors_and_bad_payloads_are_dead_at_once(env: Env) {
    env.upstream.always.store(404, Ordering::SeqCst);
    let missing = request(JobType::RefreshPlayer, 42);
    env.publish(&missing).await;
    env.bus
        .publish(topics::JOBS, b"junk", b"not an event")
        .await
        .unwrap();
    let runner = spawn_runner(&env, "jobs", env.handler()).await;
    let view = env
        .wait_finished(&missing.job_id, Duration::from_secs(20))
        .await;
    let started = Instant::now();
    while env
        .bus
        .partition_lengths(topics::DEAD_LETTERS)
        .iter()
        .sum::<usize>()
        < 2
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(runner).await;

    assert_eq!(view.statuses(), ["queued", "running", "dead"]);
    assert_eq!(env.upstream.hits(), 1, "a 404 is not retried");
    let codec = Codec::default();
    let mut kinds: Vec<String> = env
        .read_topic(topics::DEAD_LETTERS)
        .await
        .iter()
        .map(|d| codec.decode::<DeadLetter>(&d.payload).unwrap().error_kind)
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["decode", "not_found"]);
}

pub(crate) async fn duplicate_requests_run_once(env: Env) {
    let first = JobRequested {
        idempotency_key: Some("refresh:7".into()),
        ..request(JobType::RefreshPlayer, 7)
    };
    let second = JobRequested {
        job_id: uuid::Uuid::new_v4().to_string(),
        ..first.clone()
    };
    env.publish(&first).await;
    env.publish(&second).await;
    let runner = spawn_runner(&env, "jobs", env.handler()).await;
    let view = env
        .wait_finished(&first.job_id, Duration::from_secs(20))
        .await;
    // The second request is acked without a row of its own.
    let started = Instant::now();
    while env
        .bus
        .committed("jobs", topics::JOBS, partition_of(&first))
        != Some(2)
    {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop(runner).await;
    assert_eq!(view.job.status, "succeeded");
    assert_eq!(env.upstream.hits(), 1, "ran once");
    assert!(env.view(&second.job_id).await.is_none());

    // A redelivery of a finished job does not run it again.
    let handler = env.handler();
    let outcome = handler.handle(&[delivery(&first, 0)]).await;
    assert!(outcome[0].is_ok());
    // Once the first finished, the key is free again: a new request runs.
    let outcome = handler.handle(&[delivery(&second, 1)]).await;
    assert!(outcome[0].is_ok());
    let worker = spawn_runner(&env, "jobs-again", env.handler()).await;
    env.wait_finished(&second.job_id, Duration::from_secs(20))
        .await;
    stop(worker).await;
    assert_eq!(env.upstream.hits(), 2, "the first once, the second once");
    assert_eq!(env.view(&first.job_id).await.unwrap(), view);
}

fn partition_of(request: &JobRequested) -> i32 {
    pipeline::bus::partition_for_key(&request_key(request), 4)
}

pub(crate) async fn killed_worker_leaves_the_job_to_be_resumed(env: Env) {
    env.upstream.hang_next.store(true, Ordering::SeqCst);
    let job = request(JobType::RefreshPlayer, 555);
    env.publish(&job).await;
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    // Wait until the first attempt is in flight, then kill the worker: its
    // tasks are dropped without finishing, releasing or renewing anything.
    let started = Instant::now();
    while env.upstream.hits() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.pool.abort();
    worker.runner.abort();
    assert!(worker.pool.await.unwrap_err().is_cancelled());
    let interrupted = env.view(&job.job_id).await.unwrap();
    assert_eq!(interrupted.job.status, "running");
    assert_eq!(interrupted.job.attempts, 1);
    assert!(interrupted.job.lease_owner.is_some());

    // Another worker takes it back once the lease (1 s) runs out, and finishes it.
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    let view = env
        .wait_finished(&job.job_id, Duration::from_secs(20))
        .await;
    let (_, pool_stats) = stop_both(worker).await;
    assert_eq!(view.job.status, "succeeded");
    assert_eq!(view.job.attempts, 2, "the killed attempt counts");
    assert_eq!(view.job.lease_owner, None);
    assert_eq!(
        view.statuses(),
        [
            "queued",
            "running",
            "retry_scheduled",
            "running",
            "succeeded"
        ]
    );
    let error = view.history[2].error.as_deref().unwrap();
    assert!(error.contains("stopped during attempt 1"), "{error}");
    assert!(
        view.history[2].at_ms - view.history[1].at_ms >= 1_000,
        "not before the lease ran out"
    );
    assert_eq!(env.upstream.hits(), 2);
    assert_eq!(pool_stats.taken_back, 1);
}

pub(crate) async fn delayed_job_does_not_delay_the_jobs_behind_it(env: Env) {
    let run_at = now_ms() + 1_500;
    let delayed = JobRequested {
        run_at_ms: Some(run_at),
        // Same key, so the same partition: the later job waits behind it in the topic.
        idempotency_key: Some("same-partition".into()),
        ..request(JobType::RefreshPlayer, 9)
    };
    let behind = JobRequested {
        idempotency_key: None,
        job_id: "behind".to_string(),
        ..request(JobType::RefreshPlayer, 10)
    };
    env.publish(&delayed).await;
    let payload = Codec::default()
        .encode(&behind, Encoding::SingleObject)
        .unwrap();
    env.bus
        .publish(topics::JOBS, b"same-partition", &payload)
        .await
        .unwrap();
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    let first = env
        .wait_finished(&behind.job_id, Duration::from_secs(20))
        .await;
    let view = env
        .wait_finished(&delayed.job_id, Duration::from_secs(20))
        .await;
    stop(worker).await;
    assert_eq!(first.job.status, "succeeded");
    let done_at = first.history.last().unwrap().at_ms;
    assert!(
        done_at < run_at,
        "the job behind finished at {done_at}, the delayed one was due {run_at}"
    );
    assert_eq!(view.job.status, "succeeded");
    assert_eq!(view.job.attempts, 1);
    let running_at = view.history[1].at_ms;
    assert!(running_at >= run_at, "ran at {running_at}, due {run_at}");
}

pub(crate) async fn scout_report_and_hero_pool_jobs_use_persisted_data(env: Env) {
    let mut matches = generate_matches(5, 11);
    matches[0].radiant_team = Some(Team {
        team_id: 777,
        name: Some("Jobs United".into()),
    });
    env.store.write_matches(&matches).await.unwrap();
    let account = matches[0].players[0].account_id.unwrap();

    let player = request(JobType::ScoutReportPlayer, account);
    let team = request(JobType::ScoutReportTeam, 777);
    let unknown = request(JobType::ScoutReportPlayer, 999_999_999);
    for job in [&player, &team, &unknown] {
        env.publish(job).await;
    }
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    for job in [&player, &team] {
        let view = env
            .wait_finished(&job.job_id, Duration::from_secs(20))
            .await;
        assert_eq!(view.job.status, "succeeded", "{view:?}");
    }
    let view = env
        .wait_finished(&unknown.job_id, Duration::from_secs(20))
        .await;
    assert_eq!(
        view.statuses(),
        ["queued", "running", "dead"],
        "not found is permanent"
    );

    let cached: PlayerReport = serde_json::from_str(
        &env.cache
            .get(&keys::scout_player_key(account))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        cached,
        env.store.player_report(account).await.unwrap().unwrap()
    );
    let cached: TeamReport =
        serde_json::from_str(&env.cache.get(&team_key(777)).await.unwrap()).unwrap();
    assert_eq!(cached.name.as_deref(), Some("Jobs United"));

    // Drift the hero pool, then let the job recompute it from player_matches.
    let before = env.store.player_report(account).await.unwrap().unwrap();
    assert!(!before.hero_pool.is_empty());
    let wipe = "DELETE FROM hero_pool WHERE account_id = $1";
    match &env.store {
        Store::Postgres(pool) => sqlx::query(wipe)
            .bind(account)
            .execute(pool)
            .await
            .map(|_| ()),
        Store::Sqlite(pool) => sqlx::query(wipe)
            .bind(account)
            .execute(pool)
            .await
            .map(|_| ()),
    }
    .unwrap();
    assert!(env
        .store
        .player_report(account)
        .await
        .unwrap()
        .unwrap()
        .hero_pool
        .is_empty());
    let recompute = request(JobType::RecomputeHeroPool, account);
    env.publish(&recompute).await;
    let view = env
        .wait_finished(&recompute.job_id, Duration::from_secs(20))
        .await;
    stop(worker).await;
    assert_eq!(view.job.status, "succeeded");
    let after = env.store.player_report(account).await.unwrap().unwrap();
    assert_eq!(after.hero_pool, before.hero_pool);
    // The stale cached report was dropped.
    assert_eq!(env.cache.get(&keys::scout_player_key(account)).await, None);
    let _ = env.kind;
}
