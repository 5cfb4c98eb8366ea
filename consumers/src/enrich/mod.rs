//! The enrich consumer group: reads [`MatchCompleted`] from `matches`, joins it
//! with reference data and derived stats ([`stats`]) and publishes
//! [`MatchEnriched`](schemas::MatchEnriched) to `matches.enriched`.
//!
//! - [`stats`]: the pure enrichment.
//! - [`events`]: what the group logs.
//!
//! A delivery is done only once its enriched match is durable on the output
//! topic. Undecodable input fails permanently (the runner dead-letters it);
//! a failed publish is retriable.

pub mod events;
pub mod stats;

use std::sync::Arc;

use async_trait::async_trait;
use pipeline::bus::{BusError, Publisher, Record};
use pipeline::internal_events::InternalEvent;
use pipeline::runner::{Decoded, EventHandler, HandlerError};
use schemas::codec::{Codec, Encoding};
use schemas::reference::Reference;
use schemas::{CodecError, MatchCompleted};

use events::{EnrichedPublishFailed, MatchesEnriched, UnknownReferenceIds};

/// The topic the group reads (`<MatchCompleted as GroupEvents>::TOPICS`).
pub const DEFAULT_INPUT_TOPIC: &str = schemas::topics::MATCHES;
/// Topic enriched matches go to by default.
pub const DEFAULT_OUTPUT_TOPIC: &str = "matches.enriched";

/// Why one delivery could not be enriched.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("cannot encode MatchEnriched: {0}")]
    Encode(#[source] CodecError),
    #[error("cannot publish to `{topic}`: {source}")]
    Publish {
        topic: String,
        #[source]
        source: BusError,
    },
}

impl EnrichError {
    /// `DeadLetter::error_kind` of the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            EnrichError::Encode(_) => "encode",
            EnrichError::Publish { .. } => "publish",
        }
    }

    /// An event that does not encode stays so; the output topic may come back.
    pub fn is_retriable(&self) -> bool {
        matches!(self, EnrichError::Publish { .. })
    }
}

impl From<EnrichError> for HandlerError {
    fn from(err: EnrichError) -> Self {
        let message = err.to_string();
        if err.is_retriable() {
            HandlerError::retriable(err.kind(), message)
        } else {
            HandlerError::permanent(err.kind(), message)
        }
    }
}

/// Enriches each delivered match and publishes the results of a slice at once.
pub struct EnrichHandler {
    publisher: Arc<dyn Publisher>,
    codec: Codec,
    reference: &'static Reference,
    output_topic: String,
    clock: fn() -> i64,
}

impl EnrichHandler {
    /// Publishes to [`DEFAULT_OUTPUT_TOPIC`] through `publisher`.
    pub fn new(publisher: Arc<dyn Publisher>) -> Self {
        Self {
            publisher,
            codec: Codec::default(),
            reference: Reference::get(),
            output_topic: DEFAULT_OUTPUT_TOPIC.to_string(),
            clock: unix_now_ms,
        }
    }

    pub fn with_output_topic(mut self, topic: impl Into<String>) -> Self {
        self.output_topic = topic.into();
        self
    }

    /// A codec that knows more writer schemas, e.g. Confluent registrations.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    /// Where `enriched_at_ms` comes from (unix milliseconds); tests pin it.
    pub fn with_clock(mut self, clock: fn() -> i64) -> Self {
        self.clock = clock;
        self
    }

    pub fn output_topic(&self) -> &str {
        &self.output_topic
    }

    /// Enriches and encodes one match into the record to publish.
    fn prepare(
        &self,
        completed: &MatchCompleted,
        enriched_at_ms: i64,
    ) -> Result<Record, EnrichError> {
        let enriched = stats::enrich(completed, self.reference, enriched_at_ms);
        if !enriched.unknown_ids.is_empty() {
            UnknownReferenceIds {
                match_id: enriched.match_id,
                unknown_ids: &enriched.unknown_ids,
            }
            .emit();
        }
        let payload = self
            .codec
            .encode(&enriched, Encoding::SingleObject)
            .map_err(EnrichError::Encode)?;
        Ok(Record::new(enriched.match_id.to_string(), payload))
    }

    async fn publish(&self, records: &[Record]) -> Result<(), EnrichError> {
        let result = self
            .publisher
            .publish_batch(&self.output_topic, records)
            .await;
        match result {
            Ok(()) => {
                MatchesEnriched {
                    topic: &self.output_topic,
                    events: records.len(),
                }
                .emit();
                Ok(())
            }
            Err(source) => {
                EnrichedPublishFailed {
                    topic: &self.output_topic,
                    events: records.len(),
                    error: &source,
                }
                .emit();
                Err(EnrichError::Publish {
                    topic: self.output_topic.clone(),
                    source,
                })
            }
        }
    }
}

#[async_trait]
impl EventHandler for EnrichHandler {
    type Events = MatchCompleted;

    fn codec(&self) -> &Codec {
        &self.codec
    }

    async fn handle_events(
        &self,
        matches: Vec<Decoded<'_, MatchCompleted>>,
    ) -> Vec<Result<(), HandlerError>> {
        let enriched_at_ms = (self.clock)();
        let mut outcomes = Vec::with_capacity(matches.len());
        let mut records = Vec::with_capacity(matches.len());
        // Indexes into `outcomes` of the matches whose record is in `records`.
        let mut published = Vec::with_capacity(matches.len());
        for (i, completed) in matches.iter().enumerate() {
            match self.prepare(&completed.event, enriched_at_ms) {
                Ok(record) => {
                    records.push(record);
                    published.push(i);
                    outcomes.push(Ok(()));
                }
                Err(err) => outcomes.push(Err(err.into())),
            }
        }
        if records.is_empty() {
            return outcomes;
        }
        if let Err(err) = self.publish(&records).await {
            let failure = HandlerError::from(err);
            for i in published {
                outcomes[i] = Err(failure.clone());
            }
        }
        outcomes
    }
}

fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
