//! The persist group's [`Handler`]: decodes a partition's slice and writes it
//! in one transaction.

use async_trait::async_trait;
use pipeline::bus::Delivery;
use pipeline::internal_events::InternalEvent;
use pipeline::runner::{Handler, HandlerError};
use schemas::codec::Codec;
use schemas::topics;

use super::events::{BatchSplit, DeliveryRejected};
use super::{PersistEvent, Store};

/// Persists `matches` and `players` deliveries.
pub struct PersistHandler {
    store: Store,
    codec: Codec,
}

impl PersistHandler {
    pub fn new(store: Store) -> Self {
        Self {
            store,
            codec: Codec::default(),
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

    /// The event a delivery carries, by topic; checked so one bad event cannot
    /// fail the transaction of a whole slice.
    fn decode(&self, delivery: &Delivery) -> Result<PersistEvent, HandlerError> {
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
    /// good, so only the events at fault fail.
    async fn write_one_by_one(&self, events: &[PersistEvent]) -> Vec<Result<(), HandlerError>> {
        BatchSplit {
            backend: self.store.backend(),
            events: events.len(),
        }
        .emit();
        let mut outcomes = Vec::with_capacity(events.len());
        for event in events {
            let outcome = self.store.write(std::slice::from_ref(event)).await;
            outcomes.push(outcome.map(|_| ()).map_err(HandlerError::from));
        }
        outcomes
    }
}

#[async_trait]
impl Handler for PersistHandler {
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut outcomes: Vec<Result<(), HandlerError>> = Vec::with_capacity(deliveries.len());
        let mut events = Vec::with_capacity(deliveries.len());
        // Indexes into `outcomes` of the deliveries whose event is in `events`.
        let mut written = Vec::with_capacity(deliveries.len());
        for (i, delivery) in deliveries.iter().enumerate() {
            match self.decode(delivery) {
                Ok(event) => {
                    events.push(event);
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
        let results = match self.store.write(&events).await {
            Ok(_) => return outcomes,
            Err(err) if err.is_retriable() || events.len() == 1 => {
                vec![Err(HandlerError::from(err)); events.len()]
            }
            Err(_) => self.write_one_by_one(&events).await,
        };
        for (i, result) in written.into_iter().zip(results) {
            outcomes[i] = result;
        }
        outcomes
    }
}
