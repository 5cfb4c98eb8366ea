//! The persist group's [`Handler`]: decodes a batch (every partition's
//! deliveries on the first attempt, one partition's on a retry) and writes it
//! in one transaction.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use pipeline::bus::Delivery;
use pipeline::internal_events::InternalEvent;
use pipeline::runner::{Handler, HandlerError};
use schemas::codec::Codec;
use schemas::topics;

use super::events::{BatchSplit, DeliveryRejected};
use super::{Applied, PersistEvent, Source, Store};

/// Persists `matches` and `players` deliveries, each exactly once per group
/// (see [`Store::write_sourced`]) on a bus that redelivers in order.
pub struct PersistHandler {
    store: Store,
    /// The consumer group whose positions the writes move.
    group: String,
    /// Whether to record and honour positions: only where a partition's
    /// unacked records come back before later ones
    /// ([`pipeline::bus::Bus::redelivers_in_order`]); elsewhere a position
    /// would hide older records redelivered late.
    positions: bool,
    codec: Codec,
}

impl PersistHandler {
    pub fn new(store: Store, group: impl Into<String>) -> Self {
        Self {
            store,
            group: group.into(),
            positions: true,
            codec: Codec::default(),
        }
    }

    /// Without positions (`false`): at least once, redeliveries absorbed by
    /// the idempotent upserts alone. For buses that redeliver out of order.
    pub fn with_positions(mut self, positions: bool) -> Self {
        self.positions = positions;
        self
    }

    /// Writes `events` in one transaction, through the positions when on.
    async fn write(
        &self,
        events: &[PersistEvent],
        sources: &[Source],
    ) -> Result<super::WriteSummary, super::PersistError> {
        if self.positions {
            self.store.write_sourced(&self.group, events, sources).await
        } else {
            self.store.write(events).await
        }
    }

    /// A codec that knows more writer schemas, e.g. Confluent registrations.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The event a delivery carries, by topic, and where it was read; checked
    /// so one bad event cannot fail the transaction of a whole batch.
    fn decode(&self, delivery: &Delivery) -> Result<(PersistEvent, Source), HandlerError> {
        let position = Applied::of(&delivery.position)
            .map_err(|err| HandlerError::permanent("position", err.to_string()))?;
        let source = Source {
            topic: Arc::clone(&delivery.topic),
            partition: delivery.partition,
            position,
        };
        Ok((self.decode_event(delivery)?, source))
    }

    fn decode_event(&self, delivery: &Delivery) -> Result<PersistEvent, HandlerError> {
        let decode_error =
            |err: schemas::CodecError| HandlerError::permanent("decode", err.to_string());
        let event = match &*delivery.topic {
            topics::MATCHES => {
                PersistEvent::Match(self.codec.decode(&delivery.payload).map_err(decode_error)?)
            }
            topics::PLAYERS => {
                PersistEvent::Profile(self.codec.decode(&delivery.payload).map_err(decode_error)?)
            }
            other => {
                return Err(HandlerError::permanent(
                    "topic",
                    format!(
                        "persist reads `{}` and `{}`, not `{other}`",
                        topics::MATCHES,
                        topics::PLAYERS
                    ),
                ))
            }
        };
        event.validate()?;
        Ok(event)
    }

    /// Writes the events one transaction each, after their batch failed for
    /// good, so only the events at fault fail. Past a failed event, its
    /// partition's position stays put until the runner has dead-lettered it:
    /// the events after it are written without moving it, so a crash before
    /// the dead letter is durable brings the failed event back.
    async fn write_one_by_one(
        &self,
        events: &[PersistEvent],
        sources: &[Source],
    ) -> Vec<Result<(), HandlerError>> {
        BatchSplit {
            backend: self.store.backend(),
            events: events.len(),
        }
        .emit();
        let mut stalled: HashSet<(Arc<str>, i32)> = HashSet::new();
        let mut outcomes = Vec::with_capacity(events.len());
        for (event, source) in events.iter().zip(sources) {
            let partition = (Arc::clone(&source.topic), source.partition);
            let event = std::slice::from_ref(event);
            let outcome = if stalled.contains(&partition) {
                self.store.write(event).await
            } else {
                self.write(event, std::slice::from_ref(source)).await
            };
            if outcome.is_err() {
                stalled.insert(partition);
            }
            outcomes.push(outcome.map(|_| ()).map_err(HandlerError::from));
        }
        outcomes
    }
}

#[async_trait]
impl Handler for PersistHandler {
    /// One transaction per batch: rows merged in Rust first, one commit, one
    /// statement per table, and no two transactions of this process
    /// contending for the same hero-pool rows.
    fn takes_whole_batches(&self) -> bool {
        true
    }

    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut outcomes: Vec<Result<(), HandlerError>> = Vec::with_capacity(deliveries.len());
        let mut events = Vec::with_capacity(deliveries.len());
        let mut sources = Vec::with_capacity(deliveries.len());
        // Indexes into `outcomes` of the deliveries whose event is in `events`.
        let mut written = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match self.decode(delivery) {
                Ok((event, source)) => {
                    events.push(event);
                    sources.push(source);
                    written.push(i);
                    outcomes.push(Ok(()));
                }
                Err(err) => {
                    DeliveryRejected {
                        delivery,
                        error_kind: err.kind(),
                        error: err.message(),
                    }
                    .emit();
                    outcomes.push(Err(err));
                }
            }
        }
        if events.is_empty() {
            return outcomes;
        }
        let results = match self.write(&events, &sources).await {
            Ok(_) => return outcomes,
            Err(err) if err.is_retriable() || events.len() == 1 => {
                vec![Err(HandlerError::from(err)); events.len()]
            }
            Err(_) => self.write_one_by_one(&events, &sources).await,
        };
        for (i, result) in written.into_iter().zip(results) {
            outcomes[i] = result;
        }
        outcomes
    }
}
