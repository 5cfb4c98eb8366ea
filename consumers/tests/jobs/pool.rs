//! The worker pool on both backends: shutdown grace, held-back status events, parse_match jobs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use consumers::jobs::{JobTracker, WorkerPool};
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::{BusError, Publisher, Record};
use pipeline::runner::Handler;
use schemas::codec::Codec;
use schemas::{topics, JobRequested, JobStatusChanged, JobType, MatchCompleted};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::helpers::*;

pub(crate) async fn shutdown_releases_a_job_that_outlives_the_grace(env: Env) {
    env.upstream.hang_next.store(true, Ordering::SeqCst);
    let job = request(JobType::RefreshPlayer, 77);
    env.publish(&job).await;
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    let started = Instant::now();
    while env.upstream.hits() == 0 {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The grace is 1 s; the call hangs for minutes.
    let stopping = Instant::now();
    let (_, stats) = stop_both(worker).await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    assert_eq!(stats.released, 1);
    let released = env.view(&job.job_id).await.unwrap();
    assert_eq!(
        released.statuses(),
        ["queued", "running", "retry_scheduled"]
    );
    assert_eq!(
        released.job.attempts, 0,
        "a released attempt does not count"
    );
    assert_eq!(released.job.lease_owner, None);
    assert!(released
        .job
        .last_error
        .as_deref()
        .unwrap()
        .contains("released"));

    // The next worker runs it at once, as its first attempt.
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    let view = env
        .wait_finished(&job.job_id, Duration::from_secs(20))
        .await;
    stop(worker).await;
    assert_eq!(
        (view.job.status.as_str(), view.job.attempts),
        ("succeeded", 1)
    );
}

/// The in-memory bus, except that status events fail while `broken`.
#[derive(Clone)]
struct FlakyBus {
    bus: MemoryBus,
    broken: Arc<AtomicBool>,
}

#[async_trait]
impl Publisher for FlakyBus {
    async fn publish_batch(&self, topic: &str, records: &[Record]) -> Result<(), BusError> {
        if self.broken.load(Ordering::SeqCst) && topic == topics::JOB_STATUS {
            return Err(BusError::Closed);
        }
        self.bus.publish_batch(topic, records).await
    }
}

pub(crate) async fn status_events_a_bus_failure_held_back_go_out_later_in_order(env: Env) {
    let job = request(JobType::RefreshPlayer, 88);
    assert!(env.handler().handle(&[delivery(&job, 0)]).await[0].is_ok());
    let flaky = FlakyBus {
        bus: env.bus.clone(),
        broken: Arc::new(AtomicBool::new(true)),
    };
    let tracker = JobTracker::new(
        env.store.clone(),
        env.cache.clone(),
        Arc::new(flaky.clone()),
        Duration::from_secs(600),
    );
    let token = CancellationToken::new();
    let pool = WorkerPool::new(tracker, env.executor(), env.config.clone(), "jobs");
    let pool = tokio::spawn(pool.run(token.clone()));
    // The job runs to the end; only its `queued` event is out.
    let view = env
        .wait_finished(&job.job_id, Duration::from_secs(20))
        .await;
    assert_eq!(view.statuses(), ["queued", "running", "succeeded"]);
    let published = |events: Vec<JobStatusChanged>| -> Vec<&'static str> {
        events
            .iter()
            .map(|e| consumers::jobs::status_name(e.status))
            .collect()
    };
    assert_eq!(published(env.status_events(&job.job_id).await), ["queued"]);

    // The bus is back: the next poll's relay sends the rest, in order, once.
    flaky.broken.store(false, Ordering::SeqCst);
    let started = Instant::now();
    loop {
        let events = published(env.status_events(&job.job_id).await);
        if events.len() >= 3 {
            assert_eq!(events, ["queued", "running", "succeeded"]);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    token.cancel();
    pool.await.unwrap();
}

/// The match of `details_api.json`, which the fake OpenDota serves.
const SERVED_MATCH: i64 = 1_781_962_623;

pub(crate) async fn parse_match_jobs_publish_the_fetched_match(env: Env) {
    let found = JobRequested {
        job_type: JobType::ParseMatch,
        ..request(JobType::ParseMatch, SERVED_MATCH)
    };
    let missing = request(JobType::ParseMatch, 42);
    env.publish(&found).await;
    env.publish(&missing).await;
    let worker = spawn_runner(&env, "jobs", env.handler()).await;
    let view = env
        .wait_finished(&found.job_id, Duration::from_secs(20))
        .await;
    let gone = env
        .wait_finished(&missing.job_id, Duration::from_secs(20))
        .await;
    stop(worker).await;
    assert_eq!(view.statuses(), ["queued", "running", "succeeded"]);
    assert_eq!(
        gone.statuses(),
        ["queued", "running", "dead"],
        "a 404 is permanent"
    );
    let published = env.read_topic(topics::MATCHES).await;
    assert_eq!(published.len(), 1);
    let fetched: MatchCompleted = Codec::default().decode(&published[0].payload).unwrap();
    assert_eq!(fetched.match_id, SERVED_MATCH);
    assert_eq!(fetched.source, "opendota");
    assert_eq!(fetched.players.len(), 10);
    assert_eq!(
        published[0].key.as_deref(),
        Some(topics::match_key(SERVED_MATCH).as_slice())
    );
}
