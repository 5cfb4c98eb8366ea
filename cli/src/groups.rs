//! Builds the handler of each enabled group from the configuration.

use std::sync::Arc;

use anyhow::Context;
use consumers::cache::{Cache, CacheHandler};
use consumers::enrich::EnrichHandler;
use consumers::persist::{PersistHandler, Store};
use pipeline::bus::Bus;
use pipeline::runner::Handler;

use crate::app::{AppConfig, GroupName, GroupSpec};

pub async fn build(config: &AppConfig, bus: Arc<dyn Bus>) -> anyhow::Result<Vec<GroupSpec>> {
    let mut specs = Vec::new();
    for name in &config.groups.enabled {
        let handler = handler_for(*name, config, &bus).await?;
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
) -> anyhow::Result<Arc<dyn Handler>> {
    Ok(match name {
        GroupName::Enrich => Arc::new(EnrichHandler::new(bus.publisher().await?)),
        GroupName::Cache => {
            let cache = Cache::connect(config.cache.clone())
                .await
                .context("starting the cache layer")?;
            Arc::new(CacheHandler::new(cache))
        }
        GroupName::Persist => {
            let store = Store::connect(&config.database.url)
                .await
                .context("opening the database")?;
            Arc::new(PersistHandler::new(store))
        }
    })
}
