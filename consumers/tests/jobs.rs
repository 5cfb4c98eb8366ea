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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use consumers::cache::{keys, Cache, CacheConfig};
use consumers::jobs::{
    api, request_key, stored_view, JobError, JobExecutor, JobRecord, JobTracker, JobView,
    JobsConfig, JobsHandler, MaxAttempts, PoolStats, RateLimit, RateLimiter, StandardExecutor,
    WorkerPool, OPENDOTA,
};
use consumers::persist::{PlayerReport, Store, TeamReport, DATABASE_URL_ENV, DEFAULT_DATABASE_URL};
use consumers::scout::{team_key, ScoutService};
use futures::FutureExt;
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::{now_ms, Bus, BusError, Delivery, Position, Publisher, Record};
use pipeline::runner::{Handler, RunStats, Runner, RunnerConfig};
use producers::loadgen::generate_matches;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, DeadLetter, JobRequested, JobStatusChanged, JobType, MatchCompleted, Team};
use serde_json::{json, Value};
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// Databases, Redis, the fake OpenDota.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Postgres,
    Sqlite,
}

fn admin_url() -> String {
    std::env::var(DATABASE_URL_ENV).unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_string())
}

fn redis_url() -> String {
    std::env::var("SCOUTSTREAM_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
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

/// What the fake OpenDota does with the next requests.
#[derive(Clone, Default)]
struct Upstream {
    hits: Arc<AtomicU32>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<AtomicU32>,
    /// When not 0, answer every request with this status.
    always: Arc<AtomicU16>,
    /// Hang the next request (a worker killed mid-call).
    hang_next: Arc<AtomicBool>,
    /// Set when a hung request is dropped (its caller went away).
    hang_dropped: Arc<AtomicBool>,
    /// Requests per account id.
    per_account: Arc<std::sync::Mutex<HashMap<i64, u32>>>,
}

impl Upstream {
    fn hits(&self) -> u32 {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn player_route(State(up): State<Upstream>, Path(id): Path<i64>) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    *up.per_account.lock().unwrap().entry(id).or_default() += 1;
    if up.hang_next.swap(false, Ordering::SeqCst) {
        /// Marks the hung request dropped when its future is.
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _dropped = OnDrop(up.hang_dropped.clone());
        tokio::time::sleep(Duration::from_secs(120)).await;
    }
    let always = up.always.load(Ordering::SeqCst);
    if always != 0 {
        return StatusCode::from_u16(always).unwrap().into_response();
    }
    let failing = up
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    Json(json!({
        "profile": {
            "account_id": id,
            "personaname": format!("player {id}"),
            "avatarfull": "https://avatars.example/full.jpg",
            "profileurl": format!("https://steamcommunity.com/profiles/{id}/"),
            "loccountrycode": "SE",
            "plus": true
        },
        "rank_tier": 75,
        "leaderboard_rank": 1234,
        "competitive_rank": null
    }))
    .into_response()
}

/// Serves `router` on 127.0.0.1:0; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// OpenDota's `/matches/{id}`: the match of `details_api.json` (a bare match
/// object, as OpenDota answers), 404 for any other id.
async fn match_route(State(up): State<Upstream>, Path(id): Path<i64>) -> Response {
    up.hits.fetch_add(1, Ordering::SeqCst);
    let path = producers::ingest::shared_data_dir().join("opendota/details_api.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let found = &file["result"];
    if found["match_id"].as_i64() != Some(id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    Json(found.clone()).into_response()
}

async fn start_upstream() -> (Upstream, String) {
    let upstream = Upstream::default();
    let router = Router::new()
        .route("/api/players/{id}", get(player_route))
        .route("/api/matches/{id}", get(match_route))
        .with_state(upstream.clone());
    let base = format!("{}/api", serve(router).await);
    (upstream, base)
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
                admin_execute(&format!("CREATE DATABASE {name}")).await;
                (with_database(&admin_url(), &name), Some(name))
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
            admin_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
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

async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let env = Env::new(kind).await;
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

async fn shutdown_releases_a_job_that_outlives_the_grace(env: Env) {
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

async fn status_events_a_bus_failure_held_back_go_out_later_in_order(env: Env) {
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

async fn parse_match_jobs_publish_the_fetched_match(env: Env) {
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

// ---------------------------------------------------------------------------
// Helpers.

fn request(job_type: JobType, subject_id: i64) -> JobRequested {
    JobRequested {
        job_id: uuid::Uuid::new_v4().to_string(),
        job_type,
        subject_id,
        idempotency_key: None,
        run_at_ms: None,
        requested_at_ms: now_ms(),
        max_attempts: None,
    }
}

fn runner_config(group: &str) -> RunnerConfig {
    RunnerConfig {
        batch_wait: Duration::from_millis(50),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..RunnerConfig::new(group)
    }
}

/// A jobs worker: a runner of `group` over `jobs` recording requests, and a
/// worker pool running them, each on its own task.
struct Worker {
    runner: JoinHandle<RunStats>,
    pool: JoinHandle<PoolStats>,
    token: CancellationToken,
}

async fn spawn_runner(env: &Env, group: &str, handler: Arc<dyn Handler>) -> Worker {
    spawn_worker(env, group, handler, env.executor()).await
}

async fn spawn_worker(
    env: &Env,
    group: &str,
    handler: Arc<dyn Handler>,
    executor: Arc<dyn JobExecutor>,
) -> Worker {
    let subscription = env
        .bus
        .subscribe(group, &[topics::JOBS.to_string()])
        .await
        .unwrap();
    let runner = Runner::new(runner_config(group), handler, env.publisher());
    let token = CancellationToken::new();
    let stop = token.clone();
    let runner = tokio::spawn(async move { runner.run(subscription, stop).await.unwrap() });
    let pool = tokio::spawn(env.pool(executor).run(token.clone()));
    Worker {
        runner,
        pool,
        token,
    }
}

async fn stop(worker: Worker) -> RunStats {
    stop_both(worker).await.0
}

async fn stop_both(worker: Worker) -> (RunStats, PoolStats) {
    worker.token.cancel();
    (worker.runner.await.unwrap(), worker.pool.await.unwrap())
}

fn delivery(request: &JobRequested, offset: i64) -> Delivery {
    Delivery {
        topic: topics::JOBS.into(),
        partition: 0,
        position: Position::Offset(offset),
        key: Some(request_key(request).into()),
        payload: Codec::default()
            .encode(request, Encoding::SingleObject)
            .unwrap()
            .into(),
        timestamp_ms: Some(now_ms()),
    }
}

// ---------------------------------------------------------------------------
// The handler through the real runner.

async fn failing_twice_then_succeeding_ends_succeeded_after_three_attempts(env: Env) {
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

async fn always_failing_job_ends_dead_with_its_dead_letter(env: Env) {
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

async fn permanent_errors_and_bad_payloads_are_dead_at_once(env: Env) {
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

async fn duplicate_requests_run_once(env: Env) {
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

async fn killed_worker_leaves_the_job_to_be_resumed(env: Env) {
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

async fn delayed_job_does_not_delay_the_jobs_behind_it(env: Env) {
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

async fn scout_report_and_hero_pool_jobs_use_persisted_data(env: Env) {
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

// ---------------------------------------------------------------------------
// Rate limiting.

fn limiter_config(service: &str, limit: RateLimit, redis_url: &str) -> JobsConfig {
    let mut rate_limits = BTreeMap::new();
    rate_limits.insert(service.to_string(), limit);
    JobsConfig {
        rate_limits,
        redis_url: redis_url.to_string(),
        key_prefix: format!("{}:", unique("sstest-limit-")),
        redis_timeout_ms: 300,
        redis_retry_interval_ms: 60_000,
        ..JobsConfig::default()
    }
}

/// Grants per 1-second window, from `start_us`; full windows only.
fn per_window(grants: &[i64], start_us: i64, windows: usize) -> Vec<usize> {
    let mut counts = vec![0usize; windows];
    for at in grants {
        let window = ((at - start_us) / 1_000_000) as usize;
        if window < windows {
            counts[window] += 1;
        }
    }
    counts
}

/// Acquires `service` from `tasks` concurrent callers until `deadline`;
/// returns the grant times (microseconds, the limiter's clock).
async fn hammer(limiter: RateLimiter, service: &str, tasks: usize, deadline: Instant) -> Vec<i64> {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let limiter = limiter.clone();
        let service = service.to_string();
        handles.push(tokio::spawn(async move {
            let mut grants = Vec::new();
            while Instant::now() < deadline {
                let permit = limiter.acquire(&service).await;
                grants.push(permit.at_us);
                assert!(permit.shared, "Redis is up: the shared limit applies");
            }
            grants
        }));
    }
    let mut all = Vec::new();
    for handle in handles {
        all.extend(handle.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limiters_share_one_limit() {
    const N: usize = 20;
    const SECONDS: usize = 10;
    let config = limiter_config("svc", RateLimit::per_second(N as u32), &redis_url());
    // Two instances with their own Redis connections: two worker processes.
    let a = RateLimiter::new(&config).unwrap();
    let b = RateLimiter::new(&config).unwrap();
    let start_us = now_ms() * 1_000;
    let deadline = Instant::now() + Duration::from_secs(SECONDS as u64);
    let (left, right) = tokio::join!(hammer(a, "svc", 4, deadline), hammer(b, "svc", 4, deadline));
    let mut grants = left.clone();
    grants.extend(&right);
    grants.sort_unstable();
    // Windows from the first grant on the limiter's (Redis's) clock.
    let first = grants[0];
    let counts = per_window(&grants, first, SECONDS - 1);
    println!(
        "per-second grants: {counts:?}; instance a {} b {}; total {} in {SECONDS} s",
        left.len(),
        right.len(),
        grants.len()
    );
    assert!(counts.iter().all(|c| *c <= N), "{counts:?} exceed {N}/s");
    let full: usize = counts.iter().sum();
    assert!(
        full >= (SECONDS - 1) * N * 9 / 10,
        "throughput {full} far below the limit {}",
        (SECONDS - 1) * N
    );
    assert!(
        !left.is_empty() && !right.is_empty(),
        "both instances got permits"
    );
    let _ = start_us;
}

/// The worker process of `two_worker_processes_share_one_limit`: this test
/// binary re-run with `--exact limiter_worker_process --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of two_worker_processes_share_one_limit"]
async fn limiter_worker_process() {
    let var = |name: &str| std::env::var(name).unwrap();
    let mut config = limiter_config(
        "svc",
        RateLimit::per_second(var("LIMIT_N").parse().unwrap()),
        &redis_url(),
    );
    config.key_prefix = var("LIMIT_PREFIX");
    let limiter = RateLimiter::new(&config).unwrap();
    let until_ms: i64 = var("LIMIT_UNTIL_MS").parse().unwrap();
    let deadline = Instant::now() + Duration::from_millis((until_ms - now_ms()).max(0) as u64);
    let grants = hammer(limiter, "svc", 4, deadline).await;
    let lines: Vec<String> = grants.iter().map(i64::to_string).collect();
    std::fs::write(var("LIMIT_OUT"), lines.join("\n")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_share_one_limit() {
    const N: usize = 20;
    const SECONDS: usize = 10;
    let prefix = format!("{}:", unique("sstest-limit-procs-"));
    let until_ms = now_ms() + 1_000 + SECONDS as i64 * 1_000;
    let outputs: Vec<std::path::PathBuf> = (0..2)
        .map(|i| std::env::temp_dir().join(format!("{}-{i}", unique("limit-worker"))))
        .collect();
    let children: Vec<std::process::Child> = outputs
        .iter()
        .map(|out| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "limiter_worker_process",
                    "--ignored",
                    "--nocapture",
                ])
                .env("LIMIT_N", N.to_string())
                .env("LIMIT_PREFIX", &prefix)
                .env("LIMIT_UNTIL_MS", until_ms.to_string())
                .env("LIMIT_OUT", out)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a worker process failed");
    }
    let per_process: Vec<Vec<i64>> = outputs
        .iter()
        .map(|out| {
            std::fs::read_to_string(out)
                .unwrap()
                .lines()
                .map(|l| l.parse().unwrap())
                .collect()
        })
        .collect();
    let mut grants: Vec<i64> = per_process.concat();
    grants.sort_unstable();
    // Windows on the limiter's (Redis's) clock; the last, partial one is left out.
    let counts = per_window(&grants, grants[0], SECONDS - 1);
    println!(
        "two processes, per-second grants: {counts:?}; per process {:?}",
        per_process.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert!(counts.iter().all(|c| *c <= N), "{counts:?} exceed {N}/s");
    assert!(
        counts.iter().sum::<usize>() >= (SECONDS - 1) * N * 9 / 10,
        "{counts:?} far below the limit"
    );
    assert!(
        per_process.iter().all(|g| !g.is_empty()),
        "both processes got permits"
    );
    for out in outputs {
        std::fs::remove_file(out).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limiter_falls_back_to_a_fraction_when_redis_is_down() {
    const N: u32 = 20;
    // Nothing listens on a freshly closed port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = JobsConfig {
        rate_limit_fallback_fraction: 0.5,
        ..limiter_config(
            "svc",
            RateLimit::per_second(N),
            &format!("redis://127.0.0.1:{port}"),
        )
    };
    let limiter = RateLimiter::new(&config).unwrap();
    let first = limiter.acquire("svc").await;
    assert!(!first.shared);
    assert!(limiter.is_on_fallback());
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut grants = vec![first.at_us];
    while Instant::now() < deadline {
        let permit = limiter.acquire("svc").await;
        assert!(!permit.shared);
        grants.push(permit.at_us);
    }
    let counts = per_window(&grants, grants[0], 2);
    println!("fallback per-second grants: {counts:?}");
    assert!(counts.iter().all(|c| *c <= (N / 2) as usize), "{counts:?}");
    assert!(
        counts.iter().all(|c| *c >= (N / 2 - 2) as usize),
        "{counts:?}"
    );
    // Services without a limit pass at once.
    assert!(limiter.acquire("unlimited").await.waited < Duration::from_millis(5));
}

// ---------------------------------------------------------------------------
// The HTTP API.

async fn api_base(env: &Env, token: Option<&str>) -> String {
    let config = JobsConfig {
        api_token: token.map(str::to_string),
        ..env.config.clone()
    };
    api_with(env, config).await
}

async fn api_with(env: &Env, config: JobsConfig) -> String {
    let scout = ScoutService::new(env.store.clone(), env.cache.clone());
    let state = api::ApiState::new(env.tracker(), scout, config);
    serve(api::router(state)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_enqueues_validates_and_reports() {
    run(Kind::Postgres, |env| async move {
        let base = api_base(&env, None).await;
        let http = reqwest::Client::new();

        // 400s with a clear message.
        for (body, needle) in [
            (
                json!({"job_type": "nope", "subject_id": 1}),
                "unknown job_type",
            ),
            (
                json!({"job_type": "refresh_player", "subject_id": -5}),
                "subject_id",
            ),
            (json!({"job_type": "refresh_player"}), "subject_id"),
            // PostgreSQL text holds no NUL: a 400, not a retried database error.
            (
                json!({"job_type": "refresh_player", "subject_id": 1, "idempotency_key": "a\u{0}b"}),
                "NUL",
            ),
            (
                json!({"job_type": "refresh_player", "subject_id": 1, "max_attempts": 0}),
                "max_attempts",
            ),
        ] {
            let response = http
                .post(format!("{base}/jobs"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{body}");
            let error: Value = response.json().await.unwrap();
            assert!(error["error"].as_str().unwrap().contains(needle), "{error}");
        }
        let response = http
            .post(format!("{base}/jobs"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        // A body over the limit is refused before it is read as JSON.
        let padding = "x".repeat(api::MAX_BODY_BYTES);
        let response = http
            .post(format!("{base}/jobs"))
            .json(
                &json!({"job_type": "refresh_player", "subject_id": 1, "idempotency_key": padding}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("length limit"),
            "{error}"
        );

        // 202, then the job is readable and listed.
        let body =
            json!({"job_type": "refresh_player", "subject_id": 4242, "idempotency_key": "k1"});
        let response = http
            .post(format!("{base}/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let enqueued: Value = response.json().await.unwrap();
        let job_id = enqueued["job_id"].as_str().unwrap().to_string();
        let view: JobView = http
            .get(format!("{base}/jobs/{job_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view.job.status, "queued");
        assert_eq!(view.job.subject_id, 4242);
        let queued: Vec<JobRecord> = http
            .get(format!("{base}/jobs?status=queued"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].job_id, job_id);

        // The same key while queued: the existing job, not a new one.
        let response = http
            .post(format!("{base}/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let duplicate: Value = response.json().await.unwrap();
        assert_eq!(duplicate["job_id"], job_id.as_str());
        assert_eq!(duplicate["duplicate"], true);

        // One JobRequested on the jobs topic.
        let published = env.read_topic(topics::JOBS).await;
        assert_eq!(published.len(), 1);
        let request: JobRequested = Codec::default().decode(&published[0].payload).unwrap();
        assert_eq!(request.job_id, job_id);
        assert_eq!(request.job_type, JobType::RefreshPlayer);

        // The worker runs it; the API then shows it succeeded.
        let runner = spawn_runner(&env, "jobs", env.handler()).await;
        env.wait_finished(&job_id, Duration::from_secs(20)).await;
        stop(runner).await;
        let view: JobView = http
            .get(format!("{base}/jobs/{job_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view.statuses(), ["queued", "running", "succeeded"]);

        // 404s and bad queries.
        for path in ["/jobs/nope", "/players/999999/scout", "/teams/999999/scout"] {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
        }
        for path in ["/jobs?status=bogus", "/jobs", "/players/abc/scout"] {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 400, "{path}");
        }

        // Scout reports of persisted data.
        let matches = generate_matches(2, 3);
        env.store.write_matches(&matches).await.unwrap();
        let account = matches[0].players[0].account_id.unwrap();
        let answer: Value = http
            .get(format!("{base}/players/{account}/scout"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["report"]["account_id"], account);
        assert_eq!(answer["served"], "database");
    })
    .await;
}

/// The `status` events of a finished SSE answer: (id, data).
fn sse_events(body: &str) -> Vec<(i64, Value)> {
    body.split("\n\n")
        .filter(|block| block.contains("event: status"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap()
                    .to_string()
            };
            (
                field("id: ").parse().unwrap(),
                serde_json::from_str(&field("data: ")).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_streams_status_changes_cancels_and_retries() {
    run(Kind::Postgres, |env| async move {
        let base = api_base(&env, None).await;
        let http = reqwest::Client::new();
        env.upstream.fail_first.store(1, Ordering::SeqCst);
        let enqueue = |body: Value| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let answer: Value = http
                    .post(format!("{base}/jobs"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["job_id"].as_str().unwrap().to_string()
            }
        };

        // The stream is open before the job runs, and follows it to the end.
        let job_id = enqueue(json!({"job_type": "refresh_player", "subject_id": 31})).await;
        let stream = tokio::spawn({
            let url = format!("{base}/jobs/{job_id}/events");
            let http = http.clone();
            async move {
                let response = http.get(url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(
                    response.headers()["content-type"].to_str().unwrap(),
                    "text/event-stream"
                );
                response.text().await.unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let worker = spawn_runner(&env, "jobs", env.handler()).await;
        let view = env.wait_finished(&job_id, Duration::from_secs(20)).await;
        let body = tokio::time::timeout(Duration::from_secs(10), stream)
            .await
            .expect("the stream ends after the terminal status")
            .unwrap();
        let events = sse_events(&body);
        let statuses: Vec<&str> = events
            .iter()
            .map(|(_, e)| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, view.statuses());
        assert_eq!(
            statuses,
            [
                "queued",
                "running",
                "retry_scheduled",
                "running",
                "succeeded"
            ]
        );
        assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
        assert!(events[2].1["error"].as_str().unwrap().contains("HTTP 500"));

        // Resumed after an event id: only what came after it.
        let resumed = http
            .get(format!("{base}/jobs/{job_id}/events"))
            .header("Last-Event-ID", events[2].0.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let resumed: Vec<i64> = sse_events(&resumed).iter().map(|(id, _)| *id).collect();
        assert_eq!(resumed, [events[3].0, events[4].0]);

        // Cancel a job due in an hour; a second cancel conflicts.
        let later = enqueue(json!({
            "job_type": "refresh_player", "subject_id": 32, "run_at_ms": now_ms() + 3_600_000
        }))
        .await;
        let response = http
            .post(format!("{base}/jobs/{later}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            (answer["status"].as_str(), answer["cancelled"].as_bool()),
            (Some("dead"), Some(true))
        );
        let response = http
            .post(format!("{base}/jobs/{later}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409);
        let cancelled = env.view(&later).await.unwrap();
        assert_eq!(cancelled.statuses(), ["queued", "dead"]);
        assert_eq!(
            cancelled.job.last_error.as_deref(),
            Some("cancelled through the API")
        );

        // Retry the cancelled (dead) job: it runs now, with fresh attempts.
        let hits = env.upstream.hits();
        let response = http
            .post(format!("{base}/jobs/{later}/retry"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let retried = env.wait_finished(&later, Duration::from_secs(20)).await;
        assert_eq!(
            retried.statuses(),
            ["queued", "dead", "queued", "running", "succeeded"]
        );
        assert_eq!(retried.job.attempts, 1);
        assert_eq!(env.upstream.hits(), hits + 1);
        let response = http
            .post(format!("{base}/jobs/{later}/retry"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409, "only a dead job is retried");

        // A running job cancelled: its worker stops it at the next renewal.
        env.upstream.hang_next.store(true, Ordering::SeqCst);
        let hung = enqueue(json!({"job_type": "refresh_player", "subject_id": 33})).await;
        let started = Instant::now();
        while env.view(&hung).await.unwrap().job.status != "running" {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let response = http
            .post(format!("{base}/jobs/{hung}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // Stopped at the next lease renewal (every 333 ms), not at shutdown.
        let started = Instant::now();
        while !env.upstream.hang_dropped.load(Ordering::SeqCst) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the cancelled attempt still runs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, pool_stats) = stop_both(worker).await;
        assert_eq!(
            pool_stats.lost, 1,
            "the running attempt was stopped, its result dropped"
        );
        assert_eq!(
            env.view(&hung).await.unwrap().statuses(),
            ["queued", "running", "dead"]
        );

        for path in ["/jobs/nope/events", "/jobs/nope/cancel", "/jobs/nope/retry"] {
            let request = if path.ends_with("events") {
                http.get(format!("{base}{path}"))
            } else {
                http.post(format!("{base}{path}"))
            };
            assert_eq!(request.send().await.unwrap().status(), 404, "{path}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_limited_to_their_scopes() {
    use consumers::jobs::{ApiScope, ApiToken};
    run(Kind::Sqlite, |env| async move {
        let token = |name: &str, scopes: &[ApiScope]| ApiToken {
            name: name.into(),
            token: format!("{name}-s3cret"),
            scopes: scopes.to_vec(),
            rate_limit: None,
        };
        let config = JobsConfig {
            api_tokens: vec![
                token("dashboard", &[ApiScope::Read]),
                token("scheduler", &[ApiScope::Enqueue]),
                token("operator", &[ApiScope::Read, ApiScope::Enqueue]),
            ],
            ..env.config.clone()
        };
        config.validate().unwrap();
        let base = api_with(&env, config).await;
        let http = reqwest::Client::new();
        let body = json!({"job_type": "scout_report_team", "subject_id": 1});
        let status = |response: reqwest::Response| response.status().as_u16();
        let enqueue = |token: &str| {
            let request = http.post(format!("{base}/jobs")).json(&body);
            request.bearer_auth(token).send()
        };
        let list = |token: &str| {
            let request = http.get(format!("{base}/jobs?status=queued"));
            request.bearer_auth(token).send()
        };
        assert_eq!(status(enqueue("dashboard-s3cret").await.unwrap()), 403);
        assert_eq!(status(list("dashboard-s3cret").await.unwrap()), 200);
        assert_eq!(status(enqueue("scheduler-s3cret").await.unwrap()), 202);
        assert_eq!(status(list("scheduler-s3cret").await.unwrap()), 403);
        assert_eq!(status(list("operator-s3cret").await.unwrap()), 200);
        assert_eq!(status(enqueue("nobody").await.unwrap()), 401);
        let refused = enqueue("dashboard-s3cret").await.unwrap();
        let error: Value = refused.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("enqueue"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_limit_gets_429_with_retry_after() {
    use consumers::jobs::{ApiScope, ApiToken, RateLimiter};
    run(Kind::Sqlite, |env| async move {
        let limited = ApiToken {
            name: "crawler".into(),
            token: "crawler-s3cret".into(),
            scopes: vec![ApiScope::Read],
            rate_limit: Some(consumers::jobs::RateLimit {
                limit: 3,
                period_ms: 60_000,
                burst: 3,
            }),
        };
        let config = JobsConfig {
            api_token: Some("admin-s3cret".into()),
            api_tokens: vec![limited],
            ..env.config.clone()
        };
        let limiter = RateLimiter::new(&config.with_api_token_limits()).unwrap();
        let scout = ScoutService::new(env.store.clone(), env.cache.clone());
        let state = api::ApiState::new(env.tracker(), scout, config).with_rate_limiter(limiter);
        let base = serve(api::router(state)).await;
        let http = reqwest::Client::new();
        let list = |token: &'static str| {
            let request = http.get(format!("{base}/jobs?status=queued"));
            request.bearer_auth(token).send()
        };
        for _ in 0..3 {
            assert_eq!(list("crawler-s3cret").await.unwrap().status(), 200);
        }
        let refused = list("crawler-s3cret").await.unwrap();
        assert_eq!(refused.status(), 429);
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry_after), "{retry_after}");
        // Another token is not slowed by it.
        assert_eq!(list("admin-s3cret").await.unwrap().status(), 200);
    })
    .await;
}

/// A read held up by the database answers 503 at the deadline, and the
/// API answers again once the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_past_its_deadline_gets_503() {
    use sqlx::Connection;
    run(Kind::Postgres, |env| async move {
        let config = JobsConfig {
            api_read_timeout_ms: 300,
            ..env.config.clone()
        };
        let base = api_with(&env, config).await;
        let url = with_database(&admin_url(), env.database.as_deref().unwrap());
        let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut lock = holder.begin().await.unwrap();
        sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *lock)
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let list = || http.get(format!("{base}/jobs?status=queued")).send();
        let started = std::time::Instant::now();
        let held = list().await.unwrap();
        assert_eq!(held.status(), 503);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let error: Value = held.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("300 ms"),
            "{error}"
        );
        lock.rollback().await.unwrap();
        assert_eq!(list().await.unwrap().status(), 200);
    })
    .await;
}

#[test]
fn api_tokens_must_be_distinct_and_scoped() {
    use consumers::jobs::{ApiScope, ApiToken};
    let token = |name: &str, secret: &str, scopes: Vec<ApiScope>| ApiToken {
        name: name.into(),
        token: secret.into(),
        scopes,
        rate_limit: None,
    };
    let with = |tokens| JobsConfig {
        api_tokens: tokens,
        ..JobsConfig::default()
    };
    let twice = with(vec![
        token("a", "same", vec![ApiScope::Read]),
        token("b", "same", vec![ApiScope::Read]),
    ]);
    assert_eq!(twice.validate().unwrap_err().0, "jobs.api_tokens");
    let unscoped = with(vec![token("a", "x", vec![])]);
    assert!(unscoped.validate().unwrap_err().1.contains("no scopes"));
    let empty = with(vec![token("a", " ", vec![ApiScope::Read])]);
    assert!(empty.validate().unwrap_err().1.contains("empty"));
    assert!(with(vec![token("a", "x", vec![ApiScope::Read])])
        .validate()
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_wants_the_bearer_token_when_configured() {
    run(Kind::Sqlite, |env| async move {
        let base = api_base(&env, Some("s3cret")).await;
        let http = reqwest::Client::new();
        let body = json!({"job_type": "scout_report_team", "subject_id": 1});
        for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
            let mut post = http.post(format!("{base}/jobs")).json(&body);
            if let Some(auth) = auth {
                post = post.header("authorization", auth);
            }
            assert_eq!(post.send().await.unwrap().status(), 401, "{auth:?}");
        }
        let response = http
            .get(format!("{base}/jobs?status=queued"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let response = http
            .post(format!("{base}/jobs"))
            .bearer_auth("s3cret")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    })
    .await;
}

// ---------------------------------------------------------------------------
// Throughput of no-op jobs (figures, not an assertion).

struct Noop;

#[async_trait]
impl JobExecutor for Noop {
    async fn execute(&self, _: JobType, _: &JobRecord) -> Result<(), JobError> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Worker processes: killed mid-job, and two sharing one table.

impl Env {
    fn database_url(&self) -> String {
        with_database(
            &admin_url(),
            self.database.as_deref().expect("a PostgreSQL test"),
        )
    }

    /// This test binary re-run as a worker pool process over this database.
    fn spawn_worker_process(
        &self,
        stop_file: &std::path::Path,
        out: &std::path::Path,
    ) -> std::process::Child {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "job_worker_process", "--ignored", "--nocapture"])
            .env("WORKER_DATABASE_URL", self.database_url())
            .env("WORKER_OPENDOTA", &self.config.opendota_base_url)
            .env("WORKER_LIMIT_PREFIX", &self.config.key_prefix)
            .env("WORKER_STOP_FILE", stop_file)
            .env("WORKER_OUT", out)
            // Its own `test result` line would count in the suite's summary.
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }
}

/// A worker pool process: runs jobs until the stop file appears, then writes
/// how many it finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a child process of the worker process tests"]
async fn job_worker_process() {
    let var = |name: &str| std::env::var(name).unwrap();
    let store = Store::connect(&var("WORKER_DATABASE_URL")).await.unwrap();
    let cache = Cache::connect(CacheConfig {
        redis_url: redis_url(),
        key_prefix: format!("{}:", unique("sstest-jobs-cache-")),
        ..CacheConfig::default()
    })
    .await
    .unwrap();
    let mut config = test_config(&var("WORKER_OPENDOTA"));
    config.key_prefix = var("WORKER_LIMIT_PREFIX");
    config.workers = 8;
    let limiter = RateLimiter::new(&config).unwrap();
    let bus = MemoryBus::new(4);
    let executor = StandardExecutor::new(
        store.clone(),
        cache.clone(),
        limiter,
        Arc::new(bus.clone()),
        &config,
    )
    .unwrap();
    let tracker = JobTracker::new(store, cache, Arc::new(bus), Duration::from_secs(600));
    let pool = WorkerPool::new(tracker, Arc::new(executor), config, "jobs");
    let stop = CancellationToken::new();
    let stop_file = std::path::PathBuf::from(var("WORKER_STOP_FILE"));
    let watcher = stop.clone();
    tokio::spawn(async move {
        while !stop_file.exists() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        watcher.cancel();
    });
    let stats = pool.run(stop).await;
    std::fs::write(var("WORKER_OUT"), stats.succeeded.to_string()).unwrap();
}

fn temp_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(unique(name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_process_job_runs_again_once_its_lease_runs_out() {
    run(Kind::Postgres, |env| async move {
        env.upstream.hang_next.store(true, Ordering::SeqCst);
        let job = request(JobType::RefreshPlayer, 4_242);
        assert!(env.handler().handle(&[delivery(&job, 0)]).await[0].is_ok());
        let (stop_file, out) = (temp_path("stop-"), temp_path("out-"));
        let mut child = env.spawn_worker_process(&stop_file, &out);
        let started = Instant::now();
        while env.upstream.hits() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the worker never called OpenDota"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        child.kill().unwrap(); // SIGKILL: no release, no renewal
        child.wait().unwrap();
        let interrupted = env.view(&job.job_id).await.unwrap();
        assert_eq!(
            (interrupted.job.status.as_str(), interrupted.job.attempts),
            ("running", 1)
        );

        let token = CancellationToken::new();
        let pool = tokio::spawn(env.pool(env.executor()).run(token.clone()));
        let view = env
            .wait_finished(&job.job_id, Duration::from_secs(20))
            .await;
        token.cancel();
        let stats = pool.await.unwrap();
        assert_eq!(view.job.status, "succeeded");
        assert_eq!(view.job.attempts, 2);
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
        assert_eq!(env.upstream.hits(), 2);
        assert_eq!((stats.taken_back, stats.succeeded), (1, 1));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_run_every_job_exactly_once() {
    run(Kind::Postgres, |env| async move {
        const JOBS: usize = 2_000;
        record_jobs(&env, JOBS, 1_000_000).await;
        let stop_file = temp_path("stop-");
        let outs = [temp_path("out-"), temp_path("out-")];
        let children: Vec<std::process::Child> = outs
            .iter()
            .map(|out| env.spawn_worker_process(&stop_file, out))
            .collect();
        wait_all_succeeded(&env, JOBS, Duration::from_secs(180)).await;
        std::fs::write(&stop_file, b"stop").unwrap();
        for mut child in children {
            assert!(child.wait().unwrap().success(), "a worker process failed");
        }
        let finished: Vec<u64> = outs
            .iter()
            .map(|out| std::fs::read_to_string(out).unwrap().parse().unwrap())
            .collect();
        println!("jobs finished per process: {finished:?}");
        assert_eq!(finished.iter().sum::<u64>(), JOBS as u64);
        assert!(
            finished.iter().all(|n| *n > 0),
            "both processes ran jobs: {finished:?}"
        );
        let calls = env.upstream.per_account.lock().unwrap().clone();
        assert_eq!(calls.len(), JOBS, "every job called OpenDota");
        let twice: Vec<_> = calls.iter().filter(|(_, n)| **n != 1).collect();
        assert!(twice.is_empty(), "called more than once: {twice:?}");
        for path in outs.iter().chain([&stop_file]) {
            std::fs::remove_file(path).ok();
        }
    })
    .await;
}

/// Jobs in `status`, counted in the database.
async fn count_status(env: &Env, status: &str) -> i64 {
    let sql = "SELECT COUNT(*) FROM jobs WHERE status = $1";
    match &env.store {
        Store::Postgres(pool) => sqlx::query_scalar(sql).bind(status).fetch_one(pool).await,
        Store::Sqlite(pool) => sqlx::query_scalar(sql).bind(status).fetch_one(pool).await,
    }
    .unwrap()
}

async fn wait_all_succeeded(env: &Env, jobs: usize, timeout: Duration) {
    let started = Instant::now();
    while count_status(env, "succeeded").await < jobs as i64 {
        assert!(
            started.elapsed() < timeout,
            "jobs not done after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `jobs` refresh_player requests for distinct accounts, recorded through
/// the handler as the jobs group would.
async fn record_jobs(env: &Env, jobs: usize, first_account: i64) -> Duration {
    let handler = env.handler();
    let deliveries: Vec<Delivery> = (0..jobs)
        .map(|i| {
            delivery(
                &request(JobType::RefreshPlayer, first_account + i as i64),
                i as i64,
            )
        })
        .collect();
    let started = Instant::now();
    for chunk in deliveries.chunks(500) {
        assert!(handler.handle(chunk).await.iter().all(Result::is_ok));
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures; run with --ignored --nocapture"]
async fn noop_job_throughput_of_one_worker() {
    for kind in [Kind::Postgres, Kind::Sqlite] {
        run(kind, |mut env| async move {
            const JOBS: usize = 5_000;
            env.config.workers = 512;
            env.config.claim_batch = 512;
            let recording = record_jobs(&env, JOBS, 1).await;
            let started = Instant::now();
            let pool = tokio::spawn(env.pool(Arc::new(Noop)).run(CancellationToken::new()));
            wait_all_succeeded(&env, JOBS, Duration::from_secs(600)).await;
            let elapsed = started.elapsed();
            pool.abort();
            println!(
                "{:?}: {JOBS} no-op jobs: recorded by the handler at {:.0} jobs/s; run by one pool \
                 (512 workers, claims of 512) at {:.0} jobs/s ({:.3} ms per job: claim, finish, \
                 history, status events and Redis mirror in batches)",
                env.kind,
                JOBS as f64 / recording.as_secs_f64(),
                JOBS as f64 / elapsed.as_secs_f64(),
                elapsed.as_secs_f64() * 1_000.0 / JOBS as f64,
            );
        })
        .await;
    }
}
