//! [`CacheHandler`]: keeps the cache up to date from `matches` and `players`.

use std::collections::BTreeSet;

use async_trait::async_trait;
use pipeline::bus::Delivery;
use pipeline::runner::{Handler, HandlerError};
use schemas::codec::Codec;
use schemas::{topics, CodecError, Event, MatchCompleted, PlayerProfile, ANONYMOUS_ACCOUNT_ID};

use super::keys;
use super::layer::Cache;
use super::newer::{NewerWrite, VersionAt};
use super::summary::MatchSummary;

/// Why one delivery could not be cached. None is retriable: a cache write
/// always lands, in Redis or in memory.
#[derive(Debug, thiserror::Error)]
pub enum CacheHandlerError {
    #[error("cannot decode {event} from `{topic}`: {source}")]
    Decode {
        event: &'static str,
        topic: String,
        #[source]
        source: CodecError,
    },
    #[error("topic `{0}` is not one the cache group reads")]
    UnknownTopic(String),
    #[error("cannot serialize {what} as JSON: {source}")]
    Serialize {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl CacheHandlerError {
    /// `DeadLetter::error_kind` of the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            CacheHandlerError::Decode { .. } => "decode",
            CacheHandlerError::UnknownTopic(_) => "unknown_topic",
            CacheHandlerError::Serialize { .. } => "encode",
        }
    }
}

impl From<CacheHandlerError> for HandlerError {
    fn from(err: CacheHandlerError) -> Self {
        HandlerError::permanent(err.kind(), err.to_string())
    }
}

/// Caches match summaries and player profiles, and drops a player's derived
/// keys when a newer match of theirs arrives. Every write is idempotent
/// (plain sets, or compare-and-set on a version), so redelivery is harmless.
pub struct CacheHandler {
    cache: Cache,
    codec: Codec,
}

impl CacheHandler {
    pub fn new(cache: Cache) -> Self {
        Self {
            cache,
            codec: Codec::default(),
        }
    }

    /// A codec that knows more writer schemas, e.g. Confluent registrations.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    async fn handle_one(&self, delivery: &Delivery) -> Result<(), CacheHandlerError> {
        match &*delivery.topic {
            topics::MATCHES => self.cache_match(&self.decode(delivery)?).await,
            topics::PLAYERS => self.cache_profile(&self.decode(delivery)?).await,
            other => Err(CacheHandlerError::UnknownTopic(other.to_string())),
        }
    }

    fn decode<E: Event>(&self, delivery: &Delivery) -> Result<E, CacheHandlerError> {
        self.codec
            .decode(&delivery.payload)
            .map_err(|source| CacheHandlerError::Decode {
                event: E::NAME,
                topic: delivery.topic.to_string(),
                source,
            })
    }

    async fn cache_match(&self, m: &MatchCompleted) -> Result<(), CacheHandlerError> {
        let summary = to_json("match summary", &MatchSummary::from(m))?;
        let ttl = self.cache.config().match_ttl();
        self.cache
            .set(&keys::match_key(m.match_id), &summary, ttl)
            .await;
        // Concurrent: one round trip's latency for all players, not ten.
        let markers = known_players(m)
            .into_iter()
            .map(|account_id| self.mark_latest_match(account_id, m.start_time));
        futures::future::join_all(markers).await;
        Ok(())
    }

    /// Moves the player's newest-match marker forward, dropping their derived
    /// keys in the same step; an older or the same match changes nothing.
    async fn mark_latest_match(&self, account_id: i64, start_time: i64) {
        let marker = keys::latest_match_key(account_id);
        let derived = keys::derived_player_keys(account_id);
        let value = start_time.to_string();
        self.cache
            .set_if_newer(NewerWrite {
                key: &marker,
                value: &value,
                version: start_time,
                version_at: VersionAt::Value,
                ttl: self.cache.config().match_ttl(),
                invalidate: &derived,
            })
            .await;
    }

    /// Caches the player's profile merged with what is cached: sources carry
    /// different fields (a rank record, a Steam summary), so the newer profile's
    /// known fields win and the older one fills the gaps, as in the database.
    /// One player's profiles share a partition, so this read-merge-write is not raced.
    async fn cache_profile(&self, profile: &PlayerProfile) -> Result<(), CacheHandlerError> {
        let key = keys::player_key(profile.account_id);
        let cached: Option<PlayerProfile> = self
            .cache
            .get(&key)
            .await
            .and_then(|json| serde_json::from_str(&json).ok());
        let merged = match &cached {
            Some(cached) => merge_profiles(profile, cached),
            None => profile.clone(),
        };
        if cached.as_ref() == Some(&merged) {
            return Ok(()); // a redelivery or an older profile with nothing new
        }
        let json = to_json("player profile", &merged)?;
        self.cache
            .set(&key, &json, self.cache.config().player_ttl())
            .await;
        // The scout report shows rank and name: a changed profile makes it stale.
        self.cache
            .delete(&keys::derived_player_keys(profile.account_id))
            .await;
        Ok(())
    }
}

fn merge_profiles(incoming: &PlayerProfile, cached: &PlayerProfile) -> PlayerProfile {
    let (newer, older) = if incoming.observed_at_ms >= cached.observed_at_ms {
        (incoming, cached)
    } else {
        (cached, incoming)
    };
    let pick = |n: &Option<String>, o: &Option<String>| n.clone().or_else(|| o.clone());
    PlayerProfile {
        account_id: newer.account_id,
        persona_name: pick(&newer.persona_name, &older.persona_name),
        rank_tier: newer.rank_tier.or(older.rank_tier),
        leaderboard_rank: newer.leaderboard_rank.or(older.leaderboard_rank),
        country: pick(&newer.country, &older.country),
        last_seen: newer.last_seen.or(older.last_seen),
        avatar_url: pick(&newer.avatar_url, &older.avatar_url),
        profile_url: pick(&newer.profile_url, &older.profile_url),
        observed_at_ms: newer.observed_at_ms,
        source: newer.source.clone(),
    }
}

#[async_trait]
impl Handler for CacheHandler {
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut outcomes = Vec::with_capacity(deliveries.len());
        // In order: a partition's events for one entity must apply in sequence.
        for delivery in deliveries {
            outcomes.push(self.handle_one(delivery).await.map_err(HandlerError::from));
        }
        outcomes
    }
}

/// Account ids of the match's players, anonymous ones left out (ingest maps
/// them to `None`; JSON publishers might still send Steam's marker).
fn known_players(m: &MatchCompleted) -> BTreeSet<i64> {
    m.players
        .iter()
        .filter_map(|p| p.account_id)
        .filter(|id| *id != ANONYMOUS_ACCOUNT_ID)
        .collect()
}

fn to_json<T: serde::Serialize>(
    what: &'static str,
    value: &T,
) -> Result<String, CacheHandlerError> {
    serde_json::to_string(value).map_err(|source| CacheHandlerError::Serialize { what, source })
}
