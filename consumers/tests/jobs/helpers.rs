//! Helpers: job requests, runner configs, and workers on the in-memory bus.

use std::sync::Arc;
use std::time::Duration;

use consumers::jobs::{request_key, JobExecutor, PoolStats};
use pipeline::bus::{now_ms, Bus, Delivery, Position};
use pipeline::runner::{Handler, RunStats, Runner, RunnerConfig};
use schemas::codec::{Codec, Encoding};
use schemas::{topics, JobRequested, JobType};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;

// ---------------------------------------------------------------------------
// Helpers.

pub(crate) fn request(job_type: JobType, subject_id: i64) -> JobRequested {
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

pub(crate) fn runner_config(group: &str) -> RunnerConfig {
    RunnerConfig {
        batch_wait: Duration::from_millis(50),
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(50),
        ..RunnerConfig::new(group)
    }
}

/// A jobs worker: a runner of `group` over `jobs` recording requests, and a
/// worker pool running them, each on its own task.
pub(crate) struct Worker {
    pub(crate) runner: JoinHandle<RunStats>,
    pub(crate) pool: JoinHandle<PoolStats>,
    pub(crate) token: CancellationToken,
}

pub(crate) async fn spawn_runner(env: &Env, group: &str, handler: Arc<dyn Handler>) -> Worker {
    spawn_worker(env, group, handler, env.executor()).await
}

pub(crate) async fn spawn_worker(
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

pub(crate) async fn stop(worker: Worker) -> RunStats {
    stop_both(worker).await.0
}

pub(crate) async fn stop_both(worker: Worker) -> (RunStats, PoolStats) {
    worker.token.cancel();
    (worker.runner.await.unwrap(), worker.pool.await.unwrap())
}

pub(crate) fn delivery(request: &JobRequested, offset: i64) -> Delivery {
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
