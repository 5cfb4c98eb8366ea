//! The publishing API: typed events in, encoded and keyed records on the bus out.

use std::sync::Arc;

use pipeline::bus::{BusError, Publisher, Record};
use schemas::{
    topics, Codec, CodecError, Encoding, Event, JobRequested, MatchCompleted, PlayerProfile,
};

use crate::ingest::IngestedEvent;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("encoding {event} failed: {source}")]
    Encode {
        event: &'static str,
        #[source]
        source: CodecError,
    },
    #[error("publishing to `{topic}` failed: {source}")]
    Bus {
        topic: &'static str,
        #[source]
        source: BusError,
    },
}

impl PublishError {
    pub fn is_retriable(&self) -> bool {
        match self {
            PublishError::Encode { .. } => false,
            PublishError::Bus { source, .. } => source.is_retriable(),
        }
    }
}

/// How many events went to each topic.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PublishCounts {
    pub matches: usize,
    pub players: usize,
    pub jobs: usize,
}

pub struct EventPublisher {
    publisher: Arc<dyn Publisher>,
    codec: Codec,
    encoding: Encoding,
}

impl EventPublisher {
    pub fn new(publisher: Arc<dyn Publisher>, encoding: Encoding) -> Self {
        Self {
            publisher,
            codec: Codec::default(),
            encoding,
        }
    }

    /// Encodes with `codec`, e.g. one holding the ids a schema registry gave
    /// (for [`Encoding::Registered`]).
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub async fn publish_matches(&self, matches: &[MatchCompleted]) -> Result<usize, PublishError> {
        let records = self.encode_all(matches, |m| topics::match_key(m.match_id))?;
        self.send(topics::MATCHES, &records).await?;
        Ok(records.len())
    }

    pub async fn publish_players(&self, players: &[PlayerProfile]) -> Result<usize, PublishError> {
        let records = self.encode_all(players, |p| topics::player_key(p.account_id))?;
        self.send(topics::PLAYERS, &records).await?;
        Ok(records.len())
    }

    /// Job requests go to `jobs`, keyed by idempotency key when they have
    /// one (duplicates share a partition and are seen in order), else by id.
    pub async fn publish_jobs(&self, jobs: &[JobRequested]) -> Result<usize, PublishError> {
        let records = self.encode_all(jobs, |j| {
            j.idempotency_key
                .as_deref()
                .unwrap_or(&j.job_id)
                .as_bytes()
                .to_vec()
        })?;
        self.send(topics::JOBS, &records).await?;
        Ok(records.len())
    }

    /// Publishes ingested events, each kind to its topic.
    pub async fn publish_ingested(
        &self,
        events: &[IngestedEvent],
    ) -> Result<PublishCounts, PublishError> {
        let mut matches = Vec::new();
        let mut players = Vec::new();
        let mut jobs = Vec::new();
        for event in events {
            match event {
                IngestedEvent::Match(m) => matches.push(m.clone()),
                IngestedEvent::Player(p) => players.push(p.clone()),
                IngestedEvent::Job(j) => jobs.push(j.clone()),
            }
        }
        Ok(PublishCounts {
            matches: self.publish_matches(&matches).await?,
            players: self.publish_players(&players).await?,
            jobs: self.publish_jobs(&jobs).await?,
        })
    }

    fn encode_all<E: Event>(
        &self,
        events: &[E],
        key: impl Fn(&E) -> Vec<u8>,
    ) -> Result<Vec<Record>, PublishError> {
        events
            .iter()
            .map(|event| {
                let payload = self.codec.encode(event, self.encoding).map_err(|source| {
                    PublishError::Encode {
                        event: E::NAME,
                        source,
                    }
                })?;
                Ok(Record::new(key(event), payload))
            })
            .collect()
    }

    async fn send(&self, topic: &'static str, records: &[Record]) -> Result<(), PublishError> {
        if records.is_empty() {
            return Ok(());
        }
        self.publisher
            .publish_batch(topic, records)
            .await
            .map_err(|source| PublishError::Bus { topic, source })
    }
}
