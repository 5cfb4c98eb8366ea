//! Builds the handler of each enabled group from the configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use consumers::cache::{Cache, CacheHandler};
use consumers::enrich::EnrichHandler;
use consumers::jobs::{JobTracker, JobsHandler, RateLimiter, StandardExecutor, WorkerPool};
use consumers::persist::{PersistHandler, Store};
use consumers::scout::ScoutService;
use pipeline::bus::Bus;
use pipeline::runner::Handler;
use tokio_util::sync::CancellationToken;

use crate::app::{AppConfig, GroupName, GroupSpec};

pub async fn build(
    config: &AppConfig,
    bus: Arc<dyn Bus>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<GroupSpec>> {
    let _ = shutdown;
    let mut specs = Vec::new();
    for name in &config.groups.enabled {
        let (handler, pool) = handler_for(*name, config, &bus).await?;
        specs.push(GroupSpec {
            name: *name,
            id: config.group_id(*name),
            topics: name.topics(),
            handler,
            pool,
        });
    }
    Ok(specs)
}

/// The group's handler, and for the jobs group the worker pool that runs
/// what the handler records.
async fn handler_for(
    name: GroupName,
    config: &AppConfig,
    bus: &Arc<dyn Bus>,
) -> anyhow::Result<(Arc<dyn Handler>, Option<WorkerPool>)> {
    Ok(match name {
        GroupName::Enrich => (Arc::new(EnrichHandler::new(bus.publisher().await?)), None),
        GroupName::Cache => (Arc::new(CacheHandler::new(cache(config).await?)), None),
        GroupName::Persist => (Arc::new(PersistHandler::new(store(config).await?)), None),
        GroupName::Jobs => {
            let (store, cache) = (store(config).await?, cache(config).await?);
            let limiter = RateLimiter::new(&config.jobs).context("starting the rate limiter")?;
            let executor = StandardExecutor::new(
                store.clone(),
                cache.clone(),
                limiter,
                bus.publisher().await?,
                &config.jobs,
            )?;
            let tracker = tracker(config, bus, store, cache).await?;
            let handler = JobsHandler::new(tracker.clone(), config.jobs.clone());
            let pool = WorkerPool::new(
                tracker,
                Arc::new(executor),
                config.jobs.clone(),
                config.group_id(name),
            );
            (Arc::new(handler), Some(pool))
        }
    })
}

async fn store(config: &AppConfig) -> anyhow::Result<Store> {
    Store::connect(&config.database.url)
        .await
        .context("opening the database")
}

async fn cache(config: &AppConfig) -> anyhow::Result<Cache> {
    Cache::connect(config.cache.clone())
        .await
        .context("starting the cache layer")
}

async fn tracker(
    config: &AppConfig,
    bus: &Arc<dyn Bus>,
    store: Store,
    cache: Cache,
) -> anyhow::Result<JobTracker> {
    let mirror_ttl = Duration::from_secs(config.jobs.mirror_ttl_secs);
    Ok(JobTracker::new(
        store,
        cache,
        bus.publisher().await?,
        mirror_ttl,
    ))
}

/// The jobs and scout-report HTTP API, served beside `/metrics`.
pub async fn jobs_api(config: &AppConfig, bus: &Arc<dyn Bus>) -> anyhow::Result<axum::Router> {
    let (store, cache) = (store(config).await?, cache(config).await?);
    let scout = ScoutService::new(store.clone(), cache.clone());
    let state = consumers::jobs::api::ApiState::new(
        tracker(config, bus, store, cache).await?,
        scout,
        config.jobs.clone(),
    );
    Ok(consumers::jobs::api::router(state))
}
