//! Worker processes (killed mid-job, two sharing one table) and the throughput of no-op jobs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use consumers::cache::{Cache, CacheConfig};
use consumers::jobs::{
    JobError, JobExecutor, JobRecord, JobTracker, RateLimiter, StandardExecutor, WorkerPool,
};
use consumers::persist::Store;
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::Delivery;
use pipeline::runner::Handler;
use schemas::JobType;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::helpers::*;

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
            .args([
                "--exact",
                "worker_processes::job_worker_process",
                "--ignored",
                "--nocapture",
            ])
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
