//! [`CacheHandler`]: keeps the cache up to date from `matches` and `players`.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use pipeline::runner::{Decoded, EventHandler, HandlerError};
use schemas::codec::Codec;
use schemas::{MatchCompleted, PlayerProfile, ScoutEvent, ANONYMOUS_ACCOUNT_ID};

use super::config::CacheConfig;
use super::keys;
use super::layer::Cache;
use super::newer::VersionAt;
use super::summary::MatchSummary;
use super::write::CacheWrite;

/// Why one delivery could not be cached. None is retriable: a cache write
/// always lands, in Redis or in memory.
#[derive(Debug, thiserror::Error)]
pub enum CacheHandlerError {
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

    /// The cached profiles of every account the batch has a profile for,
    /// read in one round trip.
    async fn cached_profiles(&self, events: &[Decoded<'_, ScoutEvent>]) -> Profiles {
        let accounts: Vec<i64> = events
            .iter()
            .filter_map(|d| match &d.event {
                ScoutEvent::Profile(p) => Some(p.account_id),
                ScoutEvent::Match(_) => None,
            })
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let keys: Vec<String> = accounts.iter().map(|id| keys::player_key(*id)).collect();
        let cached = self.cache.get_many(&keys).await;
        accounts
            .into_iter()
            .zip(cached)
            .map(|(account_id, json)| {
                let cached = json.and_then(|json| serde_json::from_str(&json).ok());
                (account_id, ProfileState::new(cached))
            })
            .collect()
    }
}

/// One account's cached profile and what the batch has made of it so far.
struct ProfileState {
    cached: Option<PlayerProfile>,
    current: Option<PlayerProfile>,
    /// Indexes of the batch's deliveries that fed `current`.
    deliveries: Vec<usize>,
}

impl ProfileState {
    fn new(cached: Option<PlayerProfile>) -> Self {
        Self {
            current: cached.clone(),
            cached,
            deliveries: Vec::new(),
        }
    }

    /// Merges the next profile of the account in; an older or the same
    /// profile with nothing new changes nothing.
    fn merge(&mut self, index: usize, profile: &PlayerProfile) {
        self.deliveries.push(index);
        self.current = Some(match &self.current {
            Some(current) => merge_profiles(profile, current),
            None => profile.clone(),
        });
    }

    fn changed(&self) -> bool {
        self.current != self.cached
    }
}

type Profiles = BTreeMap<i64, ProfileState>;

/// The writes one batch makes, folded so each key is written once: the last
/// summary of a match, each player's newest start time, each account's
/// profile merged in delivery order. The result is what the deliveries give
/// applied one at a time, as every write is a plain set, a delete or a
/// compare-and-set on a growing version.
#[derive(Default)]
struct BatchWrites {
    summaries: BTreeMap<i64, String>,
    latest_match: BTreeMap<i64, i64>,
}

impl BatchWrites {
    fn add_match(&mut self, m: &MatchCompleted) -> Result<(), CacheHandlerError> {
        let summary = to_json("match summary", &MatchSummary::from(m))?;
        self.summaries.insert(m.match_id, summary);
        for account_id in known_players(m) {
            let latest = self.latest_match.entry(account_id).or_insert(m.start_time);
            *latest = (*latest).max(m.start_time);
        }
        Ok(())
    }

    fn into_writes(self, config: &CacheConfig) -> Vec<CacheWrite> {
        let summaries = self
            .summaries
            .into_iter()
            .map(|(match_id, summary)| CacheWrite::Set {
                key: keys::match_key(match_id),
                value: summary,
                ttl: config.match_ttl(),
            });
        // Moves each player's newest-match marker forward, dropping their
        // derived keys in the same step; an older or the same match changes nothing.
        let markers = self
            .latest_match
            .into_iter()
            .map(|(account_id, start_time)| CacheWrite::SetIfNewer {
                key: keys::latest_match_key(account_id),
                value: start_time.to_string(),
                version: start_time,
                version_at: VersionAt::Value,
                ttl: config.match_ttl(),
                invalidate: keys::derived_player_keys(account_id),
            });
        summaries.chain(markers).collect()
    }
}

/// The writes of the profiles that changed. Profiles merge with what is
/// cached: sources carry different fields (a rank record, a Steam summary), so
/// the newer profile's known fields win and the older one fills the gaps, as
/// in the database. One player's profiles share a partition, so this
/// read-merge-write is not raced.
fn profile_writes(
    profiles: Profiles,
    config: &CacheConfig,
    outcomes: &mut [Result<(), HandlerError>],
) -> Vec<CacheWrite> {
    let mut writes = Vec::new();
    for (account_id, state) in profiles {
        let Some(current) = state.current.as_ref().filter(|_| state.changed()) else {
            continue; // redeliveries or older profiles with nothing new
        };
        match to_json("player profile", current) {
            Ok(json) => {
                writes.push(CacheWrite::Set {
                    key: keys::player_key(account_id),
                    value: json,
                    ttl: config.player_ttl(),
                });
                // The scout report shows rank and name: a changed profile makes it stale.
                writes.push(CacheWrite::Delete {
                    keys: keys::derived_player_keys(account_id),
                });
            }
            Err(err) => {
                let failure = HandlerError::from(err);
                for index in &state.deliveries {
                    outcomes[*index] = Err(failure.clone());
                }
            }
        }
    }
    writes
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
impl EventHandler for CacheHandler {
    type Events = ScoutEvent;

    fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Reads the cached profiles the batch merges with (one round trip) and
    /// sends all its writes in one pipeline (one more).
    async fn handle_events(
        &self,
        events: Vec<Decoded<'_, ScoutEvent>>,
    ) -> Vec<Result<(), HandlerError>> {
        let mut profiles = self.cached_profiles(&events).await;
        let mut batch = BatchWrites::default();
        let mut outcomes = Vec::with_capacity(events.len());
        for (index, decoded) in events.iter().enumerate() {
            let outcome = match &decoded.event {
                ScoutEvent::Match(m) => batch.add_match(m),
                ScoutEvent::Profile(p) => {
                    if let Some(state) = profiles.get_mut(&p.account_id) {
                        state.merge(index, p);
                    }
                    Ok(())
                }
            };
            outcomes.push(outcome.map_err(HandlerError::from));
        }
        let config = self.cache.config();
        let mut writes = batch.into_writes(config);
        writes.extend(profile_writes(profiles, config, &mut outcomes));
        self.cache.write_all(&writes).await;
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
