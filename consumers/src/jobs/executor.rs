//! What running a job does, by job type.

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::bus::Publisher;
use producers::publish::EventPublisher;
use schemas::Encoding;
use schemas::JobType;

use super::config::{JobsConfig, OPENDOTA};
use super::limiter::RateLimiter;
use super::model::JobRecord;
use super::opendota::OpenDotaClient;
use super::{store, JobError};
use crate::cache::{keys, Cache};
use crate::persist::Store;
use crate::scout::team_key;

/// Runs one attempt of a job. `Ok` means its effects are durable.
#[async_trait]
pub trait JobExecutor: Send + Sync {
    async fn execute(&self, job_type: JobType, job: &JobRecord) -> Result<(), JobError>;
}

/// The real work: scout reports, profile refreshes, hero-pool recomputes.
#[derive(Clone)]
pub struct StandardExecutor {
    store: Store,
    cache: Cache,
    opendota: OpenDotaClient,
    limiter: RateLimiter,
    matches: Arc<EventPublisher>,
}

impl StandardExecutor {
    /// `publisher` carries the matches `parse_match` jobs fetch.
    pub fn new(
        store: Store,
        cache: Cache,
        limiter: RateLimiter,
        publisher: Arc<dyn Publisher>,
        config: &JobsConfig,
    ) -> Result<Self, JobError> {
        Ok(Self {
            store,
            cache,
            opendota: OpenDotaClient::new(config)?,
            limiter,
            matches: Arc::new(EventPublisher::new(publisher, Encoding::SingleObject)),
        })
    }

    /// Publishes parsed matches with `matches` instead, e.g. one writing
    /// Confluent framing with a schema registry's ids.
    pub fn with_matches_publisher(mut self, matches: EventPublisher) -> Self {
        self.matches = Arc::new(matches);
        self
    }

    /// Builds the report from the database (not the cache: the point is a
    /// fresh one) and caches it where [`crate::scout::ScoutService`] reads.
    async fn scout_player(&self, account_id: i64) -> Result<(), JobError> {
        let report = self
            .store
            .player_report(account_id)
            .await?
            .ok_or_else(|| JobError::NotFound(format!("player {account_id}")))?;
        self.cache_json(&keys::scout_player_key(account_id), &report)
            .await
    }

    async fn scout_team(&self, team_id: i64) -> Result<(), JobError> {
        let report = self
            .store
            .team_report(team_id)
            .await?
            .ok_or_else(|| JobError::NotFound(format!("team {team_id}")))?;
        self.cache_json(&team_key(team_id), &report).await
    }

    async fn cache_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), JobError> {
        let json = serde_json::to_string(value).map_err(|e| JobError::Encode(e.to_string()))?;
        self.cache
            .set(key, &json, self.cache.config().scout_ttl())
            .await;
        Ok(())
    }

    /// Fetches the profile (waiting for OpenDota's shared rate limit) and
    /// merges it into `players` (newest observation wins).
    async fn refresh_player(&self, account_id: i64) -> Result<(), JobError> {
        self.limiter.acquire(OPENDOTA).await;
        let profile = self.opendota.fetch_player(account_id).await?;
        self.store.write_profiles(&[profile]).await?;
        // The cached report shows the old profile: drop it.
        self.cache
            .delete(&keys::derived_player_keys(account_id))
            .await;
        Ok(())
    }

    /// Fetches the match (waiting for OpenDota's shared rate limit) and
    /// publishes it on `matches`, where enrich, cache and persist take it.
    async fn parse_match(&self, match_id: i64) -> Result<(), JobError> {
        self.limiter.acquire(OPENDOTA).await;
        let found = self.opendota.fetch_match(match_id).await?;
        self.matches.publish_matches(&[found]).await?;
        Ok(())
    }

    async fn recompute_hero_pool(&self, account_id: i64) -> Result<(), JobError> {
        store::recompute_hero_pool(&self.store, account_id).await?;
        self.cache
            .delete(&keys::derived_player_keys(account_id))
            .await;
        Ok(())
    }
}

#[async_trait]
impl JobExecutor for StandardExecutor {
    async fn execute(&self, job_type: JobType, job: &JobRecord) -> Result<(), JobError> {
        let subject = job.subject_id;
        match job_type {
            JobType::ScoutReportPlayer => self.scout_player(subject).await,
            JobType::ScoutReportTeam => self.scout_team(subject).await,
            JobType::RefreshPlayer => self.refresh_player(subject).await,
            JobType::RecomputeHeroPool => self.recompute_hero_pool(subject).await,
            JobType::ParseMatch => self.parse_match(subject).await,
        }
    }
}
