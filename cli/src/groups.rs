//! Builds the handler of each enabled group from the configuration, over
//! [`Resources`] the process opens once.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use consumers::cache::{Cache, CacheHandler};
use consumers::enrich::EnrichHandler;
use consumers::jobs::{JobTracker, JobsHandler, RateLimiter, StandardExecutor, WorkerPool};
use consumers::persist::{PersistHandler, Store};
use consumers::scout::ScoutService;
use pipeline::bus::Bus;
use pipeline::config::Backend;
use pipeline::observe::{readiness, BusHealth, HealthCheck};
use pipeline::runner::Handler;
use producers::publish::EventPublisher;
use schemas::registry::{register_writers, RegistryClient, SchemaResolver};
use schemas::{topics, Codec, Encoding};
use tokio::sync::OnceCell;

use crate::app::{AppConfig, GroupName, GroupSpec};

/// What the groups and the API of one process share, opened on first use:
/// one database pool (migrated once) and one cache layer (so one in-process
/// fallback while Redis is away, which every reader sees).
#[derive(Clone, Default)]
pub struct Resources {
    store: Arc<OnceCell<Store>>,
    cache: Arc<OnceCell<Cache>>,
    resolver: Arc<OnceLock<Option<Arc<SchemaResolver>>>>,
    writer: Arc<OnceCell<(Codec, Encoding)>>,
}

impl Resources {
    pub async fn store(&self, config: &AppConfig) -> anyhow::Result<Store> {
        let store = self
            .store
            .get_or_try_init(|| async {
                if config.database.migrate_on_start {
                    Store::connect(&config.database.url).await
                } else {
                    Store::open(&config.database.url).await
                }
            })
            .await
            .context("opening the database")?;
        Ok(store.clone())
    }

    pub async fn cache(&self, config: &AppConfig) -> anyhow::Result<Cache> {
        let cache = self
            .cache
            .get_or_try_init(|| Cache::connect(config.cache.clone()))
            .await
            .context("starting the cache layer")?;
        Ok(cache.clone())
    }

    /// With `[schema_registry]` set, the one resolver of the process: the
    /// ids it learns decode in every group's codec (clones of its own).
    pub fn resolver(&self, config: &AppConfig) -> anyhow::Result<Option<Arc<SchemaResolver>>> {
        if let Some(resolver) = self.resolver.get() {
            return Ok(resolver.clone());
        }
        let resolver = if config.schema_registry.is_enabled() {
            let client = RegistryClient::new(&config.schema_registry)?;
            Some(Arc::new(SchemaResolver::new(
                Arc::new(client),
                Codec::default(),
            )))
        } else {
            None
        };
        Ok(self.resolver.get_or_init(|| resolver).clone())
    }

    /// How the process writes matches, profiles and job requests: with a
    /// registry, Confluent framing with the ids it gave (registered once per
    /// process); else single-object Avro.
    pub async fn writer(&self, config: &AppConfig) -> anyhow::Result<(Codec, Encoding)> {
        let writer = self
            .writer
            .get_or_try_init(|| async {
                let Some(resolver) = self.resolver(config)? else {
                    return Ok::<_, anyhow::Error>((Codec::default(), Encoding::SingleObject));
                };
                let topics = [topics::MATCHES, topics::PLAYERS, topics::JOBS];
                let prefix = &config.bus.topic_prefix;
                register_writers(resolver.client(), resolver.codec(), prefix, &topics)
                    .await
                    .context("registering the schemas with the schema registry")?;
                Ok((resolver.codec().clone(), Encoding::Registered))
            })
            .await?;
        Ok(writer.clone())
    }

    /// What `/readyz` keeps asking in this process: the bus, and the
    /// database once a group or the API opened it. The cache is left out: it
    /// serves from its in-process fallback while Redis is away.
    pub fn health_checks(&self, bus: &Arc<dyn Bus>) -> Vec<Box<dyn HealthCheck>> {
        let mut checks: Vec<Box<dyn HealthCheck>> = vec![Box::new(BusHealth(bus.clone()))];
        if let Some(store) = self.store.get() {
            checks.push(Box::new(StoreHealth(store.clone())));
        }
        checks
    }

