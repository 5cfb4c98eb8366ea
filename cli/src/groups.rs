//! Builds the handler of each enabled group from the configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use consumers::cache::{Cache, CacheHandler};
use consumers::enrich::EnrichHandler;
use consumers::jobs::{JobTracker, JobsHandler, RateLimiter, StandardExecutor};
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
    let mut specs = Vec::new();
    for name in &config.groups.enabled {
        let handler = handler_for(*name, config, &bus, shutdown).await?;
        specs.push(GroupSpec {
            name: *name,
            id: config.group_id(*name),
            topics: name.topics(),
            handler,
        });
    }
    Ok(specs)
}

async fn handler_for(
    name: GroupName,
    config: &AppConfig,
    bus: &Arc<dyn Bus>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Arc<dyn Handler>> {
    Ok(match name {
        GroupName::Enrich => Arc::new(EnrichHandler::new(bus.publisher().await?)),
        GroupName::Cache => Arc::new(CacheHandler::new(cache(config).await?)),
        GroupName::Persist => Arc::new(PersistHandler::new(store(config).await?)),
        GroupName::Jobs => {
            let (store, cache) = (store(config).await?, cache(config).await?);
            let limiter = RateLimiter::new(&config.jobs).context("starting the rate limiter")?;
            let executor =
                StandardExecutor::new(store.clone(), cache.clone(), limiter, &config.jobs)?;
            let handler = JobsHandler::new(
                tracker(config, bus, store, cache).await?,
                Arc::new(executor),
                config.jobs.clone(),
            );
            Arc::new(handler.with_shutdown(shutdown.clone()))
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
