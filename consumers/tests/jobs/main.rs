//! The jobs group against real Redis and PostgreSQL (and SQLite where cheap):
//! retries, dead letters through the real `Runner` on the in-memory bus,
//! idempotency, a worker killed mid-job, delayed jobs, the Redis rate limiter
//! shared by two instances and its fallback, and the HTTP API. OpenDota is a
//! local axum server the tests tell to fail or hang.
//!
//! PostgreSQL comes from `$SCOUTSTREAM_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`; the role must create databases),
//! Redis from `$SCOUTSTREAM_REDIS_URL` (default `redis://127.0.0.1:6379`).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use consumers::cache::{Cache, CacheConfig};
use consumers::jobs::{
    request_key, stored_view, JobExecutor, JobTracker, JobView, JobsConfig, JobsHandler,
    MaxAttempts, RateLimit, RateLimiter, StandardExecutor, WorkerPool, OPENDOTA,
};
use consumers::persist::Store;
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::{Bus, Delivery, Publisher};
use schemas::codec::{Codec, Encoding};
use schemas::{topics, JobRequested, JobStatusChanged};
use testkit::names::unique;
use testkit::postgres::{admin_url, create_database, drop_database, with_database};
use testkit::{on_both_backends, run_cleaned};

mod api_auth;
mod helpers;
mod http_api;
mod limiter;
mod pool;
mod runner;
mod upstream;
mod worker_processes;

use pool::*;
use runner::*;
use upstream::{start_upstream, Upstream};

// ---------------------------------------------------------------------------
// Databases, Redis, the fake OpenDota.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Sqlite,
}

fn redis_url() -> String {
    std::env::var("SCOUTSTREAM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// One test's world: a fresh database, its own Redis prefixes, an in-memory
/// bus and a fake OpenDota.
#[derive(Clone)]
struct Env {
    kind: Kind,
    store: Store,
    cache: Cache,
    bus: MemoryBus,
    upstream: Upstream,
    config: JobsConfig,
    database: Option<String>,
    _dir: Arc<tempfile::TempDir>,
}

fn test_config(opendota: &str) -> JobsConfig {
    let mut rate_limits = BTreeMap::new();
    rate_limits.insert(OPENDOTA.to_string(), RateLimit::per_second(1_000));
    JobsConfig {
        max_attempts: MaxAttempts {
            scout_report_player: 3,
            scout_report_team: 3,
            refresh_player: 3,
            recompute_hero_pool: 3,
            parse_match: 3,
        },
        backoff_initial_ms: 20,
        backoff_max_ms: 100,
        workers: 4,
        claim_batch: 50,
        lease_ms: 1_000,
        poll_interval_ms: 50,
        shutdown_grace_ms: 1_000,
        opendota_base_url: opendota.to_string(),
        http_timeout_ms: 30_000,
        rate_limits,
        redis_url: redis_url(),
        key_prefix: format!("{}:", unique("sstest-jobs-")),
        ..JobsConfig::default()
    }
}

impl Env {
    async fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (url, database) = match kind {
            Kind::Postgres => {
                let name = unique("ssjobs_");
                (create_database(&name).await, Some(name))
            }
            Kind::Sqlite => {
                let path = dir.path().join("jobs.db");
                (format!("sqlite://{}", path.display()), None)
            }
        };
        let store = Store::connect(&url).await.unwrap();
        let cache = Cache::connect(CacheConfig {
            redis_url: redis_url(),
            key_prefix: format!("{}:", unique("sstest-jobs-cache-")),
            ..CacheConfig::default()
        })
        .await
        .unwrap();
        let (upstream, base) = start_upstream().await;
        Self {
            kind,
            store,
            cache,
            bus: MemoryBus::new(4),
            upstream,
            config: test_config(&base),
            database,
            _dir: Arc::new(dir),
        }
    }

    async fn cleanup(&self) {
        self.store.close().await;
        if let Some(name) = &self.database {
            drop_database(name).await;
        }
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(self.bus.clone())
    }

    fn tracker(&self) -> JobTracker {
        JobTracker::new(
            self.store.clone(),
            self.cache.clone(),
            self.publisher(),
            Duration::from_secs(600),
        )
    }

    fn executor(&self) -> Arc<dyn JobExecutor> {
        let limiter = RateLimiter::new(&self.config).unwrap();
        Arc::new(
            StandardExecutor::new(
                self.store.clone(),
                self.cache.clone(),
                limiter,
                self.publisher(),
                &self.config,
            )
            .unwrap(),
        )
    }

    fn handler(&self) -> Arc<JobsHandler> {
        Arc::new(JobsHandler::new(self.tracker(), self.config.clone()))
    }

    fn pool(&self, executor: Arc<dyn JobExecutor>) -> WorkerPool {
        WorkerPool::new(self.tracker(), executor, self.config.clone(), "jobs")
    }

    async fn publish(&self, request: &JobRequested) {
        let payload = Codec::default()
            .encode(request, Encoding::SingleObject)
            .unwrap();
        self.bus
            .publish(topics::JOBS, &request_key(request), &payload)
            .await
            .unwrap();
    }

    async fn view(&self, job_id: &str) -> Option<JobView> {
        stored_view(&self.store, job_id).await.unwrap()
    }

    /// Polls the database until the job is succeeded or dead.
    async fn wait_finished(&self, job_id: &str, timeout: Duration) -> JobView {
        let started = Instant::now();
        loop {
            if let Some(view) = self.view(job_id).await {
                if matches!(view.job.status.as_str(), "succeeded" | "dead") {
                    return view;
                }
            }
            assert!(
                started.elapsed() < timeout,
                "job {job_id} not finished after {timeout:?}: {:?}",
                self.view(job_id).await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every event of `topic` so far, read by a fresh group.
    async fn read_topic(&self, topic: &str) -> Vec<Delivery> {
        let mut sub = self
            .bus
            .subscribe(&unique("reader-"), &[topic.to_string()])
            .await
            .unwrap();
        let expected: usize = self.bus.partition_lengths(topic).iter().sum();
        let mut out = Vec::new();
        let started = Instant::now();
        while out.len() < expected && started.elapsed() < Duration::from_secs(5) {
            out.extend(sub.poll(1_000, Duration::from_millis(100)).await.unwrap());
        }
        sub.close().await.unwrap();
        out
    }

    /// Status events of one job, in publish order (one key, one partition).
    async fn status_events(&self, job_id: &str) -> Vec<JobStatusChanged> {
        let codec = Codec::default();
        self.read_topic(topics::JOB_STATUS)
            .await
            .iter()
            .map(|d| codec.decode::<JobStatusChanged>(&d.payload).unwrap())
            .filter(|e| e.job_id == job_id)
            .collect()
    }
}

/// Runs `test` in a fresh [`Env`] of `kind`, removing it even when it panics.
async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let env = Env::new(kind).await;
    run_cleaned(test(env.clone()), env.cleanup()).await;
}

on_both_backends!(
    parse_match_jobs_publish_the_fetched_match,
    status_events_a_bus_failure_held_back_go_out_later_in_order,
    shutdown_releases_a_job_that_outlives_the_grace,
    failing_twice_then_succeeding_ends_succeeded_after_three_attempts,
    always_failing_job_ends_dead_with_its_dead_letter,
    permanent_errors_and_bad_payloads_are_dead_at_once,
    duplicate_requests_run_once,
    killed_worker_leaves_the_job_to_be_resumed,
    delayed_job_does_not_delay_the_jobs_behind_it,
    scout_report_and_hero_pool_jobs_use_persisted_data,
);
