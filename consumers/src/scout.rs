//! The scout read model: reports served from the cache while fresh, from the
//! database otherwise (and then cached for `scout_ttl`). The cache group drops
//! a player's report when a newer match or profile of theirs arrives.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache::{keys, Cache};
use crate::persist::{PersistError, PlayerReport, Store, TeamReport};

/// Where a report came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Cache,
    Database,
}

#[derive(Clone)]
pub struct ScoutService {
    store: Store,
    cache: Cache,
}

pub fn team_key(team_id: i64) -> String {
    format!("scout:team:{team_id}")
}

impl ScoutService {
    pub fn new(store: Store, cache: Cache) -> Self {
        Self { store, cache }
    }

    pub async fn player_report(
        &self,
        account_id: i64,
    ) -> Result<Option<(PlayerReport, Served)>, PersistError> {
        let key = keys::scout_player_key(account_id);
        self.read_through(&key, || self.store.player_report(account_id))
            .await
    }

    pub async fn team_report(
        &self,
        team_id: i64,
    ) -> Result<Option<(TeamReport, Served)>, PersistError> {
        self.read_through(&team_key(team_id), || self.store.team_report(team_id))
            .await
    }

    async fn read_through<T, F, Fut>(
        &self,
        key: &str,
        load: F,
    ) -> Result<Option<(T, Served)>, PersistError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>, PersistError>>,
    {
        if let Some(report) = self
            .cache
            .get(key)
            .await
            .and_then(|json| serde_json::from_str(&json).ok())
        {
            return Ok(Some((report, Served::Cache)));
        }
        let Some(report) = load().await? else {
            return Ok(None);
        };
        // A report that cannot be serialized is still served, just not cached.
        if let Ok(json) = serde_json::to_string(&report) {
            self.cache
                .set(key, &json, self.cache.config().scout_ttl())
                .await;
        }
        Ok(Some((report, Served::Database)))
    }
}