    /// The codec the groups decode with.
    fn codec(&self, config: &AppConfig) -> anyhow::Result<Codec> {
        Ok(match self.resolver(config)? {
            Some(resolver) => resolver.codec().clone(),
            None => Codec::default(),
        })
    }
}

/// The database answers a query.
struct StoreHealth(Store);

#[async_trait::async_trait]
impl HealthCheck for StoreHealth {
    fn name(&self) -> &str {
        readiness::STORES
    }

    async fn check(&self) -> Result<(), String> {
        self.0.check_health().await.map_err(|err| err.to_string())
    }
}

pub async fn build(
    config: &AppConfig,
    bus: Arc<dyn Bus>,
    resources: &Resources,
) -> anyhow::Result<Vec<GroupSpec>> {
    let mut specs = Vec::new();
    for name in &config.groups.enabled {
        let (handler, pool) = handler_for(*name, config, &bus, resources).await?;
        specs.push(GroupSpec {
            name: *name,
            id: config.group_id(*name),
            topics: name.topics(),
            default_batch_size: config.default_batch_size(*name),
            members: config.group_members(*name),
            handler,
            pool,
            resolver: resources.resolver(config)?,
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
    resources: &Resources,
) -> anyhow::Result<(Arc<dyn Handler>, Option<WorkerPool>)> {
    let codec = resources.codec(config)?;
    Ok(match name {
        GroupName::Enrich => {
            let handler = EnrichHandler::new(bus.publisher().await?).with_codec(codec);
            (Arc::new(handler), None)
        }
        GroupName::Cache => {
            let cache = resources.cache(config).await?;
            (Arc::new(CacheHandler::new(cache).with_codec(codec)), None)
        }
        GroupName::Persist => {
            let (store, group) = (resources.store(config).await?, config.group_id(name));
            if config.bus.backend == Backend::Memory {
                // The bus starts empty with this process: offsets begin at 0 again.
                store.forget_positions(&group).await?;
            }
            let handler = PersistHandler::new(store, group)
                .with_writers(config.persist_writers())
                .with_codec(codec);
            (Arc::new(handler), None)
        }
        GroupName::Jobs => {
            let (store, cache) = (
                resources.store(config).await?,
                resources.cache(config).await?,
            );
            let limiter = RateLimiter::new(&config.jobs).context("starting the rate limiter")?;
            let executor = StandardExecutor::new(
                store.clone(),
                cache.clone(),
                limiter,
                bus.publisher().await?,
                &config.jobs,
            )?
            .with_matches_publisher(matches_publisher(bus, resources, config).await?);
            let tracker = tracker(config, bus, store, cache).await?;
            let handler = JobsHandler::new(tracker.clone(), config.jobs.clone()).with_codec(codec);
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

async fn matches_publisher(
    bus: &Arc<dyn Bus>,
    resources: &Resources,
    config: &AppConfig,
) -> anyhow::Result<EventPublisher> {
    let (codec, encoding) = resources.writer(config).await?;
    Ok(EventPublisher::new(bus.publisher().await?, encoding).with_codec(codec))
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
pub async fn jobs_api(
    config: &AppConfig,
    bus: &Arc<dyn Bus>,
    resources: &Resources,
) -> anyhow::Result<axum::Router> {
    let (store, cache) = (
        resources.store(config).await?,
        resources.cache(config).await?,
    );
    let scout = ScoutService::new(store.clone(), cache.clone());
    let state = consumers::jobs::api::ApiState::new(
        tracker(config, bus, store, cache).await?,
        scout,
        config.jobs.clone(),
    );
    let (codec, encoding) = resources.writer(config).await?;
    let limiter = RateLimiter::new(&config.jobs.with_api_token_limits())
        .context("starting the API's rate limiter")?;
    let state = state
        .with_writer(codec, encoding)
        .with_rate_limiter(limiter);
    Ok(consumers::jobs::api::router(state))
}
